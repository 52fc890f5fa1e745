//! `torcx profile populate` against real servers on loopback: a Python
//! HTTP(S) server that can drop, stall, fail and proxy, keys made by `gpg`,
//! a CA made by `openssl`. Every refusal leaves the store as it was.

mod common;

use common::remote::{Gpg, Server, TestCa, request_path};
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A machine with remote `main` serving image `a:1` (and `b:2`), signed by `gpg`.
struct Fleet {
    t: TestRoot,
    gpg: Gpg,
    /// What the server serves.
    serve: PathBuf,
    server: Server,
}

fn sha512(path: &Path) -> String {
    let out = std::process::Command::new("sha512sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

impl Fleet {
    fn new() -> Fleet {
        Fleet::with(None)
    }

    fn with(ca: Option<&TestCa>) -> Fleet {
        let t = TestRoot::new();
        t.write("usr/lib/os-release", "ID=flatcar\nVERSION_ID=1.0.0\n");
        let gpg = Gpg::new(&t.scratch("keys"), "torcx test <test@torcx.invalid>", "ed25519");
        let serve = t.scratch("serve");
        for (n, r) in [("a", "1"), ("b", "2")] {
            let img = Image::new(&t, n, r);
            img.manifest(json!({"bin": [format!("/bin/{n}-tool")]}))
                .exec(&format!("bin/{n}-tool"), "#!/bin/sh\necho hi\n");
            img.pack_to(&serve.join(format!("{n}:{r}.torcx.tgz")), Fmt::Tgz);
        }
        let server = Server::start(&serve, ca);
        let f = Fleet { t, gpg, serve, server };
        f.remote(&f.server.url(), true);
        f.index(|_| {});
        f.profile(&[("a", "1", "main")]);
        f
    }

    /// `remote.json` of `main` in /etc/torcx/remotes, with our key or none.
    fn remote(&self, base_url: &str, key: bool) {
        let keys = if key { json!([{"armored_keyring": "key.asc"}]) } else { json!([]) };
        self.t.write(
            "etc/torcx/remotes/main/remote.json",
            json!({"kind": "remote-manifest-v0", "value": {"base_url": base_url, "keys": keys}}).to_string(),
        );
        self.t.write("etc/torcx/remotes/main/key.asc", self.gpg.public_armored());
    }

    /// The index of what `serve` holds, edited by `edit`, clearsigned.
    fn index(&self, edit: impl FnOnce(&mut Value)) {
        let mut doc = self.contents();
        edit(&mut doc);
        self.publish(&self.gpg.clearsign(&serde_json::to_string_pretty(&doc).unwrap()));
    }

    fn contents(&self) -> Value {
        let v = |n: &str, r: &str| {
            let file = format!("{n}:{r}.torcx.tgz");
            json!({"version": r, "format": "tgz", "location": file, "hash": format!("sha512-{}", sha512(&self.serve.join(&file)))})
        };
        json!({"kind": "torcx-remote-contents-v1", "value": {"images": [
            {"name": "a", "defaultVersion": "1", "versions": [v("a", "1")]},
            {"name": "b", "defaultVersion": "2", "versions": [v("b", "2")]},
        ]}})
    }

    fn publish(&self, text: &str) {
        write(&self.serve.join("torcx_remote_contents.json.asc"), text);
    }

    /// A `profile-manifest-v1` next profile.
    fn profile(&self, images: &[(&str, &str, &str)]) {
        let images: Vec<Value> =
            images.iter().map(|(n, r, rem)| json!({"name": n, "reference": r, "remote": rem})).collect();
        self.t.write(
            "etc/torcx/profiles/p.json",
            json!({"kind": "profile-manifest-v1", "value": {"images": images}}).to_string(),
        );
        self.t.write("etc/torcx/next-profile", "p\n");
    }

    fn torcx(&self, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
        let mut c = std::process::Command::new(TORCX);
        clean_env(&mut c);
        c.envs(env.iter().copied()).arg("--root").arg(&self.t.root).args(args);
        let out = c.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `profile populate` with two tries and 5 s timeouts unless `extra` says otherwise.
    fn populate(&self, extra: &[&str]) -> (i32, String, String) {
        let mut a = vec!["profile", "populate"];
        for (flag, default) in [("--tries", "2"), ("--timeout", "5")] {
            if !extra.contains(&flag) {
                a.extend([flag, default]);
            }
        }
        a.extend_from_slice(extra);
        self.torcx(&[], &a)
    }

    /// Every file or link under the user stores (relative), hidden ones too.
    fn store(&self) -> Vec<String> {
        let base = self.t.path("var/lib/torcx");
        let mut v: Vec<String> =
            listing(&base).into_keys().filter(|p| !base.join(p).symlink_metadata().unwrap().is_dir()).collect();
        v.sort();
        v
    }
}

/// The JSON lines populate printed, one per image.
fn lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn populate_downloads_verifies_keeps_the_index_and_is_idempotent() {
    let f = Fleet::new();
    let (code, out, err) = f.populate(&[]);
    assert_eq!(code, 0, "{err}");
    let l = lines(&out);
    assert_eq!(l.len(), 1, "{out}");
    assert_eq!(l[0]["kind"], "torcx-populate-image-v0");
    let v = &l[0]["value"];
    assert_eq!(
        (v["image"].as_str(), v["remote"].as_str(), v["state"].as_str()),
        (Some("a:1"), Some("main"), Some("downloaded"))
    );
    let size = std::fs::metadata(f.serve.join("a:1.torcx.tgz")).unwrap().len();
    assert_eq!(v["bytes"], size);
    assert!(v["seconds"].is_number() && v["bytes_per_second"].is_number(), "{v}");
    let stored = f.t.path("var/lib/torcx/store/a:1.torcx.tgz");
    assert_eq!(std::fs::read(&stored).unwrap(), std::fs::read(f.serve.join("a:1.torcx.tgz")).unwrap());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777, 0o644);
    let s = f.store();
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(!f.t.exists("var/lib/torcx/store/.torcx-remotes/main/a.json.asc"));
    assert!(s[0].starts_with("store/.torcx-remotes/main/") && s[0].ends_with(".json.asc"), "{s:?}");
    assert_eq!(s[1], "store/a:1.torcx.tgz");
    // The archive is checked against the kept index.
    let (code, out, err) = f.torcx(&[], &["--json", "image", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["value"][0]["ok"], true, "{doc}");
    assert_eq!(doc["value"][0]["remote"], "main");
    // Again: present, nothing fetched.
    let before = f.server.requests_for("/a:1.torcx.tgz").len();
    let (code, out, _) = f.populate(&[]);
    assert_eq!(code, 0);
    assert_eq!(lines(&out)[0]["value"]["state"], "present");
    assert_eq!(f.server.requests_for("/a:1.torcx.tgz").len(), before);
}

#[test]
fn a_base_url_without_its_slash_is_still_a_directory_and_variables_expand() {
    let f = Fleet::new();
    // The index and archives one level down, named by the OS version.
    let sub = f.serve.join("flatcar/2.0.0");
    std::fs::create_dir_all(&sub).unwrap();
    for e in std::fs::read_dir(&f.serve).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), sub.join(e.file_name())).unwrap();
        }
    }
    f.remote(&format!("{}/${{ID}}/${{VERSION_ID}}", f.server.url()), true);
    // The default version, for the next OS version (-n): the versioned store, and a link.
    f.profile(&[("a", "com.coreos.cl", "main")]);
    let (code, out, err) = f.populate(&["-n", "2.0.0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(f.server.requests_for("/flatcar/2.0.0/a:1.torcx.tgz").len(), 1);
    let link = f.t.path("var/lib/torcx/store/2.0.0/a:com.coreos.cl.torcx.tgz");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("a:1.torcx.tgz"));
    assert!(f.t.path("var/lib/torcx/store/2.0.0/a:1.torcx.tgz").is_file());
    assert!(!f.t.exists("var/lib/torcx/store/a:1.torcx.tgz"));
    // The stores of 2.0.0 list it under both references.
    let (_, out, _) = f.torcx(&[], &["--json", "image", "list", "-n", "2.0.0"]);
    let refs: Vec<String> = serde_json::from_str::<Value>(&out).unwrap()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reference"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refs, ["1", "com.coreos.cl"], "{out}");
    // An unknown variable is named.
    f.remote(&format!("{}/${{NOPE}}/", f.server.url()), true);
    f.profile(&[("b", "2", "main")]);
    let (code, _, err) = f.populate(&[]);
    assert_eq!(code, 1);
    assert!(err.contains("image b:2 (remote main)") && err.contains("unknown variable ${\"NOPE\"}"), "{err}");
}

