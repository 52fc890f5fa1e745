//! What lint reads of ELF files: machine, class, interpreter, soname,
//! `NEEDED`, rpaths; and where the host's loader looks for libraries.

use crate::model::config::Config;
use crate::tree::source::ImageSource;
use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// What lint needs of an ELF file.
#[derive(Debug, Default)]
pub struct ElfInfo {
    pub machine: u16,
    pub is64: bool,
    pub etype: u16,
    pub interp: Option<String>,
    pub soname: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

impl ElfInfo {
    /// Run as a program (not only loaded as a library).
    pub fn is_executable(&self) -> bool {
        self.etype == elf::ET_EXEC || (self.etype == elf::ET_DYN && self.interp.is_some())
    }
}

#[derive(Default)]
pub struct ElfCache {
    pub parsed: HashMap<PathBuf, Option<Result<Rc<ElfInfo>, String>>>,
}

impl ElfCache {
    /// `None` when the file is not ELF.
    pub fn parse(&mut self, root: &Path, rel: &Path) -> Option<Result<Rc<ElfInfo>, String>> {
        if let Some(v) = self.parsed.get(rel) {
            return v.clone();
        }
        let v = (|| {
            let mut f = std::fs::File::open(root.join(rel)).ok()?;
            let mut magic = [0u8; 4];
            f.read_exact(&mut magic).ok()?;
            if magic != *b"\x7fELF" {
                return None;
            }
            let mut data = magic.to_vec();
            f.read_to_end(&mut data).ok()?;
            Some(parse_elf(&data).map(Rc::new))
        })();
        self.parsed.insert(rel.to_path_buf(), v.clone());
        v
    }

    /// Like `parse`, reading through the image (`rel` may be reached through symlinks).
    pub fn parse_source(&mut self, src: &dyn ImageSource, rel: &Path) -> Option<Result<Rc<ElfInfo>, String>> {
        if let Some(v) = self.parsed.get(rel) {
            return v.clone();
        }
        let data = src.read(rel).ok()?;
        let v = data.starts_with(b"\x7fELF").then(|| parse_elf(&data).map(Rc::new));
        self.parsed.insert(rel.to_path_buf(), v.clone());
        v
    }
}

pub fn parse_elf(data: &[u8]) -> Result<ElfInfo, String> {
    let r = match data.get(4) {
        Some(1) => parse_with::<elf::FileHeader32<object::Endianness>>(data),
        Some(2) => parse_with::<elf::FileHeader64<object::Endianness>>(data),
        _ => return Err("unknown ELF class".into()),
    };
    r.map_err(|e| e.to_string())
}

pub fn parse_with<H: FileHeader<Endian = object::Endianness>>(data: &[u8]) -> object::read::Result<ElfInfo> {
    let h = H::parse(data)?;
    let e = h.endian()?;
    let phs = h.program_headers(e, data)?;
    let mut info = ElfInfo { machine: h.e_machine(e), is64: h.is_class_64(), etype: h.e_type(e), ..Default::default() };
    let mut dynamic = None;
    for ph in phs {
        if let Some(i) = ph.interpreter(e, data)? {
            info.interp = Some(String::from_utf8_lossy(i).trim_end_matches('\0').to_string());
        }
        if let Some(d) = ph.dynamic(e, data)? {
            dynamic = Some(d);
        }
    }
    let Some(dyns) = dynamic else { return Ok(info) };
    let (mut strtab, mut strsz) = (None, None);
    let mut strings: Vec<(u32, u64)> = vec![];
    for d in dyns {
        let tag: u64 = d.d_tag(e).into();
        let val: u64 = d.d_val(e).into();
        match u32::try_from(tag).unwrap_or(u32::MAX) {
            elf::DT_NULL => break,
            elf::DT_STRTAB => strtab = Some(val),
            elf::DT_STRSZ => strsz = Some(val),
            t @ (elf::DT_NEEDED | elf::DT_RPATH | elf::DT_RUNPATH | elf::DT_SONAME) => strings.push((t, val)),
            _ => {}
        }
    }
    let (Some(addr), Some(size)) = (strtab, strsz) else { return Ok(info) };
    // The string table's address, in the file.
    let off = phs.iter().filter(|p| p.p_type(e) == elf::PT_LOAD).find_map(|p| {
        let (va, fs, o): (u64, u64, u64) = (p.p_vaddr(e).into(), p.p_filesz(e).into(), p.p_offset(e).into());
        (addr >= va && addr < va + fs).then(|| addr - va + o)
    });
    let Some(off) = off else { return Ok(info) };
    let table = data.get(off as usize..(off.saturating_add(size) as usize).min(data.len())).unwrap_or(&[]);
    let at = |i: u64| -> Option<String> {
        let s = table.get(i as usize..)?;
        let end = s.iter().position(|b| *b == 0)?;
        Some(String::from_utf8_lossy(&s[..end]).into_owned())
    };
    for (t, i) in strings {
        let Some(s) = at(i) else { continue };
        match t {
            elf::DT_NEEDED => info.needed.push(s),
            elf::DT_SONAME => info.soname = Some(s),
            elf::DT_RPATH => info.rpath.extend(s.split(':').filter(|x| !x.is_empty()).map(String::from)),
            _ => info.runpath.extend(s.split(':').filter(|x| !x.is_empty()).map(String::from)),
        }
    }
    Ok(info)
}

/// The host's library directories (under `--root`): ld.so.conf, the
/// multiarch directories, and the defaults.
pub struct HostLibs<'a> {
    pub cfg: &'a Config,
    pub dirs: Vec<PathBuf>,
    pub compat: std::cell::RefCell<HashMap<PathBuf, Option<(u16, bool)>>>,
}

