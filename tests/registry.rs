//! Pulling torcx images from a real OCI registry (Debian's `docker-registry`,
//! the CNCF distribution registry) on loopback, with images pushed by
//! `skopeo`, the independent client; and what skopeo reads back from the
//! layout torcx wrote. The library's registry client, before the commands
//! that use it.

mod common;

use common::remote::TestCa;
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use torcx::fetch::http::Client;
use torcx::fetch::pull::pull_to_layout;
use torcx::fetch::registry::{Ref, Registry};

/// A `docker-registry` on a free loopback port, its storage and log in a scratch dir.
struct Reg {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Reg {
    fn start() -> Reg {
        Reg::start_with(|_| String::new())
    }

    /// With `extra(dir)` appended to the config (`http.tls`, `auth`), the
    /// scratch dir given to write what it names.
    fn start_with(extra: impl FnOnce(&Path) -> String) -> Reg {
        require_tool("registry", "docker-registry", "docker-registry");
        require_tool("registry", "skopeo", "skopeo");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}/data\nhttp:\n  addr: 127.0.0.1:{port}\n{}",
            dir.path().display(),
            extra(dir.path())
        );
        write(&dir.path().join("config.yml"), config);
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let r = Reg { dir, port, child };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("docker-registry did not start: {}", read(&r.dir.path().join("log")));
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://HOST/REPO:TAG2`.
    fn push(&self, layout: &Path, tag: &str, repo_tag: &str) {
        self.push_as(layout, tag, repo_tag, &[]);
    }

