//! `torcx image verify`: archives checked against the signed indexes kept
//! in the stores, reading each archive once.

use super::trust::{Trusted, in_vendor_store};
use crate::archive::{Archive, digest};
use crate::model::config::Config;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Verified {
    pub image: String,
    pub path: std::path::PathBuf,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every archive outside the vendor store when `only` is empty.
pub fn candidates(cfg: &Config) -> Vec<Archive> {
    crate::store::scan(cfg).into_iter().filter(|a| !in_vendor_store(cfg, &a.path)).collect()
}

pub fn verify(cfg: &Config, archives: &[Archive]) -> Vec<Verified> {
    let t = Trusted::load(cfg);
    for p in &t.problems {
        log::warn!("{p}");
    }
    archives
        .iter()
        .map(|a| {
            let want = t.expected(&a.id);
            let mut v = Verified {
                image: a.id.to_string(),
                path: a.path.clone(),
                ok: false,
                digest: None,
                remote: None,
                error: None,
            };
            if want.is_empty() {
                v.error = Some(format!("no signed remote index lists image {}", a.id));
                return v;
            }
            let algos: Vec<_> = want.iter().map(|w| w.digest.algo).collect();
            let got = match a.format {
                crate::archive::Format::OciLayout => layout_digests(a),
                _ => digest::file_digests(&a.host, &algos).map_err(anyhow::Error::from),
            };
            match got {
                Err(e) => v.error = Some(format!("reading: {e:#}")),
                Ok(got) => match want.iter().find(|w| got.contains(&w.digest)) {
                    Some(w) => {
                        v.ok = true;
                        v.digest = Some(w.digest.to_string());
                        v.remote = Some(w.remote.clone());
                    }
                    None => {
                        let listed: Vec<String> = want.iter().map(|w| w.digest.to_string()).collect();
                        let is: Vec<String> = got.iter().map(|d| d.to_string()).collect();
                        v.error = Some(format!(
                            "hash mismatch: the signed index lists {}, the {} is {}",
                            listed.join(" or "),
                            if a.format == crate::archive::Format::OciLayout { "layout's tag" } else { "archive" },
                            is.join(", ")
                        ));
                    }
                },
            }
            v
        })
        .collect()
}

/// The digests an index may list for a layout's tag (its manifest's, or
/// the image index's it was picked from), after every blob the tag uses
/// was read and checked against its descriptor.
fn layout_digests(a: &Archive) -> anyhow::Result<Vec<crate::model::remote::Digest>> {
    use crate::archive::oci::{self, HashRead};
    let r = oci::resolve(&a.host, &a.id.reference)?;
    let blobs = a.host.join("blobs/sha256");
    let descriptors = std::iter::once((r.config.digest.clone(), r.config.size))
        .chain(r.layers.iter().map(|l| (l.digest.clone(), l.size)));
    for (d, size) in descriptors {
        let f = crate::archive::oci_layout::open_nofollow(&blobs.join(oci::digest_hex(&d)?))
            .map_err(|e| anyhow::anyhow!("blob {d}: {e}"))?;
        HashRead::new(std::io::BufReader::with_capacity(128 << 10, f)).finish(&d, size)?;
    }
    Ok(r.path
        .iter()
        .filter_map(|d| d.strip_prefix("sha256:"))
        .map(|hex| crate::model::remote::Digest { algo: crate::model::remote::Algo::Sha256, hex: hex.into() })
        .collect())
}
