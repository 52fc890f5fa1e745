//! Man pages and shell completions, generated from the clap definitions so
//! they never drift from `--help`. `torcx generate-docs DIR` (hidden) writes
//! them; the checked-in copies in `man/` and `completions/` are compared with
//! a fresh generation by the test suite. Each command's page gets an
//! EXAMPLES section from the table below, written for the admin workflows.

use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

/// (command path, what it does, the commands).
const EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "torcx",
        "Add an addon for the next boot: copy the vendor profile, add the image, select it, reboot",
        "torcx profile new --name mine --from vendor\ntorcx profile use-image socat:1.7.4 --name mine\ntorcx profile set-next mine\nsystemctl reboot",
    ),
    (
        "torcx",
        "Find out why an addon did not start after boot",
        "torcx status\njournalctl -b -u torcx-apply.service\njournalctl -b -t torcx-generator\ncat /run/torcx/status.json",
    ),
    (
        "torcx",
        "Add, upgrade and remove an addon without a reboot",
        "torcx attach socat:1.7.4 --now\ntorcx reattach socat:1.7.5 --now\ntorcx detach socat --now",
    ),
    ("torcx-apply", "Retry the images that failed at boot, once their archives are fixed", "torcx apply\ntorcx status"),
    ("torcx-attach", "Attach an image from the stores and start what it enables", "torcx attach docker:20.10 --now"),
    (
        "torcx-attach",
        "Attach an archive by path, with its services confined to the image tree",
        "torcx attach ./agent:2.1.torcx.squashfs --portable=strict --now",
    ),
    ("torcx-detach", "Stop an addon's services and remove exactly what attach placed", "torcx detach docker --now"),
    (
        "torcx-reattach",
        "Switch to another reference; on any failure the old one stays attached",
        "torcx reattach docker:24.0 --now",
    ),
    ("torcx-is-attached", "Use it in a script", "if torcx is-attached docker >/dev/null; then echo attached; fi"),
    (
        "torcx-status",
        "All attachments and the last boot apply, for people and for programs",
        "torcx status\ntorcx status docker --json | jq .value.attachments",
    ),
    (
        "torcx-image",
        "List the stores, then build an image and check it",
        "torcx image list\ntorcx image pack ./tree -o /var/lib/torcx/store/hello:1.0.torcx.tgz\ntorcx image inspect hello:1.0",
    ),
    ("torcx-image-list", "List the images an update to OS version 3815.2.0 would see", "torcx image list -n 3815.2.0"),
    (
        "torcx-image-clear-versioned",
        "Drop the stores of old OS versions, keeping the current and the next",
        "torcx image clear-versioned -k 3815.2.0 -k 3850.0.0",
    ),
    (
        "torcx-image-pack",
        "Build a zstd image from a directory; the manifest is written when missing",
        "torcx image pack ./tree -o socat:1.7.4.torcx.tar.zst",
    ),
    (
        "torcx-image-inspect",
        "See what an archive holds and whether its binaries will find their libraries",
        "torcx image inspect ./socat:1.7.4.torcx.tgz",
    ),
    ("torcx-profile", "Pin a version for the next boot", "torcx profile use-image docker:20.10\ntorcx profile check"),
    ("torcx-profile-list", "Which profiles this boot applied, and which the next will", "torcx profile list"),
    (
        "torcx-profile-check",
        "Check a profile before selecting it",
        "torcx profile check --name mine && torcx profile set-next mine",
    ),
    ("torcx-profile-new", "Start a user profile from the next one", "torcx profile new --name mine --from-next"),
    ("torcx-profile-set-next", "Switch profiles at the next boot", "torcx profile set-next mine"),
    (
        "torcx-profile-use-image",
        "Pin an image that is not downloaded yet",
        "torcx profile use-image docker:24.0 --name mine --allow=missing",
    ),
    ("torcx-profile-remove-image", "Stop adding an image at boot", "torcx profile remove-image socat"),
    (
        "torcx-profile-check",
        "Before an update, check that every remote image of the next profile is listed by its signed index",
        "torcx profile check --remote-only",
    ),
    (
        "torcx-profile-populate",
        "Download the next profile's remote images, then check them",
        "torcx profile populate\ntorcx image verify",
    ),
    (
        "torcx-profile-populate",
        "Fetch what the boot of OS version 3850.0.0 will need, before updating to it",
        "torcx profile populate -n 3850.0.0",
    ),
    (
        "torcx-profile-populate",
        "From a remote that is not signed yet (refused without this flag)",
        "torcx profile populate --name lab --allow-unsigned",
    ),
    (
        "torcx-image-verify",
        "Check every archive outside the vendor store, for a script",
        "torcx image verify --json | jq '.value[] | select(.ok | not)'",
    ),
    ("torcx-image-verify", "Check one image", "torcx image verify docker:20.10"),
    (
        "torcx-image-push",
        "Publish from a build machine: the image tree, straight to the fleet's registry",
        "torcx image push ./build/docker registry.example.com/torcx/docker:24.0",
    ),
    (
        "torcx-image-push",
        "Mirror into an air-gapped registry: pull on a connected machine, carry the store, push inside",
        "torcx image pull registry.example.com/torcx/docker:24.0\ncp -a /var/lib/torcx/store/docker.torcx.oci /media/usb/\ntorcx image push /media/usb/docker.torcx.oci mirror.internal:5000/torcx/docker:24.0",
    ),
    (
        "torcx-image-pull",
        "On a node: a registry remote in a profile, populated as any remote",
        "cat /etc/torcx/remotes/fleet/remote.json\n{\"kind\": \"remote-manifest-v0\", \"value\": {\"base_url\": \"oci://registry.example.com/torcx\"}}\ntorcx profile populate",
    ),
    (
        "torcx-image-pull",
        "With verify: signed, a registry remote whose signed index lists each version's manifest digest (printed by image push); populate pulls by that digest",
        "cat /etc/torcx/remotes/fleet/remote.json\n{\"kind\": \"remote-manifest-v0\", \"value\": {\"base_url\": \"oci://registry.example.com/torcx\",\n  \"index_url\": \"https://torcx.example.com/${VERSION_ID}/torcx_remote_contents.json.asc\",\n  \"keys\": [{\"armored_keyring\": \"signing.asc\"}]}}\ntorcx profile populate\ntorcx image verify",
    ),
    (
        "torcx-image-pull",
        "Pull a version from the fleet's registry, then pin it for the next boot",
        "torcx image pull registry.example.com/torcx/docker:24.0\ntorcx profile use-image docker:24.0",
    ),
    (
        "torcx-image-pull",
        "Before an OS update, pull what its boot will need into its versioned store",
        "torcx image pull -n 3850.0.0 registry.example.com/torcx/docker:24.0",
    ),
];

