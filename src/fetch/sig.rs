//! OpenPGP: the keys a remote lists, and the clearsigned index checked
//! against them (rPGP, pure Rust).

use crate::model::remote::{Contents, parse_contents};
use anyhow::{Context, Result, anyhow, bail};
use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, Timestamp};
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
    /// Its signature verifies against one of the remote's keys; made at
    /// `at` (seconds since the epoch, as the signature says).
    Signed { at: u64 },
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
        .map_err(|e| crate::model::parse_error(e).context("the index's signature cannot be read"))?;
    if keys.is_empty() {
        bail!("the index is signed but the remote lists no key to verify it with (keys in remote.json)");
    }
    let now = Timestamp::now().as_secs() as u64;
    let mut why = vec![];
    let mut signed_at = None;
    for k in keys {
        match verifies(&msg, k, now) {
            Ok(t) => {
                signed_at = Some(t);
                break;
            }
            Err(e) => why.push(e),
        }
    }
    let Some(signed_at) = signed_at else {
        why.sort();
        why.dedup();
        let why: Vec<String> = why.into_iter().filter(|w| !w.is_empty()).collect();
        bail!(
            "the index's signature does not verify against any key the remote lists{}",
            if why.is_empty() { String::new() } else { format!(" ({})", why.join("; ")) }
        );
    };
    // What was signed, with the dash-escaping undone.
    let body = msg.signed_text();
    Ok((parse_contents(&body).context("the index")?, Trust::Signed { at: signed_at }))
}

/// When a valid key of `k` made a signature of `msg` that is valid now:
/// the primary key, or a subkey bound to it for signing; neither revoked
/// nor expired, and the signature itself not expired. An error says why a
/// key that made a signature is not accepted ("" when it made none).
fn verifies(msg: &CleartextSignedMessage, k: &SignedPublicKey, now: u64) -> Result<u64, String> {
    // A zero duration means "never", as in RFC 9580.
    let expired = |created: Option<Timestamp>, after: Option<pgp::types::Duration>| match (created, after) {
        (Some(c), Some(d)) if d.as_secs() > 0 => c.as_secs() as u64 + d.as_secs() as u64 <= now,
        _ => false,
    };
    let signed = |key: &dyn Fn(&Signature) -> bool| -> Option<u64> {
        msg.signatures().iter().find(|s| key(s)).map(|s| s.created().map(|t| t.as_secs() as u64).unwrap_or(0))
    };
    let nt = msg.signed_text();
    let by_primary = |s: &Signature| s.verify(&k.primary_key, nt.as_bytes()).is_ok();
    let sig_ok = |s: &Signature| !expired(s.created(), s.signature_expiration_time());
    if !k.details.revocation_signatures.is_empty() {
        return Err(signed(&by_primary).map(|_| "the signing key is revoked".to_string()).unwrap_or_default());
    }
    // The newest self-signature says the primary key's expiry and flags.
    let selfsig = k
        .details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter())
        .chain(k.details.direct_signatures.iter())
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0));
    let primary_expired = selfsig.is_some_and(|s| expired(Some(k.primary_key.created_at()), s.key_expiration_time()));
    let primary_signs = selfsig.is_none_or(|s| s.key_flags().sign() || s.key_flags() == Default::default());
    if let Some(t) = signed(&by_primary) {
        if primary_expired {
            return Err("the signing key has expired".into());
        }
        if !primary_signs {
            return Err("the primary key may not sign".into());
        }
        if msg.signatures().iter().any(|s| by_primary(s) && sig_ok(s)) {
            return Ok(t);
        }
        return Err("the signature has expired".into());
    }
    for sub in &k.public_subkeys {
        let by_sub = |s: &Signature| s.verify(&sub.key, nt.as_bytes()).is_ok();
        let Some(t) = signed(&by_sub) else { continue };
        let revoked = sub.signatures.iter().any(|s| s.typ() == Some(SignatureType::SubkeyRevocation));
        let binding = sub
            .signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
            .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0));
        let why = match binding {
            _ if revoked => "the signing subkey is revoked",
            None => "the signing subkey is not bound to its key",
            Some(b) if !b.key_flags().sign() => "the signing subkey may not sign",
            Some(b) if expired(Some(sub.key.created_at()), b.key_expiration_time()) || primary_expired => {
                "the signing key has expired"
            }
            Some(_) if !msg.signatures().iter().any(|s| by_sub(s) && sig_ok(s)) => "the signature has expired",
            Some(_) => return Ok(t),
        };
        return Err(why.into());
    }
    Err(String::new())
}
