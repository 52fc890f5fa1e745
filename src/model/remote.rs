//! Remotes (upstream's formats): `remote-manifest-v0`, which says where a
//! remote is and which keys sign it, and `torcx-remote-contents-v1`, the
//! signed index of its archives and their hashes.

use super::manifest::parse_envelope;
use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

pub const REMOTE_V0: &str = "remote-manifest-v0";
pub const CONTENTS_V1: &str = "torcx-remote-contents-v1";
/// The index file, relative to the base URL.
pub const CONTENTS_FILE: &str = "torcx_remote_contents.json.asc";

/// `remote.json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RemoteManifest {
    pub base_url: String,
    #[serde(default)]
    pub keys: Vec<KeyRef>,
    /// Where the signed index is, when not at `BASE_URL/torcx_remote_contents.json.asc`
    /// (a torcx extension: a registry remote's index lives outside the registry).
    #[serde(default)]
    pub index_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct KeyRef {
    /// A keyring file, relative to the remote's directory.
    pub armored_keyring: String,
}

pub fn parse_remote(text: &str) -> Result<RemoteManifest> {
    let (_, v) = parse_envelope(text, &[REMOTE_V0])?;
    serde_json::from_value(v).map_err(super::parse_error).context("invalid remote manifest")
}

/// The signed index.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Contents {
    #[serde(default)]
    pub images: Vec<ContentsImage>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContentsImage {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "defaultVersion")]
    pub default_version: String,
    #[serde(default)]
    pub versions: Vec<ContentsVersion>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContentsVersion {
    pub version: String,
    /// Unused, as upstream: the file name says the format.
    #[serde(default)]
    pub format: String,
    /// Relative to the base URL, or an absolute URL; unused for a registry
    /// remote, whose images are pulled by the digest in `hash`.
    #[serde(default)]
    pub location: String,
    pub hash: String,
}

pub fn parse_contents(text: &str) -> Result<Contents> {
    let (_, v) = parse_envelope(text, &[CONTENTS_V1])?;
    if v.is_null() {
        return Ok(Contents::default());
    }
    serde_json::from_value(v).map_err(super::parse_error).context("invalid remote contents")
}

impl Contents {
    /// The entry for `name` at `reference`; `com.coreos.cl` means the
    /// image's `defaultVersion`.
    pub fn lookup(&self, name: &str, reference: &str) -> Result<&ContentsVersion> {
        let img = self
            .images
            .iter()
            .find(|i| !i.name.is_empty() && i.name == name)
            .ok_or_else(|| anyhow!("the index lists no image {}", super::quoted(name)))?;
        let version = if reference == super::config::DEFAULT_REFERENCE {
            if img.default_version.is_empty() {
                bail!("image {name}: the index names no defaultVersion for {reference}");
            }
            img.default_version.as_str()
        } else {
            reference
        };
        img.versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| anyhow!("image {name}: the index lists no version {}", super::quoted(version)))
    }
}

super::string_enum!(
    /// A hash algorithm an index may name.
    Algo { Sha256 = "sha256", Sha384 = "sha384", Sha512 = "sha512" }
);

impl Algo {
    fn hex_len(self) -> usize {
        match self {
            Algo::Sha256 => 64,
            Algo::Sha384 => 96,
            Algo::Sha512 => 128,
        }
    }
}

/// A hash as an index writes it: `sha512-HEX` (upstream's form; `:` is
/// accepted too). The hex is kept in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub algo: Algo,
    pub hex: String,
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.algo, self.hex)
    }
}

impl std::str::FromStr for Digest {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Digest> {
        if s.is_empty() {
            bail!("empty hash (an archive must be listed with sha512-HEX or sha256-HEX)");
        }
        let (a, hex) = s.split_once(['-', ':']).ok_or_else(|| anyhow!("hash {}: not ALGO-HEX", super::quoted(s)))?;
        let algo = match a {
            "sha256" => Algo::Sha256,
            "sha384" => Algo::Sha384,
            "sha512" => Algo::Sha512,
            _ => bail!("hash {}: unknown algorithm (sha512, sha384 or sha256)", super::quoted(s)),
        };
        if hex.len() != algo.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("hash {}: not {} hex digits", super::quoted(s), algo.hex_len());
        }
        Ok(Digest { algo, hex: hex.to_ascii_lowercase() })
    }
}

