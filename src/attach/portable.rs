//! `--portable`: run an attached image's services inside the image tree, as
//! systemd portable services do, with one of their sandbox profiles.

use crate::tree::source::{ImageSource, Kind};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Sandbox {
    Default,
    Nonetwork,
    Strict,
    Trusted,
}

/// What a portable image needs to run as a service root (seed 004): an
/// os-release, files to bind the host's resolv.conf and machine-id over, and
/// the API file system mount points.
pub fn check_image(src: &dyn ImageSource) -> Result<()> {
    let mut missing = vec![];
    let os_release = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .any(|p| src.stat(Path::new(p)).ok().flatten() == Some(Kind::File));
    if !os_release {
        missing.push("/etc/os-release or /usr/lib/os-release".to_string());
    }
    for f in ["etc/resolv.conf", "etc/machine-id"] {
        if src.lstat(Path::new(f)).ok().flatten().is_none() {
            missing.push(format!("/{f}"));
        }
    }
    for d in ["proc", "sys", "dev", "run", "tmp", "var/tmp"] {
        if src.stat(Path::new(d)).ok().flatten() != Some(Kind::Dir) {
            missing.push(format!("/{d}/"));
        }
    }
    if !missing.is_empty() {
        bail!("not a portable image: missing {}", missing.join(", "));
    }
    Ok(())
}

const COMMON: &str = "MountAPIVFS=yes\nBindReadOnlyPaths=/etc/machine-id\nPrivateTmp=yes\n";

const HARDENED: &str = "\
DynamicUser=yes
RemoveIPC=yes
PrivateDevices=yes
PrivateUsers=yes
ProtectSystem=strict
ProtectHome=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictRealtime=yes
RestrictNamespaces=yes
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
SystemCallArchitectures=native
";

const DEFAULT_CAPS: &str = "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_IPC_LOCK CAP_IPC_OWNER \
CAP_KILL CAP_MKNOD CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_BROADCAST CAP_SETGID CAP_SETPCAP CAP_SETUID \
CAP_SYS_ADMIN CAP_SYS_CHROOT CAP_SYS_NICE CAP_SYS_RESOURCE";

/// The `[Service]` lines a sandbox adds after `RootDirectory=`.
pub fn service_settings(s: Sandbox) -> String {
    let mut o = String::from(COMMON);
    match s {
        Sandbox::Default => {
            o += "BindReadOnlyPaths=-/etc/resolv.conf\nBindReadOnlyPaths=-/run/dbus/system_bus_socket\n";
            o += HARDENED;
            o += &format!(
                "CapabilityBoundingSet={DEFAULT_CAPS}\nRestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6\n"
            );
        }
        Sandbox::Nonetwork => {
            o += "BindReadOnlyPaths=-/run/dbus/system_bus_socket\n";
            o += HARDENED;
            let caps: Vec<&str> = DEFAULT_CAPS.split(' ').filter(|c| !c.starts_with("CAP_NET_")).collect();
            o += &format!(
                "CapabilityBoundingSet={}\nRestrictAddressFamilies=AF_UNIX AF_NETLINK\nPrivateNetwork=yes\nIPAddressDeny=any\n",
                caps.join(" ")
            );
        }
        Sandbox::Strict => {
            o += HARDENED;
            o += "CapabilityBoundingSet=\nRestrictAddressFamilies=AF_UNIX\nNoNewPrivileges=yes\nPrivateNetwork=yes\nIPAddressDeny=any\nTasksMax=4\n";
        }
        Sandbox::Trusted => {
            o += "BindReadOnlyPaths=-/etc/resolv.conf\nBindPaths=/run\n";
        }
    }
    o
}