impl<'a> HostLibs<'a> {
    pub fn new(cfg: &'a Config) -> HostLibs<'a> {
        let mut dirs = vec![];
        read_ld_so_conf(cfg, Path::new("/etc/ld.so.conf"), &mut dirs, 0);
        let ma = multiarch();
        for d in [format!("/lib/{ma}"), format!("/usr/lib/{ma}"), "/lib".into(), "/usr/lib".into()] {
            dirs.push(PathBuf::from(d));
        }
        dirs.push("/lib64".into());
        dirs.push("/usr/lib64".into());
        let mut uniq = vec![];
        for d in dirs {
            if !uniq.contains(&d) {
                uniq.push(d);
            }
        }
        HostLibs { cfg, dirs: uniq, compat: Default::default() }
    }

    /// Whether the host file `logical` is a library for this machine and class.
    pub fn has(&self, logical: &Path, machine: u16, is64: bool) -> bool {
        let host = self.cfg.host(logical);
        let mut c = self.compat.borrow_mut();
        let v = c.entry(host.clone()).or_insert_with(|| elf_header(&host));
        v.is_some_and(|(m, b)| m == machine && b == is64)
    }

    pub fn find(&self, name: &str, machine: u16, is64: bool) -> bool {
        self.dirs.iter().any(|d| self.has(&d.join(name), machine, is64))
    }
}

/// `(e_machine, 64-bit)` of an ELF file, reading its first bytes.
pub fn elf_header(p: &Path) -> Option<(u16, bool)> {
    let mut f = std::fs::File::open(p).ok()?;
    let mut h = [0u8; 20];
    f.read_exact(&mut h).ok()?;
    if h[..4] != *b"\x7fELF" {
        return None;
    }
    let m = match h[5] {
        1 => u16::from_le_bytes([h[18], h[19]]),
        _ => u16::from_be_bytes([h[18], h[19]]),
    };
    Some((m, h[4] == 2))
}

pub fn read_ld_so_conf(cfg: &Config, logical: &Path, out: &mut Vec<PathBuf>, depth: u32) {
    if depth > 8 {
        return;
    }
    let Ok(text) = std::fs::read_to_string(cfg.host(logical)) else { return };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with("hwcap ") {
            continue;
        }
        if let Some(pat) = line.strip_prefix("include").filter(|r| r.starts_with(char::is_whitespace)) {
            for pat in pat.split_whitespace() {
                let pat = if pat.starts_with('/') {
                    PathBuf::from(pat)
                } else {
                    logical.parent().unwrap_or(Path::new("/")).join(pat)
                };
                for f in glob(cfg, &pat) {
                    read_ld_so_conf(cfg, &f, out, depth + 1);
                }
            }
            continue;
        }
        for d in line.split([':', ',', ' ', '\t']).filter(|d| d.starts_with('/')) {
            out.push(PathBuf::from(d));
        }
    }
}

/// `dir/*.conf`-style patterns (a `*` in the last component), sorted.
pub fn glob(cfg: &Config, pat: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(last)) = (pat.parent(), pat.file_name()) else { return vec![] };
    let last = last.to_string_lossy();
    let Some((pre, post)) = last.split_once('*') else { return vec![pat.to_path_buf()] };
    let Ok(rd) = std::fs::read_dir(cfg.host(dir)) else { return vec![] };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() >= pre.len() + post.len() && n.starts_with(pre) && n.ends_with(post))
        .map(|n| dir.join(n))
        .collect();
    v.sort();
    v
}

pub fn host_arch() -> Option<(u16, bool)> {
    Some(match std::env::consts::ARCH {
        "x86_64" => (elf::EM_X86_64, true),
        "x86" => (elf::EM_386, false),
        "aarch64" => (elf::EM_AARCH64, true),
        "arm" => (elf::EM_ARM, false),
        "riscv64" => (elf::EM_RISCV, true),
        "powerpc64" => (elf::EM_PPC64, true),
        "s390x" => (elf::EM_S390, true),
        "loongarch64" => (elf::EM_LOONGARCH, true),
        _ => return None,
    })
}

pub fn machine_name(m: u16) -> String {
    match m {
        elf::EM_X86_64 => "x86-64".into(),
        elf::EM_386 => "i386".into(),
        elf::EM_AARCH64 => "aarch64".into(),
        elf::EM_ARM => "arm".into(),
        elf::EM_RISCV => "riscv".into(),
        elf::EM_PPC64 => "ppc64".into(),
        elf::EM_S390 => "s390".into(),
        elf::EM_LOONGARCH => "loongarch".into(),
        m => format!("machine {m}"),
    }
}

/// Debian's multiarch tuple of this machine (`/usr/lib/x86_64-linux-gnu`).
pub fn multiarch() -> String {
    let arch = match std::env::consts::ARCH {
        "x86" => "i386",
        "arm" => "arm",
        "powerpc64" => "powerpc64le",
        a => a,
    };
    let abi = if std::env::consts::ARCH == "arm" { "gnueabihf" } else { "gnu" };
    format!("{arch}-linux-{abi}")
}
