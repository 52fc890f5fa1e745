//! Remotes for the `torcx profile populate` tests: an OpenPGP signer (`gpg`
//! in a private GNUPGHOME), a throw-away certificate authority (`openssl`),
//! and a loopback HTTP(S) server and proxy (`tests/fixtures/remote_server.py`)
//! whose misbehaviour (errors, cut or stalled transfers, delays, redirects)
//! a test switches per path, and which logs every request it got.
//!
//! Typical use:
//!
//! ```ignore
//! let t = tempfile::tempdir().unwrap();
//! let gpg = Gpg::new(t.path(), "torcx test <test@torcx.invalid>", "ed25519");
//! let www = t.path().join("www");
//! // ... put archives under www/, and the clearsigned index:
//! std::fs::write(www.join("torcx_remote_contents.json.asc"), gpg.clearsign(&index)).unwrap();
//! std::fs::write(keyring, gpg.public_armored()).unwrap();
//! let ca = TestCa::new(&t.path().join("ca"));
//! let origin = Server::start(&www, Some(&ca));      // https://127.0.0.1:PORT
//! origin.set_rules(json!({"/store/a:1.torcx.tgz": {"drop_after": 1000, "drop_once": true}}));
//! // ... run torcx against origin.url(), trusting ca.ca_pem ...
//! assert_eq!(origin.requests_for("/store/a:1.torcx.tgz").len(), 2);
//!
//! // A proxy in front of it (HTTPS_PROXY=proxy.url()): CONNECT is relayed.
//! let proxy = Server::start(&www, None);
//! // ... afterwards:
//! assert!(!origin.tunneled_via(&proxy).is_empty());
//! ```
//!
//! A plain-HTTP proxy request (`GET http://host:port/path`) is answered by
//! the proxy itself from its own directory (it is not forwarded), so start
//! the proxy on the same directory as the origin and look at its log.
//! The rule keys are documented at the top of `remote_server.py`.

use serde_json::{Value, json};
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The server script, run with `python3`.
pub const REMOTE_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/remote_server.py");

