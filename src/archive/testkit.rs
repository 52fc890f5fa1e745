//! Archives built in memory, for tests (the crate's own and `tests/`): not
//! used by torcx itself.

use crate::archive::oci::{ANNOTATION, MT_LAYER, MT_MANIFEST, REF_NAME};
use sha2::Digest;
use std::io::Write;

/// Gzip of `d`.
pub fn gz(d: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    e.write_all(d).unwrap();
    e.finish().unwrap()
}

fn desc(mt: &str, d: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": mt, "digest": format!("sha256:{}", crate::sys::fsutil::hex(&sha2::Sha256::digest(d))), "size": d.len()})
}

/// An OCI bundle (`NAME.torcx.oci.tgz` bytes) of the tar `layers`, gzipped,
/// tagged `1`, annotated on the index; `tamper` changes one byte of the last
/// layer after its digest is taken.
pub fn oci_bundle(layers: &[Vec<u8>], tamper: bool) -> Vec<u8> {
    gz(&oci_layout(layers, true, tamper))
}

/// The uncompressed tar of the layout [`oci_bundle`] gzips; the layers are
/// gzipped when `compress`, plain tar layers otherwise.
pub fn oci_layout(layers: &[Vec<u8>], compress: bool, tamper: bool) -> Vec<u8> {
    let mut blobs: Vec<Vec<u8>> = layers.iter().map(|l| if compress { gz(l) } else { l.clone() }).collect();
    let layer_type = if compress { format!("{MT_LAYER}+gzip") } else { MT_LAYER.to_string() };
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let ls: Vec<_> = blobs.iter().map(|b| desc(&layer_type, b)).collect();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", &config), "layers": ls});
    let manifest = manifest.to_string().into_bytes();
    let mut md = desc(MT_MANIFEST, &manifest);
    md["annotations"] = serde_json::json!({REF_NAME: "1"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [md], "annotations": {ANNOTATION: "yes"}});
    let hexes: Vec<String> =
        blobs.iter().chain([&config, &manifest]).map(|b| crate::sys::fsutil::hex(&sha2::Sha256::digest(b))).collect();
    if tamper {
        let last = blobs.last_mut().unwrap();
        let n = last.len() / 2;
        last[n] ^= 0xff;
    }
    blobs.push(config);
    blobs.push(manifest);
    let mut b = tar::Builder::new(vec![]);
    let mut add = |name: &str, d: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(d.len() as u64);
        b.append_data(&mut h, name, d).unwrap();
    };
    for (h, d) in hexes.iter().zip(&blobs).rev() {
        add(&format!("blobs/sha256/{h}"), d);
    }
    add("index.json", index.to_string().as_bytes());
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    b.into_inner().unwrap()
}