fn roff_escape(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-").replace('\'', "\\(aq")
}

fn examples(name: &str) -> String {
    let mut s = String::new();
    for (cmd, what, lines) in EXAMPLES.iter().filter(|(c, _, _)| *c == name) {
        let _ = cmd;
        s += &format!(".PP\n{}:\n.PP\n.RS 4\n.nf\n", roff_escape(what));
        for l in lines.lines() {
            s += &format!("{}\n", roff_escape(l));
        }
        s += ".fi\n.RE\n";
    }
    s
}

/// The section of torcx(8) that lists the failure kinds.
fn kinds() -> String {
    let mut s = String::from(
        ".SH \"FAILURE KINDS\"\nA failed image in /run/torcx/status.json, in torcx status and in its JSON carries a kind beside its message, for a fleet dashboard to count causes:\n",
    );
    for (k, what) in crate::model::failure::KINDS {
        s += &format!(".TP\n.B {}\n{}\n", k, roff_escape(what));
    }
    s
}

fn see_also(name: &str) -> String {
    let mut refs = vec!["torcx-generator(8)", "torcx-profile(5)", "torcx-image(5)", "torcx-config(5)"];
    if name != "torcx" {
        refs.insert(0, "torcx(8)");
    }
    format!(
        ".SH \"SEE ALSO\"\n{}\n",
        refs.iter().map(|r| format!(".BR {}", r.replacen('(', " (", 1))).collect::<Vec<_>>().join(" ,\n")
    )
}

fn page(cmd: &clap::Command, name: &str, dir: &Path) -> Result<()> {
    let man = clap_mangen::Man::new(cmd.clone().name(&*Box::leak(name.to_string().into_boxed_str())))
        .section("8")
        .manual("torcx")
        .source(format!("torcx {}", env!("CARGO_PKG_VERSION")));
    let mut b: Vec<u8> = vec![];
    man.render_title(&mut b)?;
    man.render_name_section(&mut b)?;
    man.render_synopsis_section(&mut b)?;
    man.render_description_section(&mut b)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut b)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut b)?;
    }
    if name == "torcx" {
        b.write_all(kinds().as_bytes())?;
    }
    let ex = examples(name);
    if !ex.is_empty() {
        b.write_all(b".SH EXAMPLES\n")?;
        b.write_all(ex.as_bytes())?;
    }
    b.write_all(see_also(name).as_bytes())?;
    let path = dir.join(format!("{name}.8"));
    let text = tidy(&String::from_utf8(b)?, name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// The date on every page: bump it with the pages' content.
const DATE: &str = "2026-11-23";

/// Makes clap_mangen's roff pass `mandoc -T lint` without a message: an
/// upper-case title with a date, no trailing blanks, text lines of at most
/// 80 bytes, and no paragraph macros mandoc would skip.
fn tidy(roff: &str, name: &str) -> String {
    let roff = roff.replace("\n.br\n\n.br\n", "\n.sp\n");
    let mut out: Vec<String> = vec![];
    let mut seen_aq = false;
    for line in roff.lines() {
        let line = line.trim_end();
        if line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq") {
            // clap_mangen repeats this string definition before every section.
            if seen_aq && line.starts_with(".el") {
                continue;
            }
            if line.starts_with(".ie") {
                if seen_aq {
                    continue;
                }
            } else {
                seen_aq = true;
            }
            out.push(line.to_string());
            continue;
        }
        if line.starts_with(".TH ") {
            out.push(format!(
                ".TH {} 8 {DATE} \"torcx {}\" \"torcx manual\"",
                name.to_uppercase(),
                env!("CARGO_PKG_VERSION")
            ));
            continue;
        }
        if line == ".PP" && out.last().is_some_and(|l| l.starts_with(".SH")) {
            continue;
        }
        if line.is_empty() {
            out.push(".sp".into());
            continue;
        }
        if line.starts_with('.') || line.len() <= 80 {
            out.push(line.to_string());
            continue;
        }
        // Text lines are filled anyway: break long ones at spaces.
        let mut cur = String::new();
        for w in line.split(' ') {
            if !cur.is_empty() && cur.len() + 1 + w.len() > 80 {
                out.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(w);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out.join("\n") + "\n"
}

fn pages(cmd: &clap::Command, name: &str, dir: &Path) -> Result<()> {
    page(cmd, name, dir)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

/// Writes `DIR/man/*.8` and `DIR/completions/{torcx.bash,_torcx,torcx.fish}`.
pub fn generate(dir: &Path) -> Result<()> {
    let mut cmd = crate::cli::args::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    pages(&cmd, "torcx", &man)?;
    let comp = dir.join("completions");
    std::fs::create_dir_all(&comp)?;
    for (shell, file) in [
        (clap_complete::Shell::Bash, "torcx.bash"),
        (clap_complete::Shell::Zsh, "_torcx"),
        (clap_complete::Shell::Fish, "torcx.fish"),
    ] {
        let mut b: Vec<u8> = vec![];
        clap_complete::generate(shell, &mut cmd, "torcx", &mut b);
        std::fs::write(comp.join(file), b)?;
    }
    Ok(())
}
