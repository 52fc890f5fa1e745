//! OCI registries (the distribution API): references, authentication
//! (anonymous, Bearer token challenges, Basic from a containers `auth.json`),
//! manifests and image indexes (OCI and Docker v2), and blobs streamed with
//! their digest checked as they come, resumed with a range request.
//!
//! `pull` writes what it fetches into an OCI image layout; `push` sends one.

use super::http::Client;
use crate::archive::digest::HashThread;
use crate::archive::oci::{Descriptor, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_INDEX, MT_MANIFEST, digest_hex};
use crate::model::remote::Algo;
use anyhow::{Context, Result, anyhow, bail};
use sha2::Digest as _;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Mutex;

/// The largest manifest or index read (the distribution spec's limit).
const MAX_MANIFEST: u64 = 4 << 20;
/// The largest token answer read.
const MAX_TOKEN: u64 = 64 << 10;
/// The largest blob fetched.
const MAX_BLOB: u64 = 16 << 30;

/// `[oci://]HOST[:PORT]/PATH[:TAG|@sha256:HEX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub host: String,
    pub repo: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl std::str::FromStr for Ref {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Ref> {
        let bad = |why: &str| anyhow!("registry reference {}: {why}", crate::model::quoted(&super::http::redact(s)));
        let rest = s.strip_prefix("oci://").unwrap_or(s);
        if super::http::has_userinfo(&format!("oci://{rest}")) {
            return Err(bad("credentials do not belong in a reference (auth.json holds them)"));
        }
        let (host, path) = rest.split_once('/').ok_or_else(|| bad("no repository after the host"))?;
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) {
            return Err(bad("not a host[:port]"));
        }
        let (path, digest) = match path.split_once('@') {
            Some((p, d)) => {
                digest_hex(d).map_err(|_| bad("the digest is not sha256:HEX"))?;
                (p, Some(d.to_string()))
            }
            None => (path, None),
        };
        // A tag follows the last `:` of the last component.
        let (repo, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t.to_string())),
            _ => (path, None),
        };
        let comp_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
        };
        if repo.len() > 255 || !repo.split('/').all(comp_ok) {
            return Err(bad("the repository must be lower-case letters, digits, '.', '_', '-' and '/'"));
        }
        if let Some(t) = &tag {
            let ok = t.len() <= 128
                && t.as_bytes()[0] != b'.'
                && t.as_bytes()[0] != b'-'
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(bad("the tag must be letters, digits, '.', '_', '-' (at most 128)"));
            }
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad("name a tag (:TAG) or a digest (@sha256:HEX)"));
        }
        Ok(Ref { host: host.to_string(), repo: repo.to_string(), tag, digest })
    }
}

impl Ref {
    /// What the manifest is fetched by: the digest when there is one.
    pub fn reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("")
    }
    /// The repository's last component: the image name unless told otherwise.
    pub fn name(&self) -> &str {
        self.repo.rsplit('/').next().unwrap_or(&self.repo)
    }
    fn loopback(&self) -> bool {
        let h = match self.host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => self.host.rsplit_once(':').map(|(h, _)| h).unwrap_or(&self.host),
        };
        h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Basic credentials for `host` from a containers `auth.json`
/// (`{"auths": {"HOST[:PORT]": {"auth": "BASE64(user:pass)"}}}`), kept
/// encoded: they are only ever sent, never shown.
pub fn basic_auth(file: &Path, host: &str) -> Result<Option<String>> {
    let text = match crate::sys::fsutil::read_bounded(file, 1 << 20) {
        Ok(t) => t,
        Err(_) if !file.exists() => return Ok(None),
        Err(e) => return Err(e),
    };
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|_| anyhow!("{}: not valid JSON", file.display()))?;
    let auth = v.get("auths").and_then(|a| a.get(host)).and_then(|h| h.get("auth")).and_then(|a| a.as_str());
    Ok(auth.filter(|a| !a.is_empty()).map(String::from))
}

/// A registry, once reached: its scheme and what authenticates to it.
pub struct Registry<'a> {
    http: &'a Client,
    base: String,
    basic: Option<String>,
    /// A Basic challenge was answered: the credentials go with every
    /// request after it (a file body cannot be sent twice).
    basic_seen: std::sync::atomic::AtomicBool,
    token: Mutex<Option<String>>,
}