    fn push_as(&self, layout: &Path, tag: &str, repo_tag: &str, extra: &[&str]) {
        let out = Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The blob GETs the registry served, from its access log.
    fn blob_gets(&self) -> usize {
        read(&self.dir.path().join("log")).lines().filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/")).count()
    }

    /// A blob's file in the registry's storage.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir.path().join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    /// Uploads `data` as a blob of `repo` (POST, then PUT to the upload's
    /// location); its digest.
    fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let out = Command::new("curl")
            .args(["-sSf", "-X", "POST", "-o", "/dev/null", "-w", "%header{location}"])
            .arg(format!("http://{}/v2/{repo}/blobs/uploads/", self.host()))
            .output()
            .unwrap();
        assert!(out.status.success(), "POST upload: {}", String::from_utf8_lossy(&out.stderr));
        let loc = String::from_utf8(out.stdout).unwrap();
        let loc = if loc.starts_with('/') { format!("http://{}{loc}", self.host()) } else { loc };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let body = t_file(data);
        let out = Command::new("curl")
            .args(["-sSf", "-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary"])
            .arg(format!("@{}", body.path().display()))
            .arg(format!("{loc}{sep}digest={digest}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "PUT blob: {}", String::from_utf8_lossy(&out.stderr));
        digest
    }

    /// PUTs a manifest or index document under `repo:tag`.
    fn put_manifest(&self, repo: &str, tag: &str, media_type: &str, doc: &Value) {
        let out = Command::new("curl")
            .args(["-sSf", "-X", "PUT", "-H", &format!("Content-Type: {media_type}"), "--data-binary", "@-"])
            .arg(format!("http://{}/v2/{repo}/manifests/{tag}", self.host()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(doc.to_string().as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success(), "PUT manifest: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Reg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An image `a` packed by `torcx image pack --format oci` as tag `1`, unpacked to an OCI layout.
fn layout(t: &TestRoot) -> PathBuf {
    let img = Image::new(t, "a", "1");
    // Data past a pipe's 64 KiB that does not compress: a layer long enough
    // for a reader to stop before its writer (found by the attack on issue 11).
    let noise = noise(300_000);
    img.manifest(json!({"bin": ["/bin/a-tool"]}))
        .exec("bin/a-tool", "#!/bin/sh\necho a\n")
        .file("share/a/noise", noise);
    let out = t.scratch("packed");
    let (code, _, err) = torcx_in(
        None,
        &[
            "image",
            "pack",
            img.dir.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--name",
            "a",
            "--reference",
            "1",
            "--format",
            "oci",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let l = t.scratch("layout");
    let st = Command::new("tar").arg("-xzf").arg(out.join("a.torcx.oci.tgz")).arg("-C").arg(&l).status().unwrap();
    assert!(st.success());
    l
}

/// `data` in a temporary file.
fn t_file(data: &[u8]) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), data).unwrap();
    f
}

fn sha256(data: &[u8]) -> String {
    let mut c = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    format!("sha256:{}", String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap())
}

/// The manifest of tag `tag` in a layout, and its descriptor.
fn layout_manifest(l: &Path, tag: &str) -> (Value, Value) {
    let index = read_json(&l.join("index.json"));
    let d = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()
        .clone();
    let hex = d["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap().to_string();
    (read_json(&l.join("blobs/sha256").join(hex)), d)
}

fn pull(reg: &Reg, reference: &str, tag: &str, dest: &Path) -> anyhow::Result<torcx::fetch::pull::Pulled> {
    let http = Client::new(std::time::Duration::from_secs(10));
    let r: Ref = format!("oci://{}/{reference}", reg.host()).parse()?;
    // HTTPS first: this registry speaks plain HTTP, allowed because it is on loopback.
    let registry = Registry::connect(&http, &r, None, false)?;
    pull_to_layout(&registry, &r, tag, dest, &|_, _, _| {})
}

#[test]
fn a_pull_writes_a_layout_skopeo_reads_and_a_second_tag_fetches_no_blob_again() {
    let t = TestRoot::new();
    let reg = Reg::start();
    let l = layout(&t);
    reg.push(&l, "1", "torcx/a:1");
    reg.push(&l, "1", "torcx/a:2");
    let dest = t.scratch("store").join("a.torcx.oci");
    let p = pull(&reg, "torcx/a:1", "1", &dest).unwrap();
    let (m, d) = layout_manifest(&l, "1");
    let sizes: u64 = m["layers"].as_array().unwrap().iter().map(|x| x["size"].as_u64().unwrap()).sum::<u64>()
        + m["config"]["size"].as_u64().unwrap();
    assert_eq!((p.fetched_bytes, p.reused_bytes, p.blobs), (sizes, 0, 2));
    // The same manifest bytes (digest), every blob identical to what was pushed.
    let (m2, d2) = layout_manifest(&dest, "1");
    assert_eq!((&m2, &d2["digest"]), (&m, &d["digest"]));
    for b in std::fs::read_dir(l.join("blobs/sha256")).unwrap().flatten() {
        assert_eq!(
            std::fs::read(b.path()).unwrap(),
            std::fs::read(dest.join("blobs/sha256").join(b.file_name())).unwrap()
        );
    }
    // skopeo, the independent client, reads the layout torcx wrote.
    let out = Command::new("skopeo").arg("inspect").arg(format!("oci:{}:1", dest.display())).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A second tag: its blobs are there, none is fetched again.
    let gets = reg.blob_gets();
    let p = pull(&reg, "torcx/a:2", "2", &dest).unwrap();
    assert_eq!((p.fetched_bytes, p.reused_bytes), (0, sizes));
    assert_eq!(reg.blob_gets(), gets, "blobs fetched again");
    let tags: Vec<String> = read_json(&dest.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tags, ["1", "2"]);
}

#[test]
fn a_partial_blob_resumes_and_a_corrupted_one_is_refused() {
    let t = TestRoot::new();
    let reg = Reg::start();
    let l = layout(&t);
    reg.push(&l, "1", "torcx/a:1");
    let (m, _) = layout_manifest(&l, "1");
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let size = m["layers"][0]["size"].as_u64().unwrap();
    let hex = layer.strip_prefix("sha256:").unwrap();
    // A killed pull left the first 100 bytes.
    let dest = t.scratch("store").join("a.torcx.oci");
    let data = std::fs::read(l.join("blobs/sha256").join(hex)).unwrap();
    write(&dest.join(format!("blobs/sha256/.{hex}.part")), &data[..100]);
    let p = pull(&reg, "torcx/a:1", "1", &dest).unwrap();
    assert_eq!(p.fetched_bytes, m["config"]["size"].as_u64().unwrap() + size - 100);
    assert_eq!(std::fs::read(dest.join("blobs/sha256").join(hex)).unwrap(), data);
    // A part as long as the blob (a run killed before the rename): fetched whole again.
    let dest3 = t.scratch("store3").join("a.torcx.oci");
    write(&dest3.join(format!("blobs/sha256/.{hex}.part")), &data);
    pull(&reg, "torcx/a:1", "1", &dest3).unwrap();
    assert_eq!(std::fs::read(dest3.join("blobs/sha256").join(hex)).unwrap(), data);
    // A blob changed in the registry's storage: refused, and the layout does not name the tag.
    let dest2 = t.scratch("store2").join("a.torcx.oci");
    let mut bad = data.clone();
    bad[10] ^= 0xff;
    std::fs::write(reg.blob_file(&layer), &bad).unwrap();
    let e = format!("{:#}", pull(&reg, "torcx/a:1", "1", &dest2).unwrap_err());
    assert!(e.contains(&format!("blob {layer}: digest mismatch")), "{e}");
    assert!(!dest2.join("blobs/sha256").join(hex).exists());
    assert!(!dest2.join("index.json").exists());
}

#[test]
fn an_image_without_the_annotation_is_refused_and_an_index_picks_this_machine() {
    let t = TestRoot::new();
    let reg = Reg::start();
    let l = layout(&t);
    reg.push(&l, "1", "torcx/a:1");
    let (m, d) = layout_manifest(&l, "1");
    // The same image without the torcx annotation, nor the label in its config.
    let mut plain = m.clone();
    plain.as_object_mut().unwrap().remove("annotations");
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    plain["config"]["digest"] = json!(reg.put_blob("torcx/a", config));
    plain["config"]["size"] = json!(config.len());
    reg.put_manifest("torcx/a", "plain", "application/vnd.oci.image.manifest.v1+json", &plain);
    let dest = t.scratch("store").join("a.torcx.oci");
    let e = format!("{:#}", pull(&reg, "torcx/a:plain", "plain", &dest).unwrap_err());
    assert!(
        e.contains(
            "not a torcx image (no \"com.coreos.torcx.bundle.v0\": \"yes\" annotation, nor such a label in its config)"
        ),
        "{e}"
    );
    assert!(!dest.exists(), "something was stored");
    // An index: the entry for this machine is the annotated image, the other one is not.
    let plain_bytes = plain.to_string();
    let entry = |digest: &str, size: usize, arch: &str| {
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
               "platform": {"os": "linux", "architecture": arch}})
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let other = if arch == "amd64" { "arm64" } else { "amd64" };
    let index = |entries: Vec<Value>| json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    reg.put_manifest(
        "torcx/a",
        "multi",
        "application/vnd.oci.image.index.v1+json",
        &index(vec![
            entry(&sha256(plain_bytes.as_bytes()), plain_bytes.len(), other),
            entry(d["digest"].as_str().unwrap(), d["size"].as_u64().unwrap() as usize, arch),
        ]),
    );
    pull(&reg, "torcx/a:multi", "multi", &dest).unwrap();
    // The tag names the index, kept with the manifest picked from it (not the other one).
    let (top, td) = layout_manifest(&dest, "multi");
    assert_eq!(td["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(top["manifests"][1]["digest"], d["digest"]);
    let blob = |d: &Value| dest.join("blobs/sha256").join(d.as_str().unwrap().strip_prefix("sha256:").unwrap());
    assert!(blob(&d["digest"]).is_file() && !blob(&top["manifests"][0]["digest"]).exists());
    // torcx reads the tag through the index.
    let store = dest.parent().unwrap().to_str().unwrap();
    let (code, out, err) = torcx_in(None, &["--json", "image", "inspect", "--store", store, "a:multi"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("/bin/a-tool"), "{out}");
    // Mirrored: the manifest kept with the index is pushed under the tag.
    let mirror = format!("{}/mirror/a:multi", reg.host());
    let (code, out, err) = torcx_in(None, &["--json", "image", "push", dest.to_str().unwrap(), &mirror]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(d["digest"].as_str().unwrap()), "{out}");
    // An index without this machine names what it offers.
    reg.put_manifest(
        "torcx/a",
        "foreign",
        "application/vnd.oci.image.index.v1+json",
        &index(vec![entry(&sha256(plain_bytes.as_bytes()), plain_bytes.len(), other)]),
    );
    let e = format!("{:#}", pull(&reg, "torcx/a:foreign", "foreign", &dest).unwrap_err());
    assert!(e.contains(&format!("no image for linux/{arch} (the index offers linux/{other})")), "{e}");
    // By digest: the manifest's bytes must have that digest.
    let r = format!("torcx/a@{}", d["digest"].as_str().unwrap());
    pull(&reg, &r, "pinned", &dest).unwrap();
}

/// `torcx image pull` puts the image in the user store, where `image list`,
/// the generator and apply see it as `NAME:TAG`.
#[test]
fn image_pull_then_boot() {
    require_root("image_pull_then_boot");
    let t = TestRoot::new();
    let reg = Reg::start();
    let l = layout(&t);
    reg.push(&l, "1", "torcx/a:1");
    let root = t.root.to_str().unwrap();
    let (code, out, err) =
        torcx_in(None, &["--root", root, "--json", "image", "pull", &format!("oci://{}/torcx/a:1", reg.host())]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((v["kind"].as_str(), v["value"]["image"].as_str()), (Some("torcx-image-pull-v0"), Some("a:1")));
    assert_eq!(v["value"]["path"], format!("{USER_STORE}/a.torcx.oci"));
    assert_eq!(v["value"]["reused_bytes"], 0);
    // Pulled again: nothing fetched.
    let (code, out, _) =
        torcx_in(None, &["--root", root, "--json", "image", "pull", &format!("{}/torcx/a:1", reg.host())]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(out.trim()).unwrap()["value"]["fetched_bytes"], 0);
    let (_, out, _) = torcx_in(None, &["--root", root, "--json", "image", "list"]);
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows["value"][0]["name"], "a");
    assert_eq!(rows["value"][0]["reference"], "1");
    assert_eq!(rows["value"][0]["format"], "oci-layout");
    // A pull by digest needs the name; an unknown tag fails with exit 1.
    let (code, _, err) = torcx_in(
        None,
        &["--root", root, "image", "pull", &format!("{}/torcx/a@sha256:{}", reg.host(), "0".repeat(64))],
    );
    assert_eq!(code, 1);
    assert!(err.contains("a pull by digest needs --name NAME:REF"), "{err}");
    let (code, _, err) = torcx_in(None, &["--root", root, "image", "pull", &format!("{}/torcx/a:9", reg.host())]);
    assert_eq!(code, 1);
    assert!(err.contains("torcx/a:9: HTTP 404 for the manifest"), "{err}");
    // Boot: the generator plans its units, apply attaches it.
    t.vendor_profile(&[("a", "1")]);
    let s = apply_once(&t, &[]);
    assert_eq!(s.code, 0, "{}", s.describe());
    assert!(s.unpack.contains_key("a/bin/a-tool"), "{:?}", s.unpack.keys());
    assert_eq!(
        std::fs::read_link(t.path("run/torcx/bin/a-tool")).unwrap(),
        Path::new("/run/torcx/unpack/a/bin/a-tool")
    );
}

/// Basic credentials from a containers `auth.json`, over HTTPS verified
/// against a test CA: refused without them or with wrong ones, and never
/// shown.
#[test]
fn basic_credentials_over_tls_from_auth_json() {
    require_tool("basic_credentials_over_tls_from_auth_json", "htpasswd", "apache2-utils");
    let t = TestRoot::new();
    let ca = TestCa::new(&t.scratch("ca"));
    let (cert, key) = (ca.cert.clone(), ca.key.clone());
    let reg = Reg::start_with(|dir| {
        let out = Command::new("htpasswd").args(["-Bbn", "fleet", "s3cret-pass"]).output().unwrap();
        write(&dir.join("htpasswd"), &out.stdout);
        format!(
            "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: torcx-test\n    path: {}/htpasswd\n",
            cert.display(),
            key.display(),
            dir.display()
        )
    });
    let l = layout(&t);
    reg.push_as(&l, "1", "torcx/a:1", &["--dest-creds", "fleet:s3cret-pass"]);
    let root = t.root.to_str().unwrap().to_string();
    let ca_pem = ca.ca_pem.display().to_string();
    let auth = t.scratch("auth").join("auth.json");
    let pull = |auth_b64: Option<&str>| {
        if let Some(a) = auth_b64 {
            write(&auth, json!({"auths": {reg.host(): {"auth": a}}}).to_string());
        }
        let mut c = Command::new(TORCX);
        clean_env(&mut c);
        let out = c
            .env("SSL_CERT_FILE", &ca_pem)
            .env("REGISTRY_AUTH_FILE", &auth)
            .args(["--root", &root, "image", "pull", &format!("{}/torcx/a:1", reg.host())])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, out) = pull(None);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("HTTP 401: the registry wants credentials (auth.json)"), "{out}");
    let b64 = |s: &str| {
        let mut c = Command::new("base64").arg("-w0").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
    };
    let wrong = b64("fleet:wrong-pass");
    let (code, out) = pull(Some(&wrong));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("HTTP 401: the credentials were refused"), "{out}");
    assert!(!out.contains(&wrong) && !out.contains("wrong-pass"), "credentials shown: {out}");
    let right = b64("fleet:s3cret-pass");
    let (code, out) = pull(Some(&right));
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains(&right) && !out.contains("s3cret"), "credentials shown: {out}");
    assert!(t.path(&format!("{USER_STORE}/a.torcx.oci/index.json")).is_file());
    // Without the test CA, HTTPS is not trusted, and a non-loopback rule does not apply: refused.
    let mut c = Command::new(TORCX);
    clean_env(&mut c);
    let out = c
        .env("REGISTRY_AUTH_FILE", &auth)
        .args(["--root", &root, "image", "pull", "--name", "b:1", &format!("{}/torcx/a:1", reg.host())])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"), "{err}");
}

/// The Bearer token challenge, as the large registries ask even for
/// anonymous pulls: the registry's `auth: token` points at a test issuer
/// (`tests/fixtures/token_server.py`, ES256 JWTs) which wants Basic
/// credentials; torcx asks it for a token with the challenge's service and
/// scope and pulls with the token.
#[test]
fn a_bearer_token_challenge_is_answered() {
    let t = TestRoot::new();
    let tok = t.scratch("token");
    let mut issuer = Command::new("/usr/bin/python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/token_server.py"))
        .args(["--dir", tok.to_str().unwrap(), "--user", "fleet", "--password", "t0ken-pass"])
        .spawn()
        .unwrap();
    let mut port = String::new();
    for _ in 0..200 {
        if let Ok(p) = std::fs::read_to_string(tok.join("port")) {
            port = p;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!port.is_empty(), "the token issuer did not start (needs python3-cryptography)");
    let realm = format!("http://127.0.0.1:{port}/token");
    let bundle = tok.join("cert.pem");
    let reg = Reg::start_with(|_| {
        format!(
            "auth:\n  token:\n    realm: {realm}\n    service: torcx-test\n    issuer: torcx-test-issuer\n    rootcertbundle: {}\n",
            bundle.display()
        )
    });
    let l = layout(&t);
    reg.push_as(&l, "1", "torcx/a:1", &["--dest-creds", "fleet:t0ken-pass"]);
    let root = t.root.to_str().unwrap().to_string();
    let auth = t.scratch("auth").join("auth.json");
    let b64 = "ZmxlZXQ6dDBrZW4tcGFzcw=="; // fleet:t0ken-pass
    let pull = |with: Option<&str>| {
        let doc = match with {
            Some(a) => json!({"auths": {reg.host(): {"auth": a}}}),
            None => json!({"auths": {}}),
        };
        write(&auth, doc.to_string());
        let mut c = Command::new(TORCX);
        clean_env(&mut c);
        let out = c
            .env("REGISTRY_AUTH_FILE", &auth)
            .args(["--root", &root, "image", "pull", &format!("{}/torcx/a:1", reg.host())])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // The issuer wants credentials: refused without them.
    let (code, err) = pull(None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("token from {realm}: HTTP 401")), "{err}");
    let (code, err) = pull(Some(b64));
    assert_eq!(code, Some(0), "{err}");
    // A push asks for a token with the push scope.
    let img = Image::new(&t, "b", "1");
    img.exec("bin/b-tool", "#!/bin/sh\n");
    let mut c = Command::new(TORCX);
    clean_env(&mut c);
    let out = c
        .env("REGISTRY_AUTH_FILE", &auth)
        .args(["image", "push", img.dir.to_str().unwrap(), &format!("{}/torcx/b:1", reg.host())])
        .output()
        .unwrap();
    let _ = issuer.kill();
    let _ = issuer.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!err.contains(b64) && !err.contains("t0ken-pass"), "credentials shown: {err}");
    assert!(t.path(&format!("{USER_STORE}/a.torcx.oci/index.json")).is_file());
    // The issuer was asked for this repository, pull, with the challenge's service.
    let asked: Vec<Value> = read(&tok.join("log")).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        asked.iter().any(|r| r["service"] == "torcx-test"
            && r["scope"] == json!(["repository:torcx/a:pull"])
            && r["credentials"] == true),
        "{asked:?}"
    );
    // The registry lists the actions in either order.
    let push_scope = |r: &Value| {
        r["scope"][0].as_str().and_then(|s| s.strip_prefix("repository:torcx/b:")).is_some_and(|a| {
            let mut v: Vec<&str> = a.split(',').collect();
            v.sort();
            v == ["pull", "push"]
        })
    };
    assert!(asked.iter().any(push_scope), "{asked:?}");
}

/// A remote whose `base_url` is `oci://HOST/PREFIX` is a registry: populate
/// pulls `PREFIX/NAME:REF` (no keys, no index: digests verify the
/// transfer), and `profile check --remote-only` asks it for the tag.
#[test]
fn populate_pulls_from_a_registry_remote() {
    let t = TestRoot::new();
    let reg = Reg::start();
    let l = layout(&t);
    reg.push(&l, "1", "fleet/torcx/a:1");
    t.write(
        "etc/torcx/remotes/reg/remote.json",
        json!({"kind": "remote-manifest-v0", "value": {"base_url": format!("oci://{}/fleet/torcx", reg.host())}})
            .to_string(),
    );
    let images =
        json!([{"name": "a", "reference": "1", "remote": "reg"}, {"name": "b", "reference": "2", "remote": "reg"}]);
    t.write(
        "etc/torcx/profiles/p.json",
        json!({"kind": "profile-manifest-v1", "value": {"images": images}}).to_string(),
    );
    t.write("etc/torcx/next-profile", "p\n");
    let root = t.root.to_str().unwrap();
    let (code, out, err) = torcx_in(None, &["--root", root, "profile", "check", "--remote-only"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("image b:2: remote reg: fleet/torcx/b:2: HTTP 404 for the manifest"), "{err}");
    assert!(!err.contains("image a:1"), "{err}");
    let (code, out, err) = torcx_in(None, &["--root", root, "profile", "populate"]);
    assert_eq!(code, 1, "{out}{err}");
    let states: Vec<(String, String)> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["value"]["image"].as_str().unwrap().into(), v["value"]["state"].as_str().unwrap().into()))
        .collect();
    assert_eq!(states, pairs(&[("a:1", "downloaded"), ("b:2", "failed")]));
    assert!(err.contains("image b:2 (remote reg): "), "{err}");
    assert!(t.path(&format!("{USER_STORE}/a.torcx.oci/index.json")).is_file());
    assert!(!t.exists(&format!("{USER_STORE}/b.torcx.oci/index.json")));
    // Present afterwards.
    let (_, out, _) = torcx_in(None, &["--root", root, "profile", "populate"]);
    assert!(out.contains("\"state\":\"present\""), "{out}");
}

/// `torcx image push` from a directory, a tar archive and a bundle: skopeo
/// sees the annotated manifest and copies it; a second push sends no blob;
/// torcx pulls back what it pushed.
#[test]
fn image_push_publishes_what_skopeo_and_pull_read() {
    let t = TestRoot::new();
    let reg = Reg::start();
    let img = Image::new(&t, "p", "1");
    img.exec("usr/bin/p-tool", "#!/bin/sh\necho p\n");
    let push = |source: &Path, to: &str| {
        let (code, out, err) =
            torcx_in(None, &["--json", "image", "push", source.to_str().unwrap(), &format!("{}/{to}", reg.host())]);
        assert_eq!(code, 0, "{out}{err}");
        serde_json::from_str::<Value>(out.trim()).unwrap()["value"].clone()
    };
    let v = push(&img.dir, "torcx/p:1");
    assert!(v["sent_bytes"].as_u64().unwrap() > 0 && v["skipped_bytes"] == 0, "{v}");
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{}/torcx/p:1", reg.host())])
        .output()
        .unwrap();
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["annotations"]["com.coreos.torcx.bundle.v0"], "yes", "{m}");
    assert_eq!(format!("sha256:{}", &sha256(&out.stdout)[7..]), v["manifest"].as_str().unwrap());
    let copy = t.scratch("copy");
    let st = Command::new("skopeo")
        .args(["copy", "-q", "--src-tls-verify=false", &format!("docker://{}/torcx/p:1", reg.host())])
        .arg(format!("oci:{}:1", copy.display()))
        .status()
        .unwrap();
    assert!(st.success());
    // Again, under another tag: every blob is there already.
    let v2 = push(&img.dir, "torcx/p:again");
    assert_eq!((v2["sent_bytes"].as_u64(), v2["skipped_bytes"].as_u64()), (Some(0), v["sent_bytes"].as_u64()));
    // A tar archive and a bundle.
    let tgz = t.scratch("archives").join("p:1.torcx.tgz");
    img.pack_to(&tgz, Fmt::Tgz);
    push(&tgz, "torcx/from-tgz:1");
    let l_for_links = layout(&t);
    push(&l_for_links.parent().unwrap().join("packed/a.torcx.oci.tgz"), "torcx/a:9");
    // Pulled back by torcx: the tree is the directory pushed.
    let root = t.root.to_str().unwrap();
    let (code, _, err) = torcx_in(
        None,
        &["--root", root, "image", "pull", &format!("{}/torcx/from-tgz:1", reg.host()), "--name", "p:1"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = torcx_in(None, &["--root", root, "image", "pull", &format!("{}/torcx/a:9", reg.host())]);
    assert_eq!(code, 0, "{err}");
    // A layout whose blob is a link to a file outside it: refused before anything is sent.
    let evil = t.scratch("evil-layout").join("e.torcx.oci");
    let st = Command::new("cp").arg("-a").arg(&l_for_links).arg(&evil).status().unwrap();
    assert!(st.success());
    let (m, _) = layout_manifest(&evil, "1");
    let layer = m["layers"][0]["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap().to_string();
    let secret = t.scratch("outside").join("secret");
    write(&secret, "not for the registry\n");
    std::fs::remove_file(evil.join("blobs/sha256").join(&layer)).unwrap();
    std::os::unix::fs::symlink(&secret, evil.join("blobs/sha256").join(&layer)).unwrap();
    let (code, _, err) =
        torcx_in(None, &["image", "push", evil.to_str().unwrap(), &format!("{}/torcx/evil:1", reg.host())]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("blob sha256:{layer}")), "{err}");
    // A squashfs image, read by torcx's own reader (no mount) and repacked.
    require_tool("image_push", "mksquashfs", "squashfs-tools");
    let sq = t.scratch("archives").join("q:1.torcx.squashfs");
    let st =
        Command::new("mksquashfs").arg(&img.dir).arg(&sq).args(["-quiet", "-noappend", "-all-root"]).status().unwrap();
    assert!(st.success());
    push(&sq, "torcx/q:1");
    // And erofs.
    require_tool("image_push", "mkfs.erofs", "erofs-utils");
    let ero = t.scratch("archives").join("e:1.torcx.erofs");
    let st = Command::new("mkfs.erofs").arg("--quiet").arg(&ero).arg(&img.dir).status().unwrap();
    assert!(st.success());
    push(&ero, "torcx/e:1");
    for name in ["q", "e"] {
        let from = format!("{}/torcx/{name}:1", reg.host());
        let (code, _, err) = torcx_in(None, &["--root", root, "image", "pull", &from]);
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = torcx_in(None, &["--root", root, "--json", "image", "inspect", &format!("{name}:1")]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("/usr/bin/p-tool"), "{out}");
    }
    // Not a squashfs image: one line naming the file.
    let bad = t.scratch("archives").join("r:1.torcx.squashfs");
    write(&bad, "x");
    let (code, _, err) =
        torcx_in(None, &["image", "push", bad.to_str().unwrap(), &format!("{}/torcx/r:1", reg.host())]);
    assert_eq!(code, 1);
    assert!(err.contains("r:1.torcx.squashfs"), "{err}");
}

/// A link planted where a pull writes (a partial blob, the layout) is never
/// followed: what it points at is untouched.
#[test]
fn a_planted_link_in_the_layout_is_never_followed() {
    let t = TestRoot::new();
    let reg = Reg::start();
    let l = layout(&t);
    reg.push(&l, "1", "torcx/a:1");
    let (m, _) = layout_manifest(&l, "1");
    let hex = m["layers"][0]["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap().to_string();
    let victim = t.scratch("outside").join("victim");
    write(&victim, "precious\n");
    let dest = t.scratch("store").join("a.torcx.oci");
    std::fs::create_dir_all(dest.join("blobs/sha256")).unwrap();
    std::os::unix::fs::symlink(&victim, dest.join(format!("blobs/sha256/.{hex}.part"))).unwrap();
    pull(&reg, "torcx/a:1", "1", &dest).unwrap();
    assert_eq!(read(&victim), "precious\n");
    assert!(std::fs::symlink_metadata(dest.join("blobs/sha256").join(&hex)).unwrap().is_file());
    // The layout itself a link: refused.
    let other = t.scratch("store2");
    std::os::unix::fs::symlink(t.scratch("elsewhere"), other.join("a.torcx.oci")).unwrap();
    let e = format!("{:#}", pull(&reg, "torcx/a:1", "1", &other.join("a.torcx.oci")).unwrap_err());
    assert!(e.contains("a.torcx.oci: not a directory"), "{e}");
    assert_eq!(std::fs::read_dir(t.base.join("elsewhere")).unwrap().count(), 0);
}

/// On a terminal, `image pull` draws a bar per blob and one in total, then
/// prints its line.
#[test]
fn pull_on_a_terminal_shows_bars() {
    require_tool("pull_on_a_terminal_shows_bars", "script", "bsdutils");
    let t = TestRoot::new();
    let reg = Reg::start();
    reg.push(&layout(&t), "1", "torcx/a:1");
    let cmd = format!("'{TORCX}' --root '{}' image pull {}/torcx/a:1", t.root.display(), reg.host());
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.lines().any(|l| l.contains("total ") && l.contains(" B/")), "{text}");
    assert!(text.contains("a:1: pulled from ") && text.contains(" bytes fetched, 0 reused (2 blobs)"), "{text}");
}

/// `verify: signed` for registry images: a registry remote with keys reads
/// its signed index from `index_url`, pulls each image by the manifest
/// digest listed (a tag moved in the registry changes nothing), and keeps
/// the index. At boot the generator and apply accept the layout's tag only
/// while its digest is the one listed; `image verify` says the same.
#[test]
fn a_signed_registry_remote_pins_by_digest_and_boot_checks_the_tag() {
    require_root("a_signed_registry_remote_pins_by_digest_and_boot_checks_the_tag");
    let t = TestRoot::new();
    let reg = Reg::start();
    let l = layout(&t);
    reg.push(&l, "1", "fleet/torcx/a:1");
    let (m, d) = layout_manifest(&l, "1");
    let digest = d["digest"].as_str().unwrap().to_string();
    // The tag is then moved to another image: populate must not follow it.
    let mut plain = m.clone();
    plain.as_object_mut().unwrap().remove("annotations");
    reg.put_manifest("fleet/torcx/a", "1", "application/vnd.oci.image.manifest.v1+json", &plain);
    // Another annotated image, for the tampering below.
    let mut other = m.clone();
    other["annotations"]["org.example.note"] = json!("not the one signed");
    reg.put_manifest("fleet/torcx/a", "evil", "application/vnd.oci.image.manifest.v1+json", &other);
    let gpg = common::remote::Gpg::new(&t.scratch("keys"), "torcx test <test@torcx.invalid>", "ed25519");
    let media = t.scratch("media");
    let hex = digest.strip_prefix("sha256:").unwrap();
    let doc = json!({"kind": "torcx-remote-contents-v1", "value": {"images": [{"name": "a", "defaultVersion": "1",
        "versions": [{"version": "1", "format": "oci", "hash": format!("sha256-{hex}")}]}]}});
    write(&media.join("index.json.asc"), gpg.clearsign(&doc.to_string()));
    let remote = |keys: bool| {
        let mut v = json!({"base_url": format!("oci://{}/fleet/torcx", reg.host()),
                           "index_url": format!("file://{}/index.json.asc", media.display())});
        if keys {
            v["keys"] = json!([{"armored_keyring": "key.asc"}]);
        }
        t.write("etc/torcx/remotes/reg/remote.json", json!({"kind": "remote-manifest-v0", "value": v}).to_string());
    };
    remote(true);
    t.write("etc/torcx/remotes/reg/key.asc", gpg.public_armored());
    t.write(
        "etc/torcx/profiles/p.json",
        json!({"kind": "profile-manifest-v1", "value": {"images": [{"name": "a", "reference": "com.coreos.cl", "remote": "reg"}]}})
            .to_string(),
    );
    t.write("etc/torcx/next-profile", "p\n");
    let root = t.root.to_str().unwrap();
    let (code, out, err) = torcx_in(None, &["--root", root, "profile", "check", "--remote-only"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = torcx_in(None, &["--root", root, "profile", "populate"]);
    assert_eq!(code, 0, "{out}{err}");
    let store = t.path(USER_STORE).join("a.torcx.oci");
    for tag in ["1", "com.coreos.cl"] {
        assert_eq!(layout_manifest(&store, tag).1["digest"], digest.as_str(), "tag {tag}");
    }
    let kept: Vec<_> = std::fs::read_dir(t.path(USER_STORE).join(".torcx-remotes/reg")).unwrap().collect();
    assert_eq!(kept.len(), 1);
    t.write("etc/torcx/config.json", r#"{"kind":"torcx-config-v1","value":{"verify":"signed"}}"#);
    let boot = |label: &str| {
        let gen_out = t.scratch(&format!("gen-{label}"));
        let dirs: Vec<String> =
            ["normal", "early", "late"].iter().map(|d| gen_out.join(d).to_str().unwrap().to_string()).collect();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        let mut ns = Ns::new(&t);
        ns.generator(&["--root", root, &dirs[0], &dirs[1], &dirs[2]]);
        ns.apply();
        (ns.run(), gen_out.join("normal"))
    };
    let (steps, _) = boot("good");
    assert_eq!(steps[0].code, 0, "{}", steps[0].describe());
    assert_eq!(steps[1].code, 0, "{}", steps[1].describe());
    assert_contains(&steps[0].log, "1 of 1 images planned, 0 files written", &steps[0]);
    assert!(steps[1].unpack.contains_key("a/bin/a-tool"), "{:?}", steps[1].unpack.keys());
    let rec = read_json(&t.path("run/torcx/attached/a.json")).to_string();
    assert!(rec.contains(&format!("sha256:{hex}")), "{rec}");
    let (code, out, err) = torcx_in(None, &["--root", root, "image", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    // The tag in the store moved to another annotated image of the registry:
    // refused by name, by the generator, apply and image verify.
    let (code, _, err) = torcx_in(
        None,
        &["--root", root, "image", "pull", &format!("{}/fleet/torcx/a:evil", reg.host()), "--name", "a:com.coreos.cl"],
    );
    assert_eq!(code, 0, "{err}");
    let _ = std::fs::remove_dir_all(t.path("run"));
    let (steps, _) = boot("tampered");
    let want = format!(
        "{USER_STORE}/a.torcx.oci: hash mismatch for image a:com.coreos.cl: the signed index lists sha256-{hex}, the layout's tag \"com.coreos.cl\" is sha256-"
    );
    assert_eq!(steps[0].code, 1, "{}", steps[0].describe());
    assert_contains(&steps[0].log, &want, &steps[0]);
    assert_contains(&steps[0].log, "0 of 1 images planned, 0 files written; not planned: a:com.coreos.cl", &steps[0]);
    assert_eq!(steps[1].code, 1, "{}", steps[1].describe());
    assert_contains(&steps[1].stderr, &want, &steps[1]);
    assert!(!steps[1].unpack.keys().any(|k| k.starts_with("a/")), "{:?}", steps[1].unpack.keys());
    assert!(!t.exists("run/torcx/bin/a-tool"));
    let (code, _, err) = torcx_in(None, &["--root", root, "image", "verify"]);
    assert_eq!(code, 1);
    assert!(err.contains("image a:com.coreos.cl") && err.contains("hash mismatch"), "{err}");
    // Keys without an index to sign are refused by name.
    t.write(
        "etc/torcx/remotes/reg/remote.json",
        json!({"kind": "remote-manifest-v0", "value": {"base_url": format!("oci://{}/fleet/torcx", reg.host()),
               "keys": [{"armored_keyring": "key.asc"}]}})
        .to_string(),
    );
    let (code, _, err) = torcx_in(None, &["--root", root, "profile", "check", "--remote-only", "--name", "p"]);
    assert_eq!(code, 1);
    assert!(err.contains("a registry remote with keys needs index_url"), "{err}");
    // An index without keys: refused as unsigned unless allowed.
    remote(false);
    let _ = std::fs::remove_dir_all(&store);
    t.write(
        "etc/torcx/profiles/p.json",
        json!({"kind": "profile-manifest-v1", "value": {"images": [{"name": "a", "reference": "1", "remote": "reg"}]}})
            .to_string(),
    );
    let (code, _, err) = torcx_in(None, &["--root", root, "profile", "populate"]);
    assert_eq!(code, 1);
    assert!(err.contains("image a:1 (remote reg): "), "{err}");
}

/// Docker's schema 2 (what `skopeo --format v2s2` and older registries
/// write): pulled, listed and unpacked like an OCI manifest.
#[test]
fn a_docker_schema_2_image_pulls_and_unpacks() {
    let t = TestRoot::new();
    let reg = Reg::start();
    let l = layout(&t);
    reg.push_as(&l, "1", "torcx/d:1", &["--format", "v2s2"]);
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{}/torcx/d:1", reg.host())])
        .output()
        .unwrap();
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["mediaType"], "application/vnd.docker.distribution.manifest.v2+json", "{m}");
    let root = t.root.to_str().unwrap();
    let (code, _, err) = torcx_in(None, &["--root", root, "image", "pull", &format!("{}/torcx/d:1", reg.host())]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = torcx_in(None, &["--root", root, "--json", "image", "inspect", "d:1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("/bin/a-tool"), "{out}");
    // Pushed on from the store (its config's label marks it), and pulled back.
    let layout = t.path(USER_STORE).join("d.torcx.oci");
    let to = format!("{}/mirror/d:1", reg.host());
    let (code, out, err) = torcx_in(None, &["image", "push", layout.to_str().unwrap(), &to]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = torcx_in(None, &["--root", root, "image", "pull", &to, "--name", "d:2"]);
    assert_eq!(code, 0, "{err}");
}

/// Found by the attack on issue 11: a blob redirected to another origin
/// (blob storage) whose answer is a Bearer challenge must not get the
/// registry's credentials sent to its realm; and credentials written into a
/// reference are refused without being shown.
#[test]
fn credentials_never_follow_a_redirect_nor_show_from_a_url() {
    let t = TestRoot::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = t.scratch("evil").join("log");
    write(&log, "");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/redirecting_registry.py");
    let mut child = Command::new("/usr/bin/python3").arg(fixture).arg(port.to_string()).arg(&log).spawn().unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // user "fleet", password "s3cret-pass"
    let auth = t.scratch("auth").join("auth.json");
    write(&auth, json!({"auths": {format!("127.0.0.1:{port}"): {"auth": "ZmxlZXQ6czNjcmV0LXBhc3M="}}}).to_string());
    let root = t.root.to_str().unwrap();
    let out = Command::new(TORCX)
        .args(["--root", root, "image", "pull", "--plain-http", &format!("127.0.0.1:{port}/x/a:1")])
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("HTTP 401 from http://localhost:") && err.contains("credentials go to the registry only"),
        "{err}"
    );
    assert_eq!(read(&log), "", "the realm was asked");
    assert!(!err.contains("ZmxlZXQ6") && !err.contains("s3cret"), "{err}");
    let (code, _, err) =
        torcx_in(None, &["--root", root, "image", "pull", "oci://fleet:s3cret-pass@127.0.0.1:1/x/a:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("credentials do not belong in a reference") && !err.contains("s3cret"), "{err}");
}

/// Found by the attack on issue 11: a layout whose index.json names a flood
/// of digests is read in bounded time (the digests followed are capped).
#[test]
fn a_flood_of_digests_in_a_layout_is_bounded() {
    let t = TestRoot::new();
    let store = t.scratch("store");
    let l = store.join("f.torcx.oci");
    std::fs::create_dir_all(l.join("blobs/sha256")).unwrap();
    write(&l.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#);
    let junk: Vec<Value> = (0..200_000u32).map(|i| json!({"digest": format!("sha256:{:064x}", i)})).collect();
    write(&l.join("index.json"), json!({"schemaVersion": 2, "manifests": [], "x": junk}).to_string());
    let out = Command::new("timeout")
        .args(["60", TORCX, "--json", "image", "list", "--store", store.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(124), "image list did not finish");
}

/// A registry remote's configuration errors, each one line naming the
/// remote and the cause, before any registry is asked; a password written
/// into a URL is never shown.
#[test]
fn registry_remote_configuration_errors_are_named() {
    let t = TestRoot::new();
    let gpg = common::remote::Gpg::new(&t.scratch("keys"), "torcx test <test@torcx.invalid>", "ed25519");
    let media = t.scratch("media");
    let doc = json!({"kind": "torcx-remote-contents-v1", "value": {"images": [{"name": "a", "defaultVersion": "1",
        "versions": [{"version": "1", "format": "oci", "hash": format!("sha512-{}", "a".repeat(128))}]}]}});
    write(&media.join("index.json.asc"), gpg.clearsign(&doc.to_string()));
    t.write("etc/torcx/remotes/r/key.asc", gpg.public_armored());
    t.write(
        "etc/torcx/profiles/p.json",
        json!({"kind": "profile-manifest-v1", "value": {"images": [{"name": "a", "reference": "1", "remote": "r"}]}})
            .to_string(),
    );
    let root = t.root.to_str().unwrap();
    let check = |value: Value| {
        t.write("etc/torcx/remotes/r/remote.json", json!({"kind": "remote-manifest-v0", "value": value}).to_string());
        let (code, out, err) = torcx_in(None, &["--root", root, "profile", "check", "--remote-only", "--name", "p"]);
        assert_eq!(code, 1, "{out}{err}");
        err
    };
    let keys = json!([{"armored_keyring": "key.asc"}]);
    let index = format!("file://{}/index.json.asc", media.display());
    let err = check(json!({"base_url": "oci://127.0.0.1:1/p", "index_url": index, "keys": keys}));
    assert!(err.contains("image a:1: remote r: image a: version 1: a registry image is listed by its sha256 manifest digest, not sha512"), "{err}");
    let err = check(json!({"base_url": "oci://127.0.0.1:1/p", "index_url": "oci://127.0.0.1:1/i", "keys": keys}));
    assert!(
        err.contains("index_url \"oci://127.0.0.1:1/i\": an index is fetched by http://, https:// or file:///"),
        "{err}"
    );
    let err = check(json!({"base_url": "oci://fleet:s3cret@127.0.0.1:1/p"}));
    assert!(err.contains("URL \"oci://…@127.0.0.1:1/p\": credentials do not belong in a URL"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
