//! The JSON documents torcx reads, each wrapped in upstream's
//! `{"kind": "...", "value": ...}` envelope.

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

pub const PROFILE_V0: &str = "profile-manifest-v0";
pub const PROFILE_V1: &str = "profile-manifest-v1";
pub const IMAGE_MANIFEST_V0: &str = "image-manifest-v0";

/// Parses the first JSON value of `text` (upstream ignored trailing bytes)
/// and checks its kind. Returns the kind and the value.
pub fn parse_envelope(text: &str, kinds: &[&str]) -> Result<(String, serde_json::Value)> {
    let mut it = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    let doc = match it.next() {
        None => bail!("empty document, expected one of kind {}", kinds.join(", ")),
        Some(r) => r.map_err(super::parse_error).context("invalid JSON")?,
    };
    let obj = doc.as_object().ok_or_else(|| anyhow!("not a JSON object"))?;
    let kind = obj.get("kind").and_then(|k| k.as_str()).ok_or_else(|| anyhow!("missing \"kind\""))?;
    if !kinds.contains(&kind) {
        bail!("unknown kind {} (expected {})", super::quoted(kind), kinds.join(" or "));
    }
    let value = obj.get("value").cloned().ok_or_else(|| anyhow!("missing \"value\""))?;
    Ok((kind.to_string(), value))
}

/// One entry of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileEntry {
    pub name: String,
    #[serde(default)]
    pub reference: String,
    /// Only in v1 profiles; kept when rewriting (upstream dropped it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ProfileValue {
    #[serde(default)]
    images: Option<Vec<ProfileEntry>>,
}

/// Parses a profile manifest. An empty file is an empty profile, as upstream.
pub fn parse_profile(text: &str) -> Result<Vec<ProfileEntry>> {
    if text.trim().is_empty() {
        return Ok(vec![]);
    }
    let (_, value) = parse_envelope(text, &[PROFILE_V0, PROFILE_V1])?;
    if value.is_null() {
        return Ok(vec![]);
    }
    let v: ProfileValue = serde_json::from_value(value).map_err(super::parse_error).context("invalid profile value")?;
    Ok(v.images.unwrap_or_default())
}

/// `.torcx/manifest.json` inside an image: absolute paths inside the image.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageManifest {
    #[serde(default)]
    pub bin: Vec<String>,
    #[serde(default)]
    pub network: Vec<String>,
    #[serde(default)]
    pub units: Vec<String>,
    #[serde(default)]
    pub sysusers: Vec<String>,
    #[serde(default)]
    pub tmpfiles: Vec<String>,
    #[serde(default)]
    pub udev_rules: Vec<String>,
}

impl ImageManifest {
    /// Every list, by its field name, in the manifest's order.
    pub fn classes(&self) -> [(&'static str, &Vec<String>); 6] {
        [
            ("bin", &self.bin),
            ("units", &self.units),
            ("network", &self.network),
            ("sysusers", &self.sysusers),
            ("tmpfiles", &self.tmpfiles),
            ("udev_rules", &self.udev_rules),
        ]
    }
}

pub fn parse_image_manifest(text: &str) -> Result<ImageManifest> {
    let (_, value) = parse_envelope(text, &[IMAGE_MANIFEST_V0])?;
    if value.is_null() {
        return Ok(ImageManifest::default());
    }
    serde_json::from_value(value).map_err(super::parse_error).context("invalid image manifest value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_kinds_and_fields_are_cut_in_messages() {
        // Found by the `parse` fuzz target: a 20 KB kind, or an unknown
        // field, was echoed whole.
        let long = "1".repeat(20000);
        let e = format!("{:#}", parse_profile(&format!(r#"{{"kind":"{long}","value":{{}}}}"#)).unwrap_err());
        assert!(e.contains("unknown kind \"1111") && e.contains("...\" (20000 bytes)"), "{e}");
        assert!(e.len() < 300, "{} bytes", e.len());
        let e = format!(
            "{:#}",
            parse_image_manifest(&format!(r#"{{"kind":"image-manifest-v0","value":{{"{long}":1}}}}"#)).unwrap_err()
        );
        assert!(e.contains("unknown field") && e.contains("bytes)"), "{e}");
        assert!(e.len() < 700, "{} bytes", e.len());
    }

    #[test]
    fn profiles() {
        let p = parse_profile(
            r#"{"kind":"profile-manifest-v0","value":{"images":[{"name":"a","reference":"1"}]}} trailing"#,
        )
        .unwrap();
        assert_eq!(p, vec![ProfileEntry { name: "a".into(), reference: "1".into(), remote: None }]);
        let p = parse_profile(
            r#"{"kind":"profile-manifest-v1","value":{"images":[{"name":"a","reference":"1","remote":"r"}]}}"#,
        )
        .unwrap();
        assert_eq!(p[0].remote.as_deref(), Some("r"));
        assert!(parse_profile("").unwrap().is_empty());
        assert!(parse_profile(r#"{"kind":"profile-manifest-v0","value":null}"#).unwrap().is_empty());
        assert!(parse_profile(r#"{"kind":"profile-manifest-v0","value":{"images":null}}"#).unwrap().is_empty());
        let e = parse_profile(r#"{"kind":"profile-manifest-v9","value":{}}"#).unwrap_err();
        assert!(format!("{e:#}").contains("unknown kind \"profile-manifest-v9\""), "{e:#}");
        assert!(parse_profile("{not json").is_err());
        assert!(parse_profile(r#"{"kind":"profile-manifest-v0"}"#).is_err());
    }

    #[test]
    fn image_manifest() {
        let m = parse_image_manifest(
            r#"{"kind":"image-manifest-v0","value":{"bin":["/bin/x"],"units":["/lib/systemd/system/x.service"]}}"#,
        )
        .unwrap();
        assert_eq!(m.bin, vec!["/bin/x"]);
        assert!(parse_image_manifest(r#"{"kind":"image-manifest-v0","value":{"binaries":[]}}"#).is_err());
        assert!(parse_image_manifest(r#"{"kind":"profile-manifest-v0","value":{}}"#).is_err());
    }
}