/// A response body, and its headers of interest.
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub digest: Option<String>,
    pub length: Option<u64>,
    pub content_range: Option<String>,
    pub location: Option<String>,
    pub body: Box<dyn Read + Send>,
}

/// What a request sends.
#[derive(Clone, Copy)]
pub enum Payload<'b> {
    Empty,
    Bytes(&'b [u8]),
    /// This many bytes of the file, sent once: an authentication challenge
    /// to it is not answered.
    File(&'b std::fs::File, u64),
}

impl<'a> Registry<'a> {
    /// Reaches `r.host` over HTTPS; plain HTTP only when `plain_http`, or
    /// for a loopback host after HTTPS failed there (as Docker does).
    pub fn connect(http: &'a Client, r: &Ref, basic: Option<String>, plain_http: bool) -> Result<Registry<'a>> {
        let mk = |scheme: &str| Registry {
            http,
            base: format!("{scheme}://{}", r.host),
            basic: basic.clone(),
            basic_seen: Default::default(),
            token: Mutex::new(None),
        };
        if plain_http {
            let reg = mk("http");
            reg.ping()?;
            return Ok(reg);
        }
        let reg = mk("https");
        match reg.ping() {
            Ok(()) => Ok(reg),
            Err(e) if r.loopback() => {
                log::info!("{}: {e:#}; trying plain HTTP on this loopback address", r.host);
                let reg = mk("http");
                match reg.ping() {
                    Ok(()) => Ok(reg),
                    // Both failed: the HTTPS error is the one that explains.
                    Err(plain) => Err(anyhow!("{e:#} (and over plain HTTP: {plain:#})")),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// [`Registry::connect`] with the credentials the machine has for
    /// `r.host`: `$REGISTRY_AUTH_FILE`, else `/etc/torcx/auth.json`.
    pub fn connect_configured(
        cfg: &crate::model::config::Config,
        http: &'a Client,
        r: &Ref,
        plain_http: bool,
    ) -> Result<Registry<'a>> {
        let file = std::env::var_os("REGISTRY_AUTH_FILE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| cfg.host(&cfg.conf_dir.join("auth.json")));
        Registry::connect(http, r, basic_auth(&file, &r.host)?, plain_http)
    }

    fn ping(&self) -> Result<()> {
        let a = self.get("/v2/", &[], None)?;
        if a.status != 200 {
            bail!("{}/v2/: HTTP {}: not an OCI registry", self.base, a.status);
        }
        Ok(())
    }

    /// Whether `url` is on this registry (its scheme, host and port).
    fn is_own(&self, url: &str) -> bool {
        url.strip_prefix(&self.base).is_some_and(|rest| rest.starts_with('/'))
    }

    /// GETs `path`, answering an authentication challenge once.
    pub fn get(&self, path: &str, accept: &[&str], range: Option<u64>) -> Result<Answer> {
        let mut headers: Vec<(&str, String)> = vec![];
        if !accept.is_empty() {
            headers.push(("Accept", accept.join(", ")));
        }
        if let Some(n) = range.filter(|n| *n > 0) {
            headers.push(("Range", format!("bytes={n}-")));
        }
        self.request("GET", path, &headers, Payload::Empty)
    }

    /// `method` on `target` (a path on this registry, or a URL it handed out,
    /// such as an upload's `Location`), answering an authentication
    /// challenge once when the body can be sent again.
    pub fn request(&self, method: &str, target: &str, headers: &[(&str, String)], body: Payload<'_>) -> Result<Answer> {
        let url = if target.starts_with('/') { format!("{}{target}", self.base) } else { target.to_string() };
        // Credentials go to this registry only: a URL it hands out (an
        // upload's `Location`) on another host gets none, and an https
        // registry cannot send the data back over plain http.
        let same_origin = self.is_own(&url);
        if self.base.starts_with("https://") && url.starts_with("http://") {
            bail!("{method} {url}: an https registry handed out a plain http URL: refused");
        }
        let mut answered = false;
        loop {
            let agent = self.http.agent(&url)?;
            let mut req = ureq::http::Request::builder().method(method).uri(&url);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let basic_wanted = answered || self.basic_seen.load(std::sync::atomic::Ordering::Relaxed);
            let token = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match (&token, &self.basic) {
                _ if !same_origin => {}
                (Some(t), _) => req = req.header("Authorization", format!("Bearer {t}")),
                (None, Some(b)) if basic_wanted => req = req.header("Authorization", format!("Basic {b}")),
                _ => {}
            }
            // The error of a failed request says what failed, never a header.
            let fail = |e: &dyn std::fmt::Display| anyhow!("{method} {url}: {e}");
            let resp = match body {
                Payload::Empty => agent.run(req.body(()).map_err(|e| fail(&e))?),
                Payload::Bytes(b) => agent.run(req.body(b).map_err(|e| fail(&e))?),
                Payload::File(f, n) => {
                    let mut r = f.take(n);
                    agent.run(req.body(ureq::SendBody::from_reader(&mut r)).map_err(|e| fail(&e))?)
                }
            }
            .map_err(|e| fail(&e))?;
            let status = resp.status().as_u16();
            let h = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(String::from);
            // A challenge is answered only when the registry itself made it:
            // not a host a redirect led to (blob storage, a CDN), nor one
            // that handed out a URL, or its realm would get the credentials.
            let answered_by = ureq::ResponseExt::get_uri(&resp).to_string();
            let from_registry = same_origin && self.is_own(&answered_by);
            if status == 401 && !from_registry {
                bail!(
                    "{method} {url}: HTTP 401 from {}: credentials go to the registry only",
                    super::http::redact(&answered_by)
                );
            }
            if status == 401 && !answered && !matches!(body, Payload::File(..)) {
                answered = true;
                let challenge = h("www-authenticate").unwrap_or_default();
                self.answer(&challenge, &url)?;
                continue;
            }
            if status == 401 {
                bail!(
                    "{method} {url}: HTTP 401: {}",
                    if self.basic.is_some() {
                        "the credentials were refused"
                    } else {
                        "the registry wants credentials (auth.json)"
                    }
                );
            }
            return Ok(Answer {
                status,
                content_type: h("content-type").map(|c| c.split(';').next().unwrap_or("").trim().to_string()),
                digest: h("docker-content-digest"),
                length: h("content-length").and_then(|v| v.parse().ok()),
                content_range: h("content-range"),
                location: h("location"),
                body: Box::new(resp.into_body().into_reader()),
            });
        }
    }

    /// Answers `WWW-Authenticate`: a Bearer challenge gets a token from its
    /// realm (with the Basic credentials, if any); a Basic one, the credentials.
    fn answer(&self, challenge: &str, url: &str) -> Result<()> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            if self.basic.is_none() {
                bail!("GET {url}: HTTP 401: the registry wants credentials (auth.json)");
            }
            self.basic_seen.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            bail!(
                "GET {url}: HTTP 401 with an authentication scheme torcx does not speak ({})",
                crate::model::quoted(scheme)
            );
        }
        let p = challenge_params(params);
        let realm = p
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| anyhow!("GET {url}: a Bearer challenge without a realm"))?;
        if self.base.starts_with("https://") && !realm.starts_with("https://") {
            bail!("GET {url}: an https registry's token realm is not https: refused");
        }
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            bail!("GET {url}: the token realm is not an http(s) URL");
        }
        let mut token_url = realm.to_string();
        let mut sep = if realm.contains('?') { '&' } else { '?' };
        for key in ["service", "scope"] {
            if let Some((_, v)) = p.iter().find(|(k, _)| k == key) {
                token_url += &format!("{sep}{key}={}", urlencode(v));
                sep = '&';
            }
        }
        let agent = self.http.agent(&token_url)?;
        let mut req = agent.get(&token_url);
        if let Some(b) = &self.basic {
            req = req.header("Authorization", format!("Basic {b}"));
        }
        let resp = req.call().map_err(|e| anyhow!("token from {realm}: {e}"))?;
        if resp.status().as_u16() != 200 {
            bail!("token from {realm}: HTTP {}", resp.status().as_u16());
        }
        let mut body = vec![];
        resp.into_body()
            .into_reader()
            .take(MAX_TOKEN)
            .read_to_end(&mut body)
            .with_context(|| format!("token from {realm}"))?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| anyhow!("token from {realm}: not JSON"))?;
        let t = v.get("token").or_else(|| v.get("access_token")).and_then(|t| t.as_str()).filter(|t| !t.is_empty());
        let t = t.ok_or_else(|| anyhow!("token from {realm}: no token in the answer"))?;
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(t.to_string());
        Ok(())
    }

    /// A manifest or index by tag or digest: its bytes, media type and
    /// digest, checked against the digest asked for and the one the registry
    /// says.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<(Vec<u8>, String, String)> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let a = self.get(&path, &[MT_INDEX, MT_MANIFEST, MT_DOCKER_LIST, MT_DOCKER_MANIFEST], None)?;
        if a.status != 200 {
            bail!("{repo}:{reference}: HTTP {} for the manifest", a.status);
        }
        let mut body = vec![];
        a.body
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut body)
            .with_context(|| format!("{repo}:{reference}: reading the manifest"))?;
        if body.len() as u64 > MAX_MANIFEST {
            bail!("{repo}:{reference}: the manifest is larger than {MAX_MANIFEST} bytes");
        }
        let digest = format!("sha256:{}", crate::sys::fsutil::hex(&sha2::Sha256::digest(&body)));
        if reference.starts_with("sha256:") && reference != digest {
            bail!("{repo}@{reference}: the registry sent a manifest whose digest is {digest}");
        }
        if let Some(d) = a.digest.filter(|d| d.starts_with("sha256:"))
            && d != digest
        {
            bail!("{repo}:{reference}: the registry says the manifest is {d}, its bytes are {digest}");
        }
        let mt = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(String::from))
            .or(a.content_type)
            .unwrap_or_default();
        Ok((body, mt, digest))
    }

    /// A small blob (an image config) into memory, checked against `d`.
    pub fn small_blob(&self, repo: &str, d: &Descriptor) -> Result<Vec<u8>> {
        digest_hex(&d.digest)?;
        if d.size > MAX_MANIFEST {
            bail!("blob {}: {} bytes, over the limit of {MAX_MANIFEST} for a config", d.digest, d.size);
        }
        let a = self.get(&format!("/v2/{repo}/blobs/{}", d.digest), &[], None)?;
        if a.status != 200 {
            bail!("blob {}: HTTP {}", d.digest, a.status);
        }
        let mut body = vec![];
        a.body.take(d.size + 1).read_to_end(&mut body).with_context(|| format!("blob {}", d.digest))?;
        let got = format!("sha256:{}", crate::sys::fsutil::hex(&sha2::Sha256::digest(&body)));
        if body.len() as u64 != d.size || got != d.digest {
            bail!("blob {}: {} bytes of digest {got}, the descriptor says {} bytes", d.digest, body.len(), d.size);
        }
        Ok(body)
    }

    /// Fetches blob `d` into `dir/HEX`, through `dir/.HEX.part`: resumed
    /// from where an earlier try stopped, the digest and size checked over
    /// the whole blob before it takes its name. Returns the bytes fetched
    /// now, 0 when it was there already.
    /// `progress(done)` is called as bytes arrive.
    pub fn blob(&self, repo: &str, d: &Descriptor, dir: &Path, progress: &dyn Fn(u64)) -> Result<u64> {
        let hex = digest_hex(&d.digest)?;
        let dest = dir.join(hex);
        if d.size > MAX_BLOB {
            bail!("blob {}: {} bytes, over the limit of {MAX_BLOB}", d.digest, d.size);
        }
        // There already (a plain file, not a link planted there): the reader
        // checks its digest whenever it is used. One of another size (cut
        // short by a crash, or planted) is fetched again and replaced.
        if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == d.size) {
            return Ok(0);
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let part = dir.join(format!(".{hex}.part"));
        let mut have = crate::sys::fsutil::partial_len(&part);
        // A part as long as the blob (or longer) is not resumed: a range past
        // its end gets a 416, not bytes.
        if have >= d.size {
            have = 0;
        }
        let path = format!("/v2/{repo}/blobs/{}", d.digest);
        let mut a = self.get(&path, &[], Some(have))?;
        if a.status == 416 {
            have = 0;
            a = self.get(&path, &[], None)?;
        }
        let start = match a.status {
            200 => 0,
            206 if a.content_range.as_deref().is_some_and(|c| c.starts_with(&format!("bytes {have}-"))) => have,
            s => bail!("blob {}: HTTP {s}", d.digest),
        };
        let mut f = crate::sys::fsutil::open_partial(&part)?;
        // The bytes of an earlier try are hashed again, then the body: on a
        // thread of its own, so hashing overlaps the transfer.
        // Each chunk is read into a buffer the hashing thread then takes: no copy.
        let prefix = std::fs::File::open(&part)?.take(start);
        let mut body = prefix.chain(a.body.take(d.size - start + 1));
        let hashing = HashThread::new(&[Algo::Sha256]);
        f.set_len(start)?;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(start))?;
        let mut n = 0u64;
        let mut flushed = start;
        loop {
            let mut buf = hashing.buffer(128 * 1024);
            let k = body.read(&mut buf).with_context(|| format!("blob {}: interrupted after {n} bytes", d.digest))?;
            if k == 0 {
                break;
            }
            // The prefix is in the file already.
            let skip = start.saturating_sub(n).min(k as u64) as usize;
            f.write_all(&buf[skip..k]).with_context(|| format!("writing {}", part.display()))?;
            buf.truncate(k);
            hashing.send(buf);
            n += k as u64;
            progress(n);
            // Start writing back as it comes, so the final fsync has little left to do.
            if n - flushed >= WRITEBACK_STEP {
                start_writeback(&f, flushed, n - flushed);
                flushed = n;
            }
        }
        if n != d.size {
            if n > d.size {
                let _ = std::fs::remove_file(&part);
            }
            bail!("blob {}: {n} bytes, the descriptor says {}", d.digest, d.size);
        }
        let got = hashing.finish().map(|h| h.finish()).unwrap_or_default();
        let got = got.first().map(|g| g.hex.clone()).unwrap_or_default();
        if got != hex {
            let _ = std::fs::remove_file(&part);
            bail!("blob {}: digest mismatch (got sha256:{got})", d.digest);
        }
        f.sync_all()?;
        std::fs::rename(&part, &dest).with_context(|| format!("renaming {}", part.display()))?;
        crate::sys::fsutil::sync_dir(dir)?;
        Ok(n - start)
    }
}

