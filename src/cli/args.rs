//! The clap definitions: the global options, the commands and their
//! arguments. The man pages and completions are generated from these.

use crate::attach::CopyMode;
use crate::attach::portable::Sandbox;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "torcx",
    version,
    about = "Boot-time addon manager for immutable Linux systems",
    long_about = "Boot-time addon manager for immutable Linux systems.\n\n\
An image (an archive in a store) is unpacked or mounted into its own read-only tree under \
/run/torcx/unpack/NAME and attached: its binaries are linked into /run/torcx/bin, its systemd units \
are placed in /run/systemd/system with a drop-in tying them to the image, and its networkd, sysusers, \
tmpfiles and udev files go to their runtime directories. Every placed file is recorded in \
/run/torcx/attached/NAME.json, and detach removes exactly those. At boot, torcx-generator(8) and \
torcx-apply.service apply the profile (torcx-profile(5)) and seal the system.\n\n\
Output is a table or a line on a terminal and JSON when piped or with --json. Exit status: 0 success, \
1 failure (one line on standard error naming the image, the file and the cause), 2 usage error."
)]
pub struct Cli {
    /// Work under DIR instead of / (every path, including the seal); systemd is not driven
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print JSON (the default when stdout is not a terminal)
    #[arg(long, global = true)]
    pub json: bool,
    /// More messages (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// An extra store directory, searched last (repeatable)
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Vec<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Apply the next profile now: unpack and attach its images, then seal
    #[command(long_about = "Apply the next profile now: unpack and attach its images, then seal.\n\n\
This is what torcx-apply.service runs at boot. Images are attached one by one; one failing does not \
stop the others. /run/torcx/status.json records every image's outcome. Only when every image is \
attached are /run/torcx/profile.json and the seal /run/metadata/torcx written. Run again after \
success it changes nothing and says so; after a failure it retries the failed images.")]
    Apply {
        /// Apply again even though this boot is already sealed
        #[arg(long)]
        force: bool,
    },
    /// Attach an image on the running system: NAME, NAME:REF, or the path of an archive or directory
    #[command(long_about = "Attach an image on the running system.\n\n\
IMAGE is NAME:REF, NAME (the reference the active profile names, else the only one in the stores), \
or the path of an archive or of an unpacked image directory (a path has a '/', as in ./dir, or is an \
archive's file name; a bare word is always looked up in the stores). Refused before anything changes: the \
image already attached (use reattach), a unit of the same name anywhere in systemd's unit search \
path (--force overrides this check only), a binary or file already placed, a manifest path outside \
the image. The record is written first, so an interrupted attach is cleaned up by detach or by the \
next attach. Then systemctl daemon-reload runs, unless --no-reload or --root.")]
    Attach {
        image: String,
        /// Start the units the image enables, and wait for them
        #[arg(long)]
        now: bool,
        /// Do not run systemctl daemon-reload
        #[arg(long)]
        no_reload: bool,
        /// Attach even though a unit of the same name exists on the host
        #[arg(long)]
        force: bool,
        /// How to place unit files
        #[arg(long, value_enum, default_value_t = CopyMode::Auto)]
        copy: CopyMode,
        /// Run the image's services inside the image tree, with this sandbox
        #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "default", require_equals = true)]
        portable: Option<Sandbox>,
    },
    /// Detach an image: remove exactly what attach placed
    #[command(long_about = "Detach an image: remove exactly what attach placed.\n\n\
Refused while one of the image's units is active, unless --now (stop them first) or --force. Only \
files that are still as torcx placed them are removed; a file changed since is kept and named, and \
the exit status is 1. Then the image tree is unmounted, the record removed, and systemd reloaded. \
A record torcx cannot read says nothing of what it placed: --force removes it and the image tree, and \
says where to look for what is left.")]
    Detach {
        name: String,
        /// Stop the image's units first
        #[arg(long)]
        now: bool,
        /// Do not run systemctl daemon-reload
        #[arg(long)]
        no_reload: bool,
        /// Detach even though its units are active, or its record cannot be read
        #[arg(long)]
        force: bool,
    },
    /// Switch an attached image to another reference, all or nothing
    #[command(long_about = "Switch an attached image to another reference, all or nothing.\n\n\
The new archive is unpacked or mounted beside the old tree and checked first. Then the old files are \
removed, the trees trade places and the new files are placed; any failure puts the old attachment \
back exactly as it was. Services still running from the old tree keep it until they stop.")]
    Reattach {
        /// NAME:REF, or the path of an archive
        image: String,
        /// Restart the image's running units, start new ones, stop removed ones
        #[arg(long)]
        now: bool,
        /// Do not run systemctl daemon-reload
        #[arg(long)]
        no_reload: bool,
    },
    /// Exit 0 when the image is attached, 1 when not; print its state
    IsAttached { name: String },
    /// Attachments, their units and binaries, and the last boot apply
    #[command(long_about = "Attachments, their units and binaries, and the last boot apply.\n\n\
The last boot apply is /run/torcx/status.json (torcx-apply-status-v0): each image's state (attached, \
unchanged, failed), its error on one line, and for a failed image its kind, the cause for machines: \
missing, space, limit, conflict, refused, corrupt, signature, io or other (torcx(8), FAILURE KINDS).")]
    Status { name: Option<String> },
    /// Build, list and look into images
    #[command(subcommand)]
    Image(ImageCmd),
    /// List, check and edit profiles
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Write the man pages and shell completions into DIR/man and DIR/completions
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
}

#[derive(Subcommand)]
pub enum ProfileCmd {
    /// The booted lower and upper profiles, the run profile, the next profile, all profiles
    List,
    /// Check a profile as a boot would, without changing anything
    #[command(long_about = "Check a profile as a boot would, without changing anything.\n\n\
Every image must be in a store, readable, with a valid manifest, and no two images may place the same unit \
or binary. With --remote-only, only the images that name a remote are checked, against their remote instead: \
remote.json is found, the signed index fetches and verifies, and lists the image with a hash and a well-named \
file. Nothing is downloaded. Exit 1 with one line per problem.")]
    Check {
        /// A user profile (default: the next profile, merged as at boot)
        #[arg(long, conflicts_with = "file")]
        name: Option<String>,
        /// A profile file
        #[arg(long)]
        file: Option<PathBuf>,
        /// Check only the images that name a remote, against their remote
        #[arg(long)]
        remote_only: bool,
        #[command(flatten)]
        fetch: FetchArgs,
    },
    /// Download the profile's images that name a remote and are in no store
    #[command(long_about = "Download the profile's images that name a remote and are in no store.\n\n\
The profile is --name, --file, or the next profile. For each image whose entry names a remote (profile-manifest-v1) \
and that no store has, the remote's index (BASE_URL/torcx_remote_contents.json.asc) is fetched and its OpenPGP \
signature checked against the keys remote.json lists; the image's version (com.coreos.cl: the index's \
defaultVersion) gives the archive's location and hash. The archive is streamed into a temporary file in the \
user store (/var/lib/torcx/store, or /var/lib/torcx/store/VERSION_ID with -n) and hashed as it streams, then \
synced and renamed to NAME:VERSION.torcx.FORMAT; for com.coreos.cl a link NAME:com.coreos.cl.torcx.FORMAT \
points to it. The index is kept in the store's .torcx-remotes directory, for verify: signed. An interrupted \
download resumes where it stopped, in this run or the next. Refused, leaving nothing in the store: an HTTP error, \
an unsigned index (unless --allow-unsigned), a signature by a key the remote does not list, data after the \
signature, a missing or malformed hash, a file not named NAME:VERSION.torcx.FORMAT, a hash mismatch.\n\n\
On a terminal each download shows a progress bar; otherwise one JSON line per image (size, time, rate) is \
printed. HTTPS_PROXY, HTTP_PROXY and NO_PROXY are honoured; HTTPS is verified against \
/etc/ssl/certs/ca-certificates.crt or SSL_CERT_FILE. Exit 0 when every image is present afterwards, else 1 \
with one line per image that failed.")]
    Populate {
        /// A user profile (default: the next profile)
        #[arg(long, conflicts_with = "file")]
        name: Option<String>,
        /// A profile file
        #[arg(long)]
        file: Option<PathBuf>,
        /// Populate the versioned store of this OS version (VERSION_ID), for the next boot after an update
        #[arg(short = 'n', long = "os-release", value_name = "VERSION_ID")]
        os_release: Option<String>,
        /// Downloads at once
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=8))]
        jobs: u8,
        #[command(flatten)]
        fetch: FetchArgs,
    },
    /// Create a profile, empty or as a copy
    New {
        /// Create /etc/torcx/profiles/NAME.json
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        name: Option<String>,
        /// Create this file (must end in .json)
        #[arg(long)]
        file: Option<PathBuf>,
        /// Copy this profile
        #[arg(long, conflicts_with = "from_next")]
        from: Option<String>,
        /// Copy the next profile
        #[arg(long)]
        from_next: bool,
    },
    /// Select the profile the next boot applies
    SetNext { name: String },
    /// Pin an image reference in a profile (default: the next profile)
    UseImage {
        /// NAME:REF
        image: String,
        #[arg(long, conflicts_with = "file")]
        name: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
        /// `missing`: name an image that is in no store yet
        #[arg(long, value_parser = ["missing"])]
        allow: Option<String>,
    },
    /// Remove an image from a profile (default: the next profile)
    RemoveImage {
        /// NAME
        image: String,
        #[arg(long, conflicts_with = "file")]
        name: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

/// How to fetch from remotes.
#[derive(clap::Args, Clone)]
pub struct FetchArgs {
    /// Accept a remote index that is not signed
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Seconds to wait for a connection, for an answer, and for each read: never for a whole download
    #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Tries per request; the waits between them double from one second
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub tries: u32,
}

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Archives in the stores: name, reference, store, path, format, size
    List {
        /// Only this image
        name: Option<String>,
        /// List the stores of this OS version (VERSION_ID) instead of this one's
        #[arg(short = 'n', long = "os-release", value_name = "VERSION_ID")]
        os_release: Option<String>,
    },
    /// Remove versioned user stores other than the kept versions (or only NAME's archives in them)
    ClearVersioned {
        /// A version to keep (repeatable, at least one)
        #[arg(short = 'k', long = "keep-version", value_name = "VERSION_ID", required = true)]
        keep: Vec<String>,
        name: Option<String>,
    },
    /// Build an archive from a directory, writing its manifest when it has none
    Pack(crate::image::pack::PackArgs),
    /// Format, size, digest, manifest, what would be placed where, and lint findings
    Inspect(crate::image::inspect::InspectArgs),
    /// Pull an image from an OCI registry into the user store
    #[command(long_about = "Pull an image from an OCI registry into the user store.\n\n\
REFERENCE is [oci://]HOST[:PORT]/PATH[:TAG|@sha256:DIGEST]. The image is NAME:REF: by default the last \
component of PATH and the tag; --name says otherwise, and a pull by digest needs --name NAME:REF. OCI and \
Docker v2 manifests and image indexes are accepted; from an index, the manifest for linux on this machine's \
architecture (none is an error listing those offered), and the tag then names the index, kept beside it. An \
image without the \"com.coreos.torcx.bundle.v0\": \"yes\" annotation (or, in Docker's schema 2, which has no \
annotations, that label in its config) is refused. Every blob's digest is checked as it streams, and a partial blob resumes \
with a range request. The image lands in /var/lib/torcx/store/NAME.torcx.oci (or the versioned store with -n), \
an OCI image layout whose blobs every tag shares: a second tag fetches only the blobs it does not share. HTTPS \
is verified against the system CA bundle; plain HTTP is used with --plain-http, or for a registry on a \
loopback address once HTTPS failed there. Credentials: Basic from /etc/torcx/auth.json or \
$REGISTRY_AUTH_FILE (containers auth.json), and Bearer token challenges. Exit 1 on any failure.")]
    Pull {
        /// [oci://]HOST[:PORT]/PATH[:TAG|@sha256:DIGEST]
        reference: String,
        /// The image's NAME[:REF]
        #[arg(long)]
        name: Option<String>,
        /// Pull into the versioned store of this OS version (VERSION_ID)
        #[arg(short = 'n', long = "os-release", value_name = "VERSION_ID")]
        os_release: Option<String>,
        /// Speak plain HTTP to the registry
        #[arg(long)]
        plain_http: bool,
        /// Seconds to wait for a connection, for an answer, and for each read
        #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Publish an image to an OCI registry
    #[command(long_about = "Publish an image to an OCI registry.\n\n\
SOURCE is an image directory (packed as image pack --format oci does, its manifest scanned when it has none), \
a tar, squashfs or erofs archive (NAME:REF.torcx.tgz, .tar.zst, .squashfs or .erofs: unpacked with the confined \
extractor, squashfs and erofs read without mounting, as image inspect does, then packed), a \
bundle (NAME.torcx.oci.tgz: the tag REFERENCE names, else its only one) or a layout directory \
(NAME.torcx.oci; a tag pulled through an image index pushes the manifest kept with it, this machine's). REFERENCE is [oci://]HOST[:PORT]/PATH:TAG. The manifest carries the \
\"com.coreos.torcx.bundle.v0\": \"yes\" annotation (and its config the same label). Blobs the registry has \
already (HEAD) are not sent. The manifest digest it prints is what a signed index lists for a registry remote \
(torcx-config(5)). \
Credentials and HTTPS as for image pull. Exit 1 on any failure.")]
    Push {
        /// An image directory, archive, bundle or layout directory
        source: PathBuf,
        /// [oci://]HOST[:PORT]/PATH:TAG
        reference: String,
        /// Speak plain HTTP to the registry
        #[arg(long)]
        plain_http: bool,
        /// Seconds to wait for a connection, for an answer, and for each read
        #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Check archives against the signed remote indexes kept in the stores
    #[command(long_about = "Check archives against the signed remote indexes kept in the stores.\n\n\
IMAGE is NAME, NAME:REF, or the path of an archive; without it, every archive outside the vendor store \
(/usr/share/torcx/store, which the verification of /usr covers). Each archive is read once and its hash looked \
up in the indexes profile populate kept (STORE/.torcx-remotes/REMOTE/*.json.asc), whose signatures must verify \
against the keys their remote lists now. A layout from a registry (NAME.torcx.oci) is checked by the digest of \
its tag's manifest or image index, after every blob the tag uses is checked against its digest. An archive no \
index lists is a failure. Exit 1 with one line per \
failure.")]
    Verify {
        /// NAME, NAME:REF, or an archive's path
        image: Option<String>,
    },
}
