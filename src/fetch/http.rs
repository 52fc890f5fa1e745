//! Getting bytes from a URL: `http://` and `https://` through ureq (rustls,
//! verified against the system CA bundle), `file://` from local media. Every
//! request can start at an offset, for resuming.
//!
//! Timeouts are per connection and per read, never for a whole transfer: a
//! large image on a slow link finishes as long as bytes keep coming.

use anyhow::{Context, Result, anyhow};
use std::io::{Read, Seek};
use std::sync::OnceLock;
use std::time::Duration;

pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A failed request, and whether trying again may help (a dropped
/// connection, a timeout, a 5xx) or not (a 404, a bad certificate).
#[derive(Debug)]
pub struct Failure {
    pub retry: bool,
    pub error: anyhow::Error,
}

impl Failure {
    fn fatal(e: anyhow::Error) -> Failure {
        Failure { retry: false, error: e }
    }
}

/// An open response body.
pub struct Opened {
    pub reader: Box<dyn Read + Send>,
    /// Where the body starts in the file: the offset asked for, or 0 when
    /// the server sent the whole file instead.
    pub start: u64,
    /// The whole file's length, when the server said it.
    pub total: Option<u64>,
}

pub struct Client {
    timeout: Duration,
    /// For http:// URLs direct and through `http_proxy`, for https:// URLs
    /// direct and through `https_proxy`.
    agents: [OnceLock<Result<ureq::Agent, String>>; 4],
}

impl Client {
    /// `timeout`: the longest wait for a connection, for response headers,
    /// and for each read of the body.
    pub fn new(timeout: Duration) -> Client {
        Client { timeout, agents: Default::default() }
    }

    /// GETs `url` from byte `offset` on. The HTTP status is checked.
    pub fn open(&self, url: &str, offset: u64) -> Result<Opened, Failure> {
        if let Some(path) = url.strip_prefix("file://") {
            return open_file(path, offset).map_err(Failure::fatal);
        }
        let agent = self.agent(url).map_err(Failure::fatal)?;
        let mut req = agent.get(url);
        if offset > 0 {
            req = req.header("Range", format!("bytes={offset}-"));
        }
        let resp = req.call().map_err(|e| {
            let retry = !matches!(e, ureq::Error::Tls(_) | ureq::Error::BadUri(_) | ureq::Error::Rustls(_));
            Failure { retry, error: anyhow!("GET {url}: {e}") }
        })?;
        let status = resp.status().as_u16();
        let header = |h: &str| resp.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
        let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
        let (start, total) = match status {
            200 => (0, length),
            206 if offset > 0 => {
                // Content-Range: bytes START-END/TOTAL
                let cr = header("content-range").unwrap_or_default();
                let (range, total) = cr.strip_prefix("bytes ").and_then(|r| r.split_once('/')).unwrap_or(("", ""));
                let start = range.split_once('-').and_then(|(s, _)| s.parse::<u64>().ok());
                if start != Some(offset) {
                    return Err(Failure::fatal(anyhow!("GET {url}: the server answered range {offset}- with {cr:?}")));
                }
                (offset, total.parse().ok())
            }
            // The part already has every byte (or more): start over.
            416 => return Err(Failure { retry: true, error: anyhow!("GET {url}: HTTP 416 for bytes {offset}-") }),
            _ => {
                let retry = status >= 500 || status == 429 || status == 408;
                let reason = resp.status().canonical_reason().unwrap_or("");
                return Err(Failure { retry, error: anyhow!("GET {url}: HTTP {status} {reason}") });
            }
        };
        Ok(Opened { reader: Box::new(resp.into_body().into_reader()), start, total })
    }

    /// The agent for `url`: its scheme, its proxy (or none, per `NO_PROXY`).
    pub fn agent(&self, url: &str) -> Result<&ureq::Agent> {
        let https = url.starts_with("https://");
        let host = url.split_once("://").map(|(_, r)| r).unwrap_or("");
        let host = host.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
        };
        let proxy_var = if https { ["HTTPS_PROXY", "https_proxy"] } else { ["HTTP_PROXY", "http_proxy"] };
        let proxy = proxy_var.iter().find_map(|v| std::env::var(v).ok()).filter(|p| !p.is_empty());
        let proxy = proxy.filter(|_| !no_proxy(host));
        let idx = usize::from(https) * 2 + usize::from(proxy.is_some());
        let built = self.agents[idx].get_or_init(|| self.build(proxy.as_deref(), https).map_err(|e| format!("{e:#}")));
        built.as_ref().map_err(|e| anyhow!("{e}"))
    }

    /// An agent; for https:// URLs, one that refuses a redirect to http://.
    fn build(&self, proxy: Option<&str>, https_only: bool) -> Result<ureq::Agent> {
        let proxy = match proxy {
            Some(p) => Some(ureq::Proxy::new(p).map_err(|e| anyhow!("proxy {}: {e}", crate::model::quoted(p)))?),
            None => None,
        };
        let t = Some(self.timeout);
        let config = ureq::Agent::config_builder()
            .proxy(proxy)
            .http_status_as_error(false)
            .https_only(https_only)
            .tls_config(tls_config()?)
            .user_agent(concat!("torcx/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(t)
            .timeout_recv_response(t)
            .timeout_per_read(t)
            .build();
        Ok(ureq::Agent::new_with_config(config))
    }
}

/// `NO_PROXY`: hosts (and their subdomains) reached directly; `*` is all.
fn no_proxy(host: &str) -> bool {
    let list = ["NO_PROXY", "no_proxy"].iter().find_map(|v| std::env::var(v).ok()).unwrap_or_default();
    no_proxy_in(&list, host)
}

fn no_proxy_in(list: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    list.split(',')
        .map(|e| e.trim().trim_start_matches('*').trim_start_matches('.').to_ascii_lowercase())
        .any(|e| !e.is_empty() && (e == host || host.ends_with(&format!(".{e}"))) || e.is_empty() && list.trim() == "*")
}

/// The CA bundle: `$SSL_CERT_FILE`, else the system's.
fn tls_config() -> Result<ureq::tls::TlsConfig> {
    let path = std::env::var("SSL_CERT_FILE").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| CA_BUNDLE.to_string());
    let pem = crate::sys::fsutil::read_bounded(std::path::Path::new(&path), 16 << 20)
        .with_context(|| format!("reading the CA bundle {path} (SSL_CERT_FILE)"))?;
    let mut certs = vec![];
    for item in ureq::tls::parse_pem(&pem) {
        if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        anyhow::bail!("the CA bundle {path} holds no certificate");
    }
    Ok(ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build())
}

/// A local file: regular files only (a FIFO or `/dev/zero` on the media is
/// refused, not read forever). A part longer than the file starts over.
fn open_file(path: &str, offset: u64) -> Result<Opened> {
    let mut f = crate::sys::fsutil::open_regular(std::path::Path::new(path))?;
    let total = f.metadata().with_context(|| format!("reading {path}"))?.len();
    let start = if offset > total { 0 } else { offset };
    f.seek(std::io::SeekFrom::Start(start)).with_context(|| format!("reading {path}"))?;
    Ok(Opened { reader: Box::new(f.take(total - start)), start, total: Some(total) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_proxy_matching() {
        let l = "localhost, .internal,example.com";
        assert!(super::no_proxy_in(l, "localhost"));
        assert!(super::no_proxy_in(l, "a.internal"));
        assert!(super::no_proxy_in(l, "www.example.com"));
        assert!(!super::no_proxy_in(l, "example.org"));
        assert!(super::no_proxy_in("*", "anything"));
        assert!(!super::no_proxy_in("", "anything"));
    }
}

/// `url` as it may be shown: without credentials (`user:pass@`) or a
/// query (a presigned storage URL carries its signature there).
pub fn redact(url: &str) -> String {
    let url = match url.split_once('?') {
        Some((u, _)) => format!("{u}?…"),
        None => url.to_string(),
    };
    let Some((scheme, rest)) = url.split_once("://") else { return url };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
        None => url,
    }
}

/// Whether `url` carries credentials before its host.
pub fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest[..rest.find('/').unwrap_or(rest.len())].contains('@')
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn credentials_and_queries_are_never_shown() {
        assert_eq!(super::redact("oci://u:p@h:5/r/a:1"), "oci://…@h:5/r/a:1");
        assert_eq!(super::redact("https://cdn/b?X-Sig=s3cret"), "https://cdn/b?…");
        assert_eq!(super::redact("https://h/a@b"), "https://h/a@b");
        assert!(super::has_userinfo("http://u:p@h/x") && !super::has_userinfo("https://h/a@b"));
    }
}