/// Populate fails for `a:1` with `want` in its one error line, and the store is untouched.
fn refused(f: &Fleet, extra: &[&str], want: &str) {
    let (code, out, err) = f.populate(extra);
    assert_eq!(code, 1, "{out}{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("image a:1 (remote main): ") && errors[0].contains(want), "{err}");
    assert_eq!(lines(&out)[0]["value"]["state"], "failed");
    assert_eq!(f.store(), Vec::<String>::new(), "something was left in the store");
}

#[test]
fn http_errors_are_refused_and_leave_nothing() {
    let f = Fleet::new();
    f.server.set_rules(json!({"/a:1.torcx.tgz": {"status": 404}}));
    refused(&f, &[], "HTTP 404");
    // A 5xx is tried again (--tries 2), then given up.
    f.server.set_rules(json!({"/torcx_remote_contents.json.asc": {"status": 500}}));
    refused(&f, &[], "HTTP 500");
    assert_eq!(f.server.requests_for("/torcx_remote_contents.json.asc").len(), 1 + 2);
    // Retried with a wait, then it works.
    f.server.set_rules(json!({"/a:1.torcx.tgz": {"status": 503, "fail_times": 1}}));
    let (code, _, err) = f.populate(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("HTTP 503") && err.contains("again in 1 s"), "{err}");
}

#[test]
fn bad_hashes_and_names_are_refused() {
    let f = Fleet::new();
    let set = |k: &str, v: &str| {
        let (k, v) = (k.to_string(), v.to_string());
        f.index(move |d| d["value"]["images"][0]["versions"][0][k] = json!(v))
    };
    set("hash", "");
    refused(&f, &[], "empty hash");
    set("hash", "sha512-xyz");
    refused(&f, &[], "not 128 hex digits");
    set("hash", &format!("md5-{}", "0".repeat(32)));
    refused(&f, &[], "unknown algorithm");
    set("hash", &format!("sha512-{}", "0".repeat(128)));
    refused(&f, &[], "hash mismatch: the index lists sha512-000");
    // The right hash, a file not named a:1.
    f.index(|d| {
        let h = d["value"]["images"][1]["versions"][0]["hash"].clone();
        d["value"]["images"][0]["versions"][0]["location"] = json!("b:2.torcx.tgz");
        d["value"]["images"][0]["versions"][0]["hash"] = h;
    });
    refused(&f, &[], "must be named a:1.torcx.tgz");
    f.index(|d| d["value"]["images"][0]["versions"][0]["version"] = json!("9"));
    refused(&f, &[], "no version \"1\"");
}

#[test]
fn signatures_are_required_and_must_be_the_remotes() {
    let f = Fleet::new();
    let plain = serde_json::to_string(&f.contents()).unwrap();
    f.publish(&plain);
    refused(&f, &[], "the index is not signed");
    // Even when the remote lists no keys (upstream accepted it then).
    f.remote(&f.server.url(), false);
    refused(&f, &[], "the index is not signed");
    // Unless the admin says so, for this command.
    let (code, _, err) = f.populate(&["--allow-unsigned"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("is not signed; accepted because of --allow-unsigned"), "{err}");
    // An unsigned index is not kept: it vouches for nothing at boot.
    assert_eq!(f.store(), ["store/a:1.torcx.tgz"]);
    std::fs::remove_file(f.t.path("var/lib/torcx/store/a:1.torcx.tgz")).unwrap();
    f.remote(&f.server.url(), true);
    // Signed by a key the remote does not list.
    let other = Gpg::new(&f.t.scratch("other"), "someone else <x@torcx.invalid>", "rsa3072");
    f.publish(&other.clearsign(&plain));
    refused(&f, &[], "does not verify against any key the remote lists");
    // Signed text changed afterwards.
    let good = f.gpg.clearsign(&plain);
    f.publish(&good.replacen("\"a\"", "\"A\"", 1));
    refused(&f, &[], "does not verify");
    // Data after the signature.
    f.publish(&format!("{good}{{\"kind\":\"torcx-remote-contents-v1\"}}\n"));
    refused(&f, &["--allow-unsigned"], "trailing data");
    // Every byte bounded: an index past 8 MiB is refused, not parsed.
    f.publish(&format!("{good}{}", " ".repeat(9 << 20)));
    refused(&f, &[], "the index is larger than 8388608 bytes");
    f.publish(&good);
    let (code, _, err) = f.populate(&[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let f = Fleet::new();
    let size = std::fs::metadata(f.serve.join("a:1.torcx.tgz")).unwrap().len();
    // Cut once, one try: the part stays for the next run.
    f.server.set_rules(json!({"/a:1.torcx.tgz": {"drop_after": 100, "drop_once": true}}));
    let (code, _, err) = f.populate(&["--tries", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("after 100 bytes") || err.contains("ended after 100"), "{err}");
    assert_eq!(f.store(), ["store/.a:1.torcx.tgz.part"]);
    let (code, out, err) = f.populate(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&out)[0]["value"]["resumed_bytes"], 100);
    let reqs = f.server.requests_for("/a:1.torcx.tgz");
    assert_eq!(reqs.last().unwrap()["range"], "bytes=100-", "{reqs:?}");
    assert_eq!(sha512(&f.t.path("var/lib/torcx/store/a:1.torcx.tgz")), sha512(&f.serve.join("a:1.torcx.tgz")));
    assert!(!f.store().iter().any(|p| p.ends_with(".part")));
    // In one run: the retry resumes.
    std::fs::remove_file(f.t.path("var/lib/torcx/store/a:1.torcx.tgz")).unwrap();
    f.server.set_rules(json!({"/a:1.torcx.tgz": {"drop_after": size / 2, "drop_once": true}}));
    let (code, out, err) = f.populate(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&out)[0]["value"]["resumed_bytes"], size / 2);
}

#[test]
fn a_stalled_server_times_out_per_read_and_leaves_nothing() {
    let f = Fleet::new();
    f.server.set_rules(json!({"/a:1.torcx.tgz": {"stall": true}}));
    refused(&f, &["--timeout", "1", "--tries", "1"], "a:1.torcx.tgz");
    // A slow server that keeps sending finishes: no deadline for a whole download.
    f.server.set_rules(json!({"/a:1.torcx.tgz": {"delay": 1.5}}));
    let (code, _, err) = f.populate(&["--timeout", "3", "--tries", "1"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn https_is_verified_against_the_ca_bundle() {
    let ca = TestCa::new(&tempfile::tempdir().unwrap().keep());
    let f = Fleet::with(Some(&ca));
    assert!(f.server.url().starts_with("https://"));
    // The system bundle does not know the test CA.
    let (code, _, err) = f.populate(&["--tries", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("image a:1 (remote main)") && err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(f.store(), Vec::<String>::new());
    let ca_pem = ca.ca_pem.display().to_string();
    // A redirect from https:// to http:// is refused.
    let plain = Server::start(&f.serve, None);
    f.server.set_rules(json!({"/a:1.torcx.tgz": {"redirect": format!("{}/a:1.torcx.tgz", plain.url())}}));
    let (code, _, err) = f.torcx(&[("SSL_CERT_FILE", &ca_pem)], &["profile", "populate", "--tries", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(plain.requests().is_empty(), "followed a redirect to http://");
    assert_eq!(f.store(), Vec::<String>::new());
    f.server.set_rules(json!({}));
    let (code, _, err) = f.torcx(&[("SSL_CERT_FILE", &ca_pem)], &["profile", "populate"]);
    assert_eq!(code, 0, "{err}");
    assert!(f.t.path("var/lib/torcx/store/a:1.torcx.tgz").is_file());
}

#[test]
fn proxies_are_honoured() {
    let f = Fleet::new();
    let proxy = Server::start(&f.serve, None);
    let (code, _, err) = f.torcx(&[("HTTP_PROXY", &proxy.url())], &["profile", "populate"]);
    assert_eq!(code, 0, "{err}");
    // ureq tunnels through an HTTP proxy with CONNECT, for http:// URLs too.
    let via: Vec<String> = proxy.requests().iter().map(|r| r["path"].as_str().unwrap().to_string()).collect();
    assert!(via.contains(&f.server.authority()), "{via:?}");
    let tunneled = f.server.tunneled_via(&proxy);
    assert_eq!(tunneled.len(), f.server.requests().len(), "{tunneled:?}");
    assert!(tunneled.iter().any(|r| request_path(r) == "/a:1.torcx.tgz"), "{tunneled:?}");
    // NO_PROXY names the host: straight to it.
    std::fs::remove_file(f.t.path("var/lib/torcx/store/a:1.torcx.tgz")).unwrap();
    let (code, _, err) =
        f.torcx(&[("HTTP_PROXY", &proxy.url()), ("NO_PROXY", "localhost,127.0.0.1")], &["profile", "populate"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(f.server.requests_for("/a:1.torcx.tgz").len(), 2);
    assert_eq!(f.server.tunneled_via(&proxy).len(), tunneled.len(), "NO_PROXY went through the proxy");
    // HTTPS through a CONNECT tunnel.
    let ca = TestCa::new(&f.t.scratch("ca"));
    let origin = Server::start(&f.serve, Some(&ca));
    f.remote(&origin.url(), true);
    std::fs::remove_file(f.t.path("var/lib/torcx/store/a:1.torcx.tgz")).unwrap();
    let ca_pem = ca.ca_pem.display().to_string();
    let (code, _, err) =
        f.torcx(&[("HTTPS_PROXY", &proxy.url()), ("SSL_CERT_FILE", &ca_pem)], &["profile", "populate"]);
    assert_eq!(code, 0, "{err}");
    assert!(proxy.requests().iter().any(|r| r["method"] == "CONNECT" && r["path"] == json!(origin.authority())));
}

#[test]
fn file_remotes_are_verified_like_http() {
    let f = Fleet::new();
    f.remote(&format!("file://{}", f.serve.display()), true);
    let (code, out, err) = f.populate(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&out)[0]["value"]["state"], "downloaded");
    assert!(f.server.requests().is_empty());
    std::fs::remove_file(f.t.path("var/lib/torcx/store/a:1.torcx.tgz")).unwrap();
    let _ = std::fs::remove_dir_all(f.t.path("var/lib/torcx/store/.torcx-remotes"));
    // Air-gapped media with a changed archive.
    write(&f.serve.join("a:1.torcx.tgz"), "not the archive the index lists");
    refused(&f, &[], "hash mismatch");
}

#[test]
fn several_images_download_in_parallel_and_failures_are_one_line_each() {
    let f = Fleet::new();
    f.profile(&[("a", "1", "main"), ("b", "2", "main"), ("c", "3", "main"), ("d", "1", "nowhere"), ("e", "1", "")]);
    let (code, out, err) = f.populate(&["--jobs", "3"]);
    assert_eq!(code, 1, "{out}{err}");
    let mut states: Vec<(String, String)> = lines(&out)
        .iter()
        .map(|l| (l["value"]["image"].as_str().unwrap().into(), l["value"]["state"].as_str().unwrap().into()))
        .collect();
    states.sort();
    assert_eq!(states, pairs(&[("a:1", "downloaded"), ("b:2", "downloaded"), ("c:3", "failed"), ("d:1", "failed")]));
    let errors: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 2, "{err}");
    assert!(errors.iter().any(|l| l.contains("image c:3 (remote main): the index lists no image \"c\"")), "{err}");
    assert!(
        errors
            .iter()
            .any(|l| l.contains("image d:1 (remote nowhere): ") && l.contains("no remote.json for remote nowhere")),
        "{err}"
    );
}

#[test]
fn check_remote_only_fetches_no_archive() {
    let f = Fleet::new();
    f.profile(&[("a", "1", "main"), ("b", "9", "main")]);
    let (code, out, err) = f.torcx(&[], &["--json", "profile", "check", "--remote-only"]);
    assert_eq!(code, 1, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["value"]["images"], json!(["a:1", "b:9"]));
    assert_eq!(doc["value"]["problems"][0]["image"], "b:9");
    assert!(err.contains("image b:9: remote main: image b: the index lists no version \"9\""), "{err}");
    assert!(f.server.requests_for("/a:1.torcx.tgz").is_empty());
    assert_eq!(f.store(), Vec::<String>::new());
}

#[test]
fn on_a_terminal_a_bar_then_a_line_per_image() {
    require_tool("on_a_terminal_a_bar_then_a_line_per_image", "script", "bsdutils");
    let f = Fleet::new();
    // Slow enough for the bar to be drawn.
    f.server.set_rules(json!({"/a:1.torcx.tgz": {"delay": 0.5}}));
    let cmd = format!("'{TORCX}' --root '{}' profile populate", f.t.root.display());
    let out = std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("a:1: downloaded from remote main: "), "{text}");
    assert!(text.contains(" bytes in ") && text.contains(" MB/s)"), "{text}");
    // The bar: the image's name padded, then bytes done of the whole, rate, time left.
    let size = std::fs::metadata(f.serve.join("a:1.torcx.tgz")).unwrap().len();
    assert!(
        text.lines().any(|l| l
            .trim_start_matches(|c: char| c == '\x1b' || "[0123456789ABK".contains(c))
            .starts_with("a:1 ")
            && l.contains(&format!("{size} B/{size} B"))
            && l.contains(" B/s")),
        "{text}"
    );
}

/// Found by the attack on issue 10: a `.part` planted as a symlink, or a
/// FIFO, is not followed or waited on; the file it points at is untouched.
#[test]
fn a_planted_part_is_never_followed() {
    let f = Fleet::new();
    let victim = f.t.scratch("outside").join("shadow");
    write(&victim, "root:secret\n");
    let store = f.t.path(USER_STORE);
    std::fs::create_dir_all(&store).unwrap();
    std::os::unix::fs::symlink(&victim, store.join(".a:1.torcx.tgz.part")).unwrap();
    let (code, _, err) = f.populate(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(read(&victim), "root:secret\n");
    assert!(std::fs::symlink_metadata(store.join("a:1.torcx.tgz")).unwrap().file_type().is_file());
    assert_eq!(sha512(&store.join("a:1.torcx.tgz")), sha512(&f.serve.join("a:1.torcx.tgz")));
    // A FIFO there, and one on the media: refused or replaced, never waited on.
    std::fs::remove_file(store.join("a:1.torcx.tgz")).unwrap();
    let fifo = |p: &Path| assert!(std::process::Command::new("mkfifo").arg(p).status().unwrap().success());
    fifo(&store.join(".a:1.torcx.tgz.part"));
    let (code, _, err) = f.populate(&[]);
    assert_eq!(code, 0, "{err}");
    std::fs::remove_file(store.join("a:1.torcx.tgz")).unwrap();
    let _ = std::fs::remove_dir_all(store.join(".torcx-remotes"));
    f.remote(&format!("file://{}", f.serve.display()), true);
    std::fs::remove_file(f.serve.join("a:1.torcx.tgz")).unwrap();
    fifo(&f.serve.join("a:1.torcx.tgz"));
    refused(&f, &[], "not a regular file");
}

/// Found by the attack on issue 10: a part being written by another torcx
/// (it holds the lock) is neither written nor removed.
#[test]
fn a_part_another_torcx_holds_is_left_alone() {
    let f = Fleet::new();
    let store = f.t.path(USER_STORE);
    let part = store.join(".a:1.torcx.tgz.part");
    write(&part, "12345");
    let mut holder = std::process::Command::new("flock").arg(&part).args(["sleep", "30"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, _, err) = f.populate(&["--tries", "1"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, 1);
    assert!(err.contains("another torcx is downloading it"), "{err}");
    assert_eq!(read(&part), "12345");
}

/// Found by the attack on issue 10: an archive already at the version's
/// name is accepted only with the listed hash, and never replaced.
#[test]
fn an_archive_already_there_must_match_the_index() {
    let f = Fleet::new();
    f.profile(&[("a", "com.coreos.cl", "main")]);
    f.t.write(&format!("{USER_STORE}/a:1.torcx.tgz"), "something else");
    let (code, out, err) = f.populate(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("/var/lib/torcx/store/a:1.torcx.tgz is there but is not the archive the index lists"),
        "{err}"
    );
    assert_eq!(read(&f.t.path(&format!("{USER_STORE}/a:1.torcx.tgz"))), "something else");
    assert!(!f.t.exists(&format!("{USER_STORE}/a:com.coreos.cl.torcx.tgz")));
    // The right one: present, linked, not fetched again.
    std::fs::copy(f.serve.join("a:1.torcx.tgz"), f.t.path(&format!("{USER_STORE}/a:1.torcx.tgz"))).unwrap();
    let (code, out, err) = f.populate(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines(&out)[0]["value"]["state"], "present");
    assert!(f.server.requests_for("/a:1.torcx.tgz").is_empty());
    assert!(f.t.exists(&format!("{USER_STORE}/a:com.coreos.cl.torcx.tgz")));
}

/// Found by the attack on issue 10: an expired signature, or one by an
/// expired or revoked key, vouches for nothing.
#[test]
fn expired_and_revoked_keys_do_not_sign() {
    let f = Fleet::new();
    let plain = serde_json::to_string(&f.contents()).unwrap();
    // A signature that expires two seconds after it is made.
    let out = std::process::Command::new("date").args(["-u", "-d", "+2 seconds", "+%Y%m%dT%H%M%S"]).output().unwrap();
    let soon = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let old = f.gpg.gpg(
        &["--default-sig-expire", &soon, "--local-user", &f.gpg.fingerprint, "--clearsign"],
        Some(plain.as_bytes()),
    );
    f.publish(&String::from_utf8(old).unwrap());
    std::thread::sleep(std::time::Duration::from_secs(3));
    refused(&f, &[], "the signature has expired");
    // A key that expired.
    let exp = Gpg::new(&f.t.scratch("expiring"), "expiring <e@torcx.invalid>", "ed25519");
    f.publish(&exp.clearsign(&plain));
    exp.gpg(&["--quick-set-expire", &exp.fingerprint, "seconds=1"], None);
    std::thread::sleep(std::time::Duration::from_secs(2));
    write(&f.t.path("etc/torcx/remotes/main/key.asc"), exp.public_armored());
    refused(&f, &[], "the signing key has expired");
    // The remote's own key, revoked (gpg made the certificate at key creation).
    f.publish(&f.gpg.clearsign(&plain));
    let rev = f.gpg.home.join(format!("openpgp-revocs.d/{}.rev", f.gpg.fingerprint));
    let cert = read(&rev).replacen(":-----BEGIN", "-----BEGIN", 1);
    f.gpg.gpg(&["--import"], Some(cert.as_bytes()));
    write(&f.t.path("etc/torcx/remotes/main/key.asc"), f.gpg.public_armored());
    refused(&f, &[], "the signing key is revoked");
}
