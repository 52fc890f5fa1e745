//! OpenPGP: the keys a remote lists, and the clearsigned index checked
//! against them (rPGP, pure Rust).

use crate::model::remote::{Contents, parse_contents};
use anyhow::{Context, Result, anyhow, bail};
use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use std::path::Path;

/// The largest keyring file read.
pub const MAX_KEYRING: u64 = 1 << 20;
/// The largest index read (a remote of thousands of versions is far less).
pub const MAX_INDEX: u64 = 8 << 20;

/// The public keys of an armored keyring file.
pub fn read_keyring(host: &Path, shown: &Path) -> Result<Vec<SignedPublicKey>> {
    let text =
        crate::sys::fsutil::read_bounded(host, MAX_KEYRING).with_context(|| format!("keyring {}", shown.display()))?;
    let (keys, _) = SignedPublicKey::from_armor_many(std::io::Cursor::new(text))
        .map_err(|e| anyhow!("keyring {}: {e}", shown.display()))?;
    let mut out = vec![];
    for k in keys {
        let k = k.map_err(|e| anyhow!("keyring {}: {e}", shown.display()))?;
        k.verify_bindings()
            .map_err(|e| anyhow!("keyring {}: a key's self-signature does not verify: {e}", shown.display()))?;
        out.push(k);
    }
    if out.is_empty() {
        bail!("keyring {}: no public key in it", shown.display());
    }
    Ok(out)
}

/// How an index was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Its signature verifies against one of the remote's keys.
    Signed,
    /// Not signed, accepted because the admin said `--allow-unsigned`.
    Unsigned,
}

/// Checks an index (the bytes of `torcx_remote_contents.json.asc`) and
/// parses what it signs. Refused: an unsigned index unless `allow_unsigned`
/// (even when the remote lists no keys, unlike upstream), a signature by a
/// key the remote does not list, data after the signature.
pub fn open_index(bytes: &[u8], keys: &[SignedPublicKey], allow_unsigned: bool) -> Result<(Contents, Trust)> {
    let text = std::str::from_utf8(bytes).map_err(|_| anyhow!("the index is not UTF-8 text"))?;
    let signed = text.trim_start().starts_with("-----BEGIN PGP SIGNED MESSAGE-----");
    if !signed {
        if !allow_unsigned {
            bail!("the index is not signed (an OpenPGP cleartext signature is required; --allow-unsigned accepts it)");
        }
        return Ok((parse_contents(text).context("the index")?, Trust::Unsigned));
    }
    let (msg, _) = CleartextSignedMessage::from_string(text.trim_start())
        .map_err(|e| anyhow!("the index's signature cannot be read: {e}"))?;
    if keys.is_empty() {
        bail!("the index is signed but the remote lists no key to verify it with (keys in remote.json)");
    }
    if !keys.iter().any(|k| verifies(&msg, k)) {
        bail!("the index's signature does not verify against any key the remote lists");
    }
    // What was signed, with the dash-escaping undone.
    let body = msg.signed_text();
    Ok((parse_contents(&body).context("the index")?, Trust::Signed))
}

/// Whether the primary key or a subkey bound to it made a signature.
fn verifies(msg: &CleartextSignedMessage, k: &SignedPublicKey) -> bool {
    msg.verify(&k.primary_key).is_ok() || k.public_subkeys.iter().any(|s| msg.verify(&s.key).is_ok())
}
