//! Why an image failed, for machines: a `kind` beside the message in
//! `/run/torcx/status.json` and `torcx status`, so a fleet dashboard can
//! count causes. The places that know the cause raise a [`Failure`]; other
//! errors are classified by the system error beneath them.

crate::model::string_enum! {
    /// The cause of a failure (documented in torcx(8), `status`).
    Kind {
        /// No archive of the image in any store.
        Missing = "missing",
        /// A disk or tmpfs is full (`ENOSPC`, `EDQUOT`), or out of inodes.
        Space = "space",
        /// One of torcx's own limits (unpack size, entries, layers).
        Limit = "limit",
        /// A file, unit or binary another image or the host has.
        Conflict = "conflict",
        /// An entry the policy refuses (a path out of the tree, a device node).
        Refused = "refused",
        /// A damaged archive: bad compression, a digest or size mismatch.
        Corrupt = "corrupt",
        /// `verify: signed` found no signed index listing it, or another hash.
        Signature = "signature",
        /// Another system error (a read-only disk, a missing directory).
        Io = "io",
        /// Anything else (a bad manifest, a bad profile).
        Other = "other",
    }
}

/// Each kind, as torcx(8) documents it.
pub const KINDS: &[(Kind, &str)] = &[
    (Kind::Missing, "No archive of the image in any store."),
    (Kind::Space, "A disk or tmpfs is full (ENOSPC, EDQUOT), or out of inodes."),
    (Kind::Limit, "One of torcx's own limits: the unpack size of an image or of all images, entries, layers."),
    (Kind::Conflict, "A file, unit or binary another image or the host has; or the image is attached already."),
    (Kind::Refused, "An entry the policy refuses: a path out of the tree, a device node, a link escaping it."),
    (Kind::Corrupt, "A damaged archive: bad compression, a truncated stream, a digest or size mismatch."),
    (Kind::Signature, "With verify: signed, no signed index lists the image, or it lists another hash."),
    (Kind::Io, "Another system error: a read-only disk, a missing directory, a permission."),
    (Kind::Other, "Anything else: a bad manifest, a bad unit."),
];

/// An error whose cause is known where it is raised.
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    message: String,
    /// Refused by the limit for all images (`unpack_total_limit`), which
    /// the images unpacking beside it drew on too: alone it may fit.
    shared: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// An error of `kind` saying `message`; context added later keeps the kind.
pub fn error(kind: Kind, message: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Failure { kind, message: message.to_string(), shared: false })
}

/// A [`Kind::Limit`] error of the limit for all images (see [`Failure`]).
pub fn shared_limit(message: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Failure { kind: Kind::Limit, message: message.to_string(), shared: true })
}

/// Whether `e` is (beneath any context) a refusal of the limit for all images.
pub fn is_shared_limit(e: &anyhow::Error) -> bool {
    e.chain().filter_map(|c| c.downcast_ref::<Failure>()).last().is_some_and(|f| f.shared)
}

/// The kind of `e`: the innermost [`Failure`] on its chain, else what the
/// system error beneath says, else [`Kind::Other`].
pub fn kind_of(e: &anyhow::Error) -> Kind {
    if let Some(f) = e.chain().filter_map(|c| c.downcast_ref::<Failure>()).last() {
        return f.kind;
    }
    for c in e.chain() {
        let errno = if let Some(io) = c.downcast_ref::<std::io::Error>() {
            match io.kind() {
                // What the decompressors say of a damaged or cut stream.
                std::io::ErrorKind::InvalidData
                | std::io::ErrorKind::InvalidInput
                | std::io::ErrorKind::UnexpectedEof => return Kind::Corrupt,
                // Also when a wrapper (tempfile's) hides the errno.
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => return Kind::Space,
                _ => io.raw_os_error(),
            }
        } else if let Some(e) = c.downcast_ref::<rustix::io::Errno>() {
            Some(e.raw_os_error())
        } else {
            continue;
        };
        return match errno {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Kind::Space,
            _ => Kind::Io,
        };
    }
    Kind::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_survives_context_and_system_errors_are_classified() {
        let e = error(Kind::Limit, "too big").context("image a:1");
        assert_eq!((kind_of(&e), format!("{e:#}").as_str()), (Kind::Limit, "image a:1: too big"));
        let full: anyhow::Error = std::io::Error::from_raw_os_error(libc::ENOSPC).into();
        assert_eq!(kind_of(&full.context("writing x")), Kind::Space);
        let wrapped = std::io::Error::new(std::io::ErrorKind::StorageFull, "at path x");
        assert_eq!(kind_of(&anyhow::Error::from(wrapped)), Kind::Space);
        let ro: anyhow::Error = rustix::io::Errno::ROFS.into();
        assert_eq!(kind_of(&ro), Kind::Io);
        let bad: anyhow::Error = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad gzip").into();
        assert_eq!(kind_of(&bad), Kind::Corrupt);
        assert_eq!(kind_of(&anyhow::anyhow!("no")), Kind::Other);
    }
}