/// How much a blob download writes before it asks the kernel to start
/// writing it back.
const WRITEBACK_STEP: u64 = 8 << 20;

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: starts writeback of a range
/// without waiting for it (a hint: an error changes nothing, the final
/// fsync is what makes the blob durable).
fn start_writeback(f: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a valid open file descriptor.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// `key="value", key2="value2"` of a challenge.
fn challenge_params(s: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut rest = s.trim();
    while let Some((k, r)) = rest.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (v, r) = match r.strip_prefix('"') {
            Some(q) => q.split_once('"').unwrap_or((q, "")),
            None => r.split_once(',').unwrap_or((r, "")),
        };
        out.push((k, v.to_string()));
        rest = r.trim_start_matches(',').trim();
    }
    out
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r: Ref = "oci://127.0.0.1:5000/torcx/docker:20.10".parse().unwrap();
        assert_eq!(
            (r.host.as_str(), r.repo.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "torcx/docker", Some("20.10"))
        );
        assert_eq!((r.name(), r.reference()), ("docker", "20.10"));
        assert!(r.loopback());
        let d = format!("sha256:{}", "a".repeat(64));
        let r: Ref = format!("registry.example/a/b@{d}").parse().unwrap();
        assert_eq!((r.tag.as_deref(), r.digest.as_deref(), r.reference()), (None, Some(d.as_str()), d.as_str()));
        assert!(!"registry.example/a/b:1".parse::<Ref>().unwrap().loopback());
        for bad in ["host", "host/Repo:1", "host/a", "host/a:-x", "host/a@sha256:00", "host/../a:1", "ho st/a:1"] {
            assert!(bad.parse::<Ref>().is_err(), "{bad}");
        }
    }

    #[test]
    fn challenges() {
        let p = challenge_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(p[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(p[2], ("scope".into(), "repository:a/b:pull".into()));
        assert_eq!(urlencode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }
}
