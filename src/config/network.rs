//! Outbound network settings of `[store]` (SPEC §12): the proxy for token
//! and Store calls, and extra CA certificates for TLS-inspecting proxies.
//!
//! The proxy environment (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, in upper
//! or lower case, as curl reads them) is read here, through the injected
//! environment lookup, rather than left to reqwest's process-wide default:
//! that keeps tests free of the process environment, and lets `[store]
//! proxy_url` override it and `proxy_url = ""` switch proxies off.

use std::fmt;
use std::path::PathBuf;

use super::locate::KeyPath;
use super::validate::{Checked, Ctx, issue};

/// Which proxy outbound requests use.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum ProxyConfig {
    /// No proxy.
    #[default]
    Direct,
    /// From the environment at load time: `http` for `http://` URLs,
    /// `https` for `https://` URLs, neither for hosts in `no_proxy`.
    Environment {
        /// `HTTP_PROXY`.
        http: Option<String>,
        /// `HTTPS_PROXY`.
        https: Option<String>,
        /// `NO_PROXY`, as written.
        no_proxy: Option<String>,
    },
    /// `[store] proxy_url`, for every request.
    Url(String),
}

impl ProxyConfig {
    /// The reqwest proxies for this setting (none for [`ProxyConfig::Direct`]).
    ///
    /// # Errors
    /// When a URL is not one reqwest can use (validation has checked them).
    pub fn proxies(&self) -> Result<Vec<reqwest::Proxy>, reqwest::Error> {
        Ok(match self {
            ProxyConfig::Direct => Vec::new(),
            ProxyConfig::Url(url) => vec![reqwest::Proxy::all(url.as_str())?],
            ProxyConfig::Environment {
                http,
                https,
                no_proxy,
            } => {
                let except = || no_proxy.as_deref().and_then(reqwest::NoProxy::from_string);
                let mut out = Vec::new();
                if let Some(url) = http {
                    out.push(reqwest::Proxy::http(url.as_str())?.no_proxy(except()));
                }
                if let Some(url) = https {
                    out.push(reqwest::Proxy::https(url.as_str())?.no_proxy(except()));
                }
                out
            }
        })
    }
}

/// A proxy URL without its password, for `Debug` and logs.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "(invalid URL)".to_owned(),
    }
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyConfig::Direct => f.write_str("Direct"),
            ProxyConfig::Url(u) => f.debug_tuple("Url").field(&redacted(u)).finish(),
            ProxyConfig::Environment {
                http,
                https,
                no_proxy,
            } => f
                .debug_struct("Environment")
                .field("http", &http.as_deref().map(redacted))
                .field("https", &https.as_deref().map(redacted))
                .field("no_proxy", no_proxy)
                .finish(),
        }
    }
}

/// `[store] ca_file`: PEM CA certificates trusted beside the system's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    /// Where it was read from.
    pub file: PathBuf,
    /// The PEM text, checked to hold at least one certificate.
    pub pem: Vec<u8>,
}

impl CaBundle {
    /// The certificates, for the HTTP client.
    ///
    /// # Errors
    /// When the PEM does not parse (validation has checked it).
    pub fn certificates(&self) -> Result<Vec<reqwest::Certificate>, reqwest::Error> {
        reqwest::Certificate::from_pem_bundle(&self.pem)
    }
}

/// The first non-empty of `names` in the environment.
fn env_var(ctx: &Ctx<'_>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| (ctx.options.env)(n).filter(|v| !v.trim().is_empty()))
        .map(|v| v.trim().to_owned())
}

/// A proxy URL: http or https scheme and a host.
fn check_proxy_url(key: &KeyPath, url: &str, from: &str) -> Checked<()> {
    let parsed = reqwest::Url::parse(url)
        .or_else(|_| reqwest::Url::parse(&format!("http://{url}")))
        .map_err(|e| issue(key, format!("{from} is not a valid proxy URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(issue(
            key,
            format!(
                "{from} must be an http:// or https:// proxy URL with a host (got {})",
                redacted(url)
            ),
        ));
    }
    Ok(())
}

/// `[store] proxy_url` if set (`""`: no proxy), else the environment.
pub(super) fn proxy(written: Option<&str>, ctx: &Ctx<'_>) -> Checked<ProxyConfig> {
    let key = KeyPath::of("store.proxy_url");
    if let Some(url) = written {
        let url = url.trim();
        if url.is_empty() {
            return Ok(ProxyConfig::Direct);
        }
        check_proxy_url(&key, url, "proxy_url")?;
        return Ok(ProxyConfig::Url(url.to_owned()));
    }
    let http = env_var(ctx, &["HTTP_PROXY", "http_proxy"]);
    let https = env_var(ctx, &["HTTPS_PROXY", "https_proxy"]);
    for (value, name) in [(&http, "HTTP_PROXY"), (&https, "HTTPS_PROXY")] {
        if let Some(url) = value {
            check_proxy_url(&key, url, &format!("the environment variable {name}"))?;
        }
    }
    if http.is_none() && https.is_none() {
        return Ok(ProxyConfig::Direct);
    }
    Ok(ProxyConfig::Environment {
        http,
        https,
        no_proxy: env_var(ctx, &["NO_PROXY", "no_proxy"]),
    })
}

/// `[store] ca_file`: readable, and at least one PEM certificate.
pub(super) fn ca_bundle(written: Option<&str>, ctx: &Ctx<'_>) -> Checked<Option<CaBundle>> {
    let Some(written) = written else {
        return Ok(None);
    };
    let key = KeyPath::of("store.ca_file");
    let file = ctx.resolve(&key, written)?;
    let pem = super::files::read_text(&file)
        .map_err(|e| issue(&key, format!("cannot read {}: {e}", file.display())))?
        .into_bytes();
    let found = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        issue(
            &key,
            format!("{} is not a PEM certificate bundle: {e}", file.display()),
        )
    })?;
    if found.is_empty() {
        return Err(issue(
            &key,
            format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                file.display()
            ),
        ));
    }
    Ok(Some(CaBundle { file, pem }))
}