/// Runs `program args` with `envs`, feeding `input` on stdin; panics with
/// its stderr unless it succeeds; returns its stdout.
fn run(program: &str, args: &[&str], envs: &[(&str, &Path)], input: Option<&[u8]>) -> Vec<u8> {
    let mut c = Command::new(program);
    c.args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdin = child.stdin.take();
    let out = std::thread::scope(|s| {
        if let (Some(mut stdin), Some(data)) = (stdin, input) {
            // A thread, so a large input cannot deadlock against a full stdout pipe.
            s.spawn(move || {
                let _ = stdin.write_all(data);
            });
        }
        child.wait_with_output()
    })
    .unwrap_or_else(|e| panic!("waiting for {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An OpenPGP key pair in its own GNUPGHOME, made and used by `gpg`.
///
/// `gpg` starts a `gpg-agent` for the home on first use; dropping the
/// `Gpg` stops it (`gpgconf --kill all`).
pub struct Gpg {
    /// The GNUPGHOME (`DIR/gnupg`, mode 0700).
    pub home: PathBuf,
    /// The user id the key was made for.
    pub uid: String,
    /// The primary key's fingerprint (40 upper-case hex digits for v4 keys).
    pub fingerprint: String,
}

impl Gpg {
    /// A new key pair in `dir/gnupg` (created, mode 0700) for `uid`, without
    /// passphrase, signing only, never expiring:
    /// `gpg --batch --pinentry-mode loopback --passphrase '' --quick-gen-key UID ALGO sign never`.
    /// `algo` is what gpg takes there, e.g. "ed25519" or "rsa3072".
    pub fn new(dir: &Path, uid: &str, algo: &str) -> Gpg {
        let home = dir.join("gnupg");
        fs::create_dir_all(&home).unwrap_or_else(|e| panic!("creating {}: {e}", home.display()));
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
        let mut g = Gpg { home, uid: uid.to_string(), fingerprint: String::new() };
        g.gpg(&["--quick-gen-key", uid, algo, "sign", "never"], None);
        let listing =
            String::from_utf8(g.gpg(&["--with-colons", "--list-secret-keys", &format!("={uid}")], None)).unwrap();
        g.fingerprint = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:").map(|rest| rest.split(':').nth(8).unwrap_or("").to_string()))
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| panic!("no fingerprint in gpg's listing:\n{listing}"));
        g
    }

    /// `gpg --batch --no-tty --pinentry-mode loopback --passphrase '' ARGS`
    /// in this home; its stdout.
    pub fn gpg(&self, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
        let mut all = vec!["--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""];
        all.extend_from_slice(args);
        run("gpg", &all, &[("GNUPGHOME", self.home.as_path())], input)
    }

    /// The public key, ASCII-armored (`gpg --armor --export FINGERPRINT`).
    pub fn public_armored(&self) -> String {
        let out = String::from_utf8(self.gpg(&["--armor", "--export", &self.fingerprint], None)).unwrap();
        assert!(out.contains("BEGIN PGP PUBLIC KEY BLOCK"), "gpg exported no key: {out:?}");
        out
    }

    /// The public key as binary packets (`gpg --export FINGERPRINT`); this,
    /// not the armored form, is what `gpgv --keyring FILE` reads.
    pub fn public_binary(&self) -> Vec<u8> {
        let out = self.gpg(&["--export", &self.fingerprint], None);
        assert!(!out.is_empty(), "gpg exported no key");
        out
    }

    /// `text` clearsigned with this key, SHA-256:
    /// `gpg --local-user FINGERPRINT --digest-algo SHA256 --clearsign`.
    /// (Trailing spaces of a line are kept in the text but are not signed,
    /// and lines starting with '-' come back dash-escaped, as OpenPGP says.)
    pub fn clearsign(&self, text: &str) -> String {
        let out = self
            .gpg(&["--local-user", &self.fingerprint, "--digest-algo", "SHA256", "--clearsign"], Some(text.as_bytes()));
        String::from_utf8(out).expect("clearsigned text is not UTF-8")
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "all"])
            .env("GNUPGHOME", &self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A certificate authority and a server certificate it signed, made by
/// `openssl` (with `OPENSSL_CONF=/dev/null` and its own config files, so
/// the host's openssl.cnf does not matter).
pub struct TestCa {
    /// Where the files are.
    pub dir: PathBuf,
    /// The CA certificate (PEM): EC P-256, CN "torcx test CA",
    /// basicConstraints critical CA:TRUE, keyUsage critical keyCertSign, cRLSign.
    pub ca_pem: PathBuf,
    /// The CA's private key (PEM, PKCS#8).
    pub ca_key: PathBuf,
    /// The server certificate (PEM): EC P-256, CN 127.0.0.1, SAN IP:127.0.0.1
    /// and DNS:localhost, EKU serverAuth, keyUsage digitalSignature, CA:FALSE.
    pub cert: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

const CA_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = torcx test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
";

const SERVER_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = 127.0.0.1
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
";

impl TestCa {
    /// Makes the CA and the server certificate in `dir` (created), both
    /// valid from now for 30 days, and checks them with
    /// `openssl verify -CAfile ca.pem -purpose sslserver -verify_ip 127.0.0.1`.
    pub fn new(dir: &Path) -> TestCa {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let f = |name: &str| dir.join(name);
        let ca = TestCa {
            dir: dir.to_path_buf(),
            ca_pem: f("ca.pem"),
            ca_key: f("ca.key"),
            cert: f("server.pem"),
            key: f("server.key"),
        };
        fs::write(f("ca.cnf"), CA_CNF).unwrap();
        fs::write(f("server.cnf"), SERVER_CNF).unwrap();
        let s = |p: &Path| p.to_str().expect("non-UTF-8 path").to_string();
        let (ca_cnf, server_cnf, csr) = (s(&f("ca.cnf")), s(&f("server.cnf")), s(&f("server.csr")));
        let (ca_pem, ca_key, cert, key) = (s(&ca.ca_pem), s(&ca.ca_key), s(&ca.cert), s(&ca.key));
        // Positive, and different for every CA made in this process.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        let serial = |n: u64| format!("0x{:x}", ((nanos ^ ((std::process::id() as u64) << 32)) >> 2) + n);
        let env: &[(&str, &Path)] = &[("OPENSSL_CONF", Path::new("/dev/null"))];
        let openssl = |args: &[&str]| {
            run("openssl", args, env, None);
        };
        let genkey = ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"];
        openssl(&[&genkey[..], &[ca_key.as_str()]].concat());
        let ca_serial = serial(1);
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-config",
            &ca_cnf,
            "-extensions",
            "v3_ca",
            "-key",
            &ca_key,
            "-sha256",
            "-days",
            "30",
            "-set_serial",
            &ca_serial,
            "-out",
            &ca_pem,
        ]);
        openssl(&[&genkey[..], &[key.as_str()]].concat());
        openssl(&["req", "-new", "-config", &server_cnf, "-key", &key, "-out", &csr]);
        let server_serial = serial(2);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &server_serial,
            "-days",
            "30",
            "-sha256",
            "-extfile",
            &server_cnf,
            "-extensions",
            "v3_server",
            "-out",
            &cert,
        ]);
        openssl(&["verify", "-CAfile", &ca_pem, "-purpose", "sslserver", "-verify_ip", "127.0.0.1", &cert]);
        ca
    }
}

/// A running `remote_server.py` on 127.0.0.1, killed when dropped.
pub struct Server {
    /// The port it listens on.
    pub port: u16,
    /// The directory it serves.
    pub dir: PathBuf,
    /// Whether it speaks TLS (with a [`TestCa`]'s server certificate).
    pub tls: bool,
    control: PathBuf,
    log: PathBuf,
    stderr: PathBuf,
    child: Child,
    // Last: removed after the child is gone (Drop runs before the fields).
    tmp: tempfile::TempDir,
}

impl Server {
    /// Starts `python3 remote_server.py` serving `dir`, over TLS with
    /// `tls`'s server certificate when given, and waits (at most 10 s) for
    /// its port file and a successful TCP connect. Its control, log, port
    /// and stderr files live in a temporary directory of its own.
    pub fn start(dir: &Path, tls: Option<&TestCa>) -> Server {
        let tmp = tempfile::Builder::new().prefix("torcx-remote.").tempdir().expect("creating a temporary directory");
        let port_file = tmp.path().join("port");
        let control = tmp.path().join("control.json");
        let log = tmp.path().join("requests.jsonl");
        let stderr = tmp.path().join("stderr");
        let err = fs::File::create(&stderr).expect("creating the server's stderr file");
        let mut c = Command::new("python3");
        c.arg(REMOTE_SERVER)
            .arg("--dir")
            .arg(dir)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--control")
            .arg(&control)
            .arg("--log")
            .arg(&log);
        if let Some(ca) = tls {
            c.arg("--tls").arg(&ca.cert).arg(&ca.key);
        }
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
        let child = c.spawn().unwrap_or_else(|e| panic!("cannot run python3 {REMOTE_SERVER}: {e}"));
        // From here on a panic drops the Server, which kills the child.
        let mut s = Server { port: 0, dir: dir.to_path_buf(), tls: tls.is_some(), control, log, stderr, child, tmp };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("remote_server.py exited ({status}) before listening: {}", s.stderr_text());
            }
            if s.port == 0
                && let Ok(text) = fs::read_to_string(&port_file)
            {
                s.port = text.trim().parse().unwrap_or(0);
            }
            if s.port != 0 {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, s.port));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                    return s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "remote_server.py did not listen within 10 s (port {}): {}",
                s.port,
                s.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "https" } else { "http" }, self.port)
    }

    /// `127.0.0.1:PORT`: what a CONNECT to this server names (and the key
    /// of a rule for such CONNECTs on a proxy).
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Replaces the rules by `rules`, `{"PATH": RULE, ...}` (written to a
    /// temporary file, then renamed; the server reads it on every request
    /// and starts its per-path counters afresh).
    pub fn set_rules(&self, rules: Value) {
        assert!(rules.is_object(), "rules must be a JSON object: {rules}");
        let tmp = self.control.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(&rules).unwrap()).unwrap();
        fs::rename(&tmp, &self.control).unwrap();
    }

    /// No rules any more: everything is served normally.
    pub fn clear_rules(&self) {
        self.set_rules(json!({}));
    }

    /// Every request logged so far, in order, one JSON object each:
    /// `method`, `path` (the raw request target), `range` (the header or
    /// null), `host`, `tunnel`, `peer` ("ip:port"), `tls`, and for CONNECT
    /// `upstream`. A line still being written is left out.
    pub fn requests(&self) -> Vec<Value> {
        let text = match fs::read_to_string(&self.log) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("reading {}: {e}", self.log.display()),
        };
        let complete = match text.rfind('\n') {
            Some(i) => &text[..i],
            None => return Vec::new(),
        };
        complete.lines().filter(|l| !l.trim().is_empty()).filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The logged requests for URL path `path` (the path part of the
    /// target, so absolute-form proxy requests count too; query ignored).
    pub fn requests_for(&self, path: &str) -> Vec<Value> {
        self.requests().into_iter().filter(|r| request_path(r) == path).collect()
    }

    /// The requests this server got through a CONNECT tunnel of `proxy`
    /// (another `Server`): those whose client address is the proxy's end of
    /// one of its relays. Each comes back with `"tunnel": true`.
    pub fn tunneled_via(&self, proxy: &Server) -> Vec<Value> {
        let upstreams: Vec<String> = proxy
            .requests()
            .iter()
            .filter(|r| r["method"] == "CONNECT")
            .filter_map(|r| r["upstream"].as_str().map(str::to_string))
            .collect();
        self.requests()
            .into_iter()
            .filter(|r| r["peer"].as_str().is_some_and(|p| upstreams.iter().any(|u| u == p)))
            .map(|mut r| {
                r["tunnel"] = Value::Bool(true);
                r
            })
            .collect()
    }

    /// Forgets the requests logged so far.
    pub fn clear_requests(&self) {
        fs::write(&self.log, b"").unwrap();
    }

    /// What the server wrote to stderr (errors, failed TLS handshakes,
    /// clients that went away), for assertion messages.
    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The server's temporary directory (control, log, port, stderr).
    pub fn state_dir(&self) -> &Path {
        self.tmp.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The URL path of a logged request's target: "/x" for "/x?q" and for
/// "http://host:port/x"; a CONNECT's "host:port" as it is.
pub fn request_path(request: &Value) -> String {
    let target = request["path"].as_str().unwrap_or("");
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    path.split(['?', '#']).next().unwrap_or("").to_string()
}