/// Expands `${ID}`, `${VERSION_ID}`, `${COREOS_BOARD}`, `${COREOS_USR}` (and
/// any other variable `vars` knows) in a base URL; `\$` is a literal `$`.
/// An unknown or unterminated variable is an error naming it.
pub fn expand(url: &str, vars: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(i) = rest.find(['$', '\\']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("\\$") {
            out.push('$');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("${") {
            let end = t.find('}').ok_or_else(|| anyhow!("base_url: unterminated ${{ in {}", super::quoted(url)))?;
            let var = &t[..end];
            let val = vars(var).ok_or_else(|| anyhow!("base_url: unknown variable ${{{}}}", super::quoted(var)))?;
            out.push_str(&val);
            rest = &t[end + 1..];
        } else if tail.starts_with('$') {
            bail!("base_url: a bare $ in {} (write \\$ for a literal one)", super::quoted(url));
        } else {
            out.push('\\');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let h = "ab".repeat(64);
        let d: Digest = format!("sha512-{h}").parse().unwrap();
        assert_eq!((d.algo, d.hex.as_str()), (Algo::Sha512, h.as_str()));
        assert_eq!(d.to_string(), format!("sha512-{h}"));
        let d: Digest = format!("sha256:{}", "AB".repeat(32)).parse().unwrap();
        assert_eq!(d.hex, "ab".repeat(32));
        for bad in ["", "sha512-", "sha512-abc", "md5-00", "sha256", &format!("sha256-{}", "zz".repeat(32))] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        assert!(format!("{:#}", "".parse::<Digest>().unwrap_err()).contains("empty hash"));
    }

    #[test]
    fn templating() {
        let vars = |k: &str| match k {
            "ID" => Some("flatcar".to_string()),
            "VERSION_ID" => Some("3815.2.0".to_string()),
            _ => None,
        };
        assert_eq!(
            expand("https://x/${ID}/${VERSION_ID}/a\\$b\\c", &vars).unwrap(),
            "https://x/flatcar/3815.2.0/a$b\\c"
        );
        let e = format!("{:#}", expand("https://x/${NOPE}/", &vars).unwrap_err());
        assert!(e.contains("unknown variable ${\"NOPE\"}"), "{e}");
        assert!(expand("https://x/${ID", &vars).is_err());
        assert!(expand("https://x/$ID", &vars).is_err());
    }

    #[test]
    fn contents_lookup() {
        let c = parse_contents(
            r#"{"kind":"torcx-remote-contents-v1","value":{"images":[{"name":"","versions":[]},
            {"name":"docker","defaultVersion":"20.10","versions":[
              {"version":"20.10","format":"tgz","location":"docker:20.10.torcx.tgz","hash":"sha512-00"}]}]}}"#,
        )
        .unwrap();
        assert_eq!(c.lookup("docker", "com.coreos.cl").unwrap().location, "docker:20.10.torcx.tgz");
        assert_eq!(c.lookup("docker", "20.10").unwrap().version, "20.10");
        assert!(format!("{:#}", c.lookup("docker", "19").unwrap_err()).contains("no version \"19\""));
        assert!(c.lookup("", "1").is_err());
        assert!(parse_contents(r#"{"kind":"remote-manifest-v0","value":{}}"#).is_err());
        let r = parse_remote(
            r#"{"kind":"remote-manifest-v0","value":{"base_url":"https://x/","keys":[{"armored_keyring":"k.asc"}]}}"#,
        )
        .unwrap();
        assert_eq!(r.keys[0].armored_keyring, "k.asc");
    }
}
