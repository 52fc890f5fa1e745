//! Image names and references. Both end up in paths (`/run/torcx/unpack/NAME`,
//! `NAME:REF.torcx.tgz`), so they are validated before any path is built.

use anyhow::{Result, bail};

fn check(what: &str, s: &str, extra: &[u8]) -> Result<()> {
    let b = s.as_bytes();
    let ok_first = b.first().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = b.iter().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c) || extra.contains(c));
    if s.is_empty() {
        bail!("invalid {what} \"\": must not be empty");
    }
    if !ok_first || !ok_rest || b.len() > 255 {
        bail!(
            "invalid {what} {}: must start with a letter or digit and contain only \
             letters, digits and {} (at most 255 characters)",
            super::quoted(s),
            if extra.is_empty() { "'.', '_', '-'" } else { "'.', '_', '-', '+'" }
        );
    }
    Ok(())
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`
pub fn validate_name(s: &str) -> Result<()> {
    check("image name", s, b"")
}

/// Like a name, and `+` is allowed too (`1.0+git3`).
pub fn validate_reference(s: &str) -> Result<()> {
    check("image reference", s, b"+")
}

/// Profile names share the image-name rule: they become `PROFILE.json`.
pub fn validate_profile_name(s: &str) -> Result<()> {
    check("profile name", s, b"")
}

/// An image as a profile names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ImageId {
    pub name: String,
    pub reference: String,
}

impl ImageId {
    pub fn new(name: &str, reference: &str) -> Result<Self> {
        validate_name(name)?;
        validate_reference(reference)?;
        Ok(ImageId { name: name.into(), reference: reference.into() })
    }
}

impl std::fmt::Display for ImageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_refused_name_is_cut_in_the_message() {
        // Found by the `parse` fuzz target: a store file name of 15 KB was
        // echoed whole.
        let long = format!("a:{}", "x\u{fffd}".repeat(5000));
        let e = validate_name(&long).unwrap_err().to_string();
        assert!(e.starts_with("invalid image name \"a:x\u{fffd}x"), "{e}");
        assert!(e.contains(&format!("...\" ({} bytes): must start", long.len())), "{e}");
        assert!(e.len() < 300, "{} bytes", e.len());
    }

    #[test]
    fn names() {
        for ok in ["docker", "a", "zfs-2.1", "Foo_bar.9", "0abc"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "-x", ".hidden", "a/b", "a:b", "a b", "a\nb", "a+b", "é"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_name(&"a".repeat(256)).is_err());
        validate_name(&"a".repeat(255)).unwrap();
    }

    #[test]
    fn references() {
        for ok in ["20.10", "1.0+git3", "com.coreos.cl"] {
            validate_reference(ok).unwrap();
        }
        for bad in ["", "..", "+1", "1/2", "a:b"] {
            assert!(validate_reference(bad).is_err(), "{bad:?} accepted");
        }
    }
}
