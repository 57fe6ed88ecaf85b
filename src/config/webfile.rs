//! `--web.config.file`: the exporter-toolkit web configuration (YAML) that
//! node_exporter, blackbox_exporter and most Go exporters read, so that a
//! fleet's one `web-config.yml` (written by Ansible roles and NixOS
//! modules) works here unchanged (SPEC §14).
//!
//! The file is read into a small tree that keeps the line of every key
//! ([`Node`]), and checked key by key against the toolkit's format: every
//! key the toolkit knows is either honoured, with the toolkit's meaning, or
//! refused with an error that names it as unsupported here; a key the
//! toolkit does not know is an error too. Nothing is silently ignored, and
//! every error names file, line and key, like the TOML configuration's.
//!
//! Honoured: `tls_server_config` (`cert_file`, `key_file`,
//! `client_auth_type`, `client_ca_file`, `min_version`, `max_version`,
//! `prefer_server_cipher_suites`), `http_server_config` (`headers`, and
//! `http2: false`, which is what this HTTP/1.1 server does anyway),
//! `basic_auth_users`. Refused: inline `cert`/`key`/`client_ca`,
//! `cipher_suites`, `curve_preferences`, `client_allowed_sans`,
//! `http2: true`, `rate_limit`, TLS versions below 1.2 (rustls has none).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{ClientAuth, ConfigError, TlsFiles, TlsVersion};

/// What the web configuration file sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebFile {
    /// TLS, when `tls_server_config` has a certificate.
    pub tls: Option<TlsFiles>,
    /// `basic_auth_users`: name → bcrypt hash.
    pub basic_auth_users: BTreeMap<String, String>,
    /// `http_server_config.headers`, added to every answer.
    pub headers: Vec<(String, String)>,
}

/// The entries of a YAML mapping, keys with their lines.
type Entries = Vec<(Spanned<String>, Spanned<Node>)>;

/// A YAML value with the line of every key below it.
#[derive(Debug)]
enum Node {
    Map(Entries),
    Seq,
    Scalar(String),
    Bool(bool),
    Null,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value::<Spanned<Node>>()?));
                }
                Ok(Node::Map(entries))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Node::Seq)
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Scalar(v.to_owned()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Scalar(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Node, D2::Error> {
                Node::deserialize(d)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Keys of the toolkit's format that this exporter does not implement,
/// with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "tls_server_config.cert",
        "put the certificate in a file and name it in cert_file",
    ),
    (
        "tls_server_config.key",
        "put the key in a file and name it in key_file",
    ),
    (
        "tls_server_config.client_ca",
        "put the CA certificates in a file and name it in client_ca_file",
    ),
    (
        "tls_server_config.cipher_suites",
        "rustls chooses among its own safe suites; remove the key",
    ),
    (
        "tls_server_config.curve_preferences",
        "rustls chooses among its own safe curves; remove the key",
    ),
    (
        "tls_server_config.client_allowed_sans",
        "restrict clients by CA (client_ca_file) instead",
    ),
    (
        "rate_limit",
        "limit requests in front of the exporter (it serves at most 40 at once)",
    ),
];

/// Why a key was refused: its path, line and what is wrong.
struct Refusal {
    key: String,
    line: usize,
    message: String,
}

fn refuse(key: &str, at: &Spanned<String>, message: impl Into<String>) -> Refusal {
    Refusal {
        key: key.to_owned(),
        line: line_of(at),
        message: message.into(),
    }
}

fn line_of<T>(s: &Spanned<T>) -> usize {
    usize::try_from(s.referenced.line()).unwrap_or(0).max(1)
}

/// Reads and checks the web configuration file at `path`.
///
/// # Errors
/// [`ConfigError`] naming the file, and the line and key where there is
/// one.
pub fn load(path: &Path) -> Result<WebFile, ConfigError> {
    let text = super::files::read_text(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Checks web configuration text as if read from `path` (relative file
/// names in it are relative to the file's directory, as in the toolkit).
///
/// # Errors
/// As [`load`].
pub fn parse(text: &str, path: &Path) -> Result<WebFile, ConfigError> {
    let root: Option<Node> = serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
        file: path.to_path_buf(),
        line: e
            .location()
            .map_or(1, |l| usize::try_from(l.line()).unwrap_or(1)),
        message: syntax_message(&e),
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    check(root.unwrap_or(Node::Null), dir).map_err(|r| ConfigError::Invalid {
        file: path.to_path_buf(),
        line: r.line,
        key: r.key,
        message: r.message,
    })
}

/// The parser's message without its rendering of the source (which could
/// quote a password hash or a key).
fn syntax_message(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    text.lines()
        .next()
        .unwrap_or("not valid YAML")
        .trim()
        .to_owned()
}

fn check(root: Node, dir: &Path) -> Result<WebFile, Refusal> {
    let mut web = WebFile::default();
    let entries = match root {
        Node::Null => return Ok(web),
        Node::Map(entries) => entries,
        _ => {
            return Err(Refusal {
                key: "(document)".into(),
                line: 1,
                message: "must be a mapping of tls_server_config, http_server_config and basic_auth_users".into(),
            });
        }
    };
    for (key, value) in entries {
        match key.value.as_str() {
            "tls_server_config" => web.tls = tls(&key, value, dir)?,
            "http_server_config" => web.headers = http(&key, value)?,
            "basic_auth_users" => web.basic_auth_users = users(&key, value)?,
            name => return Err(unknown_or_unsupported(name, &key)),
        }
    }
    Ok(web)
}

fn unknown_or_unsupported(path: &str, key: &Spanned<String>) -> Refusal {
    match UNSUPPORTED.iter().find(|(k, _)| *k == path) {
        Some((_, instead)) => refuse(
            path,
            key,
            format!(
                "is a key of the exporter-toolkit format that msfb_seat_exporter does not support: {instead}"
            ),
        ),
        None => refuse(
            path,
            key,
            "unknown key (not part of the exporter-toolkit web configuration format)",
        ),
    }
}

/// The entries of a mapping (`null` is an empty one).
fn entries(key: &Spanned<String>, path: &str, value: Spanned<Node>) -> Result<Entries, Refusal> {
    match value.value {
        Node::Map(e) => Ok(e),
        Node::Null => Ok(Vec::new()),
        _ => Err(refuse(path, key, "must be a mapping")),
    }
}

/// A string value (empty for `null`, as Go's YAML reads it).
fn string(key: &Spanned<String>, path: &str, value: &Spanned<Node>) -> Result<String, Refusal> {
    match &value.value {
        Node::Scalar(s) => Ok(s.clone()),
        Node::Null => Ok(String::new()),
        _ => Err(refuse(path, key, "must be a string")),
    }
}

fn boolean(key: &Spanned<String>, path: &str, value: &Spanned<Node>) -> Result<bool, Refusal> {
    match &value.value {
        Node::Bool(b) => Ok(*b),
        _ => Err(refuse(path, key, "must be true or false")),
    }
}

/// The settings of `tls_server_config` as read, before they are combined.
#[derive(Default)]
struct TlsKeys {
    cert: Option<(Spanned<String>, String)>,
    key: Option<(Spanned<String>, String)>,
    client_auth: Option<(Spanned<String>, ClientAuth)>,
    client_ca: Option<(Spanned<String>, String)>,
    min_version: Option<(Spanned<String>, TlsVersion)>,
    max_version: Option<(Spanned<String>, TlsVersion)>,
    prefer_server: Option<bool>,
}

fn tls(
    section: &Spanned<String>,
    value: Spanned<Node>,
    dir: &Path,
) -> Result<Option<TlsFiles>, Refusal> {
    let mut k = TlsKeys::default();
    for (key, value) in entries(section, "tls_server_config", value)? {
        let path = format!("tls_server_config.{}", key.value);
        match key.value.as_str() {
            "cert_file" => k.cert = Some((key.clone(), string(&key, &path, &value)?)),
            "key_file" => k.key = Some((key.clone(), string(&key, &path, &value)?)),
            "client_ca_file" => k.client_ca = Some((key.clone(), string(&key, &path, &value)?)),
            "client_auth_type" => {
                let s = string(&key, &path, &value)?;
                let auth = client_auth(&s).ok_or_else(|| {
                    refuse(&path, &key, format!(
                        "{s:?} is not a client auth type: NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                    ))
                })?;
                k.client_auth = Some((key.clone(), auth));
            }
            "min_version" | "max_version" => {
                let v = tls_version(&key, &path, &string(&key, &path, &value)?)?;
                if key.value == "min_version" {
                    k.min_version = Some((key.clone(), v));
                } else {
                    k.max_version = Some((key.clone(), v));
                }
            }
            "prefer_server_cipher_suites" => k.prefer_server = Some(boolean(&key, &path, &value)?),
            _ => return Err(unknown_or_unsupported(&path, &key)),
        }
    }
    tls_files(section, k, dir)
}

/// Combines the keys as the toolkit does.
fn tls_files(
    section: &Spanned<String>,
    k: TlsKeys,
    dir: &Path,
) -> Result<Option<TlsFiles>, Refusal> {
    fn set(o: &Option<(Spanned<String>, String)>) -> Option<&(Spanned<String>, String)> {
        o.as_ref().filter(|(_, s)| !s.is_empty())
    }
    let enabled = set(&k.cert).is_some()
        || set(&k.key).is_some()
        || set(&k.client_ca).is_some()
        || k.client_auth.is_some();
    if !enabled {
        return Ok(None);
    }
    let file = |name: &str, o: &Option<(Spanned<String>, String)>| -> Result<PathBuf, Refusal> {
        let path = format!("tls_server_config.{name}");
        let (key, value) =
            set(o).ok_or_else(|| refuse(&path, section, "is required when TLS is configured"))?;
        let full = dir.join(value);
        // Read now, so that a pipe or a directory is refused naming its key.
        super::files::read_bytes(&full, super::files::MAX_PEM_BYTES)
            .map_err(|e| refuse(&path, key, format!("cannot read {}: {e}", full.display())))?;
        Ok(full)
    };
    let cert = file("cert_file", &k.cert)?;
    let key = file("key_file", &k.key)?;
    let client_auth = k
        .client_auth
        .as_ref()
        .map_or(ClientAuth::NoClientCert, |(_, a)| *a);
    let client_ca = match set(&k.client_ca) {
        None => None,
        Some((key, _)) if client_auth == ClientAuth::NoClientCert => {
            return Err(refuse(
                "tls_server_config.client_ca_file",
                key,
                "client CAs are configured without a client auth policy: set client_auth_type (RequireAndVerifyClientCert to require certificates from these CAs)",
            ));
        }
        Some(_) => Some(file("client_ca_file", &k.client_ca)?),
    };
    if client_auth.verifies() && client_ca.is_none() {
        let at = k.client_auth.as_ref().map_or(section, |(key, _)| key);
        return Err(refuse(
            "tls_server_config.client_auth_type",
            at,
            format!(
                "{} needs client_ca_file: the CAs that client certificates must come from",
                client_auth.name()
            ),
        ));
    }
    let (min_version, max_version) = tls_versions(&k)?;
    Ok(Some(TlsFiles {
        cert,
        key,
        client_auth,
        client_ca,
        min_version,
        max_version,
        prefer_server_cipher_suites: k.prefer_server.unwrap_or(true),
    }))
}

/// `min_version` and `max_version`, TLS 1.2 and 1.3 when unset; a minimum
/// above the maximum is refused naming `min_version`.
fn tls_versions(k: &TlsKeys) -> Result<(TlsVersion, TlsVersion), Refusal> {
    let min_version = k
        .min_version
        .as_ref()
        .map_or(TlsVersion::Tls12, |(_, v)| *v);
    let max_version = k
        .max_version
        .as_ref()
        .map_or(TlsVersion::Tls13, |(_, v)| *v);
    if min_version > max_version {
        let (key, _) = k
            .min_version
            .as_ref()
            .expect("only an explicit min_version can exceed the maximum");
        return Err(refuse(
            "tls_server_config.min_version",
            key,
            "is above max_version",
        ));
    }
    Ok((min_version, max_version))
}

fn client_auth(s: &str) -> Option<ClientAuth> {
    Some(match s {
        "" | "NoClientCert" => ClientAuth::NoClientCert,
        "RequestClientCert" => ClientAuth::RequestClientCert,
        // The toolkit keeps the old name for backwards compatibility.
        "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        _ => return None,
    })
}

fn tls_version(key: &Spanned<String>, path: &str, s: &str) -> Result<TlsVersion, Refusal> {
    match s {
        "TLS12" => Ok(TlsVersion::Tls12),
        "TLS13" => Ok(TlsVersion::Tls13),
        "TLS10" | "TLS11" => Err(refuse(
            path,
            key,
            format!(
                "{s} is a value of the exporter-toolkit format that msfb_seat_exporter does not support: it speaks TLS 1.2 and 1.3 only (TLS12, TLS13)"
            ),
        )),
        _ => Err(refuse(
            path,
            key,
            format!("{s:?} is not a TLS version: TLS12 or TLS13"),
        )),
    }
}

/// Headers the toolkit lets a web configuration set, and the values it
/// accepts for each (`None`: any).
const HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

fn http(section: &Spanned<String>, value: Spanned<Node>) -> Result<Vec<(String, String)>, Refusal> {
    let mut headers = Vec::new();
    for (key, value) in entries(section, "http_server_config", value)? {
        let path = format!("http_server_config.{}", key.value);
        match key.value.as_str() {
            "http2" => {
                if boolean(&key, &path, &value)? {
                    return Err(refuse(
                        &path,
                        &key,
                        "HTTP/2 is not supported: msfb_seat_exporter serves HTTP/1.1 (set http2: false, or remove the key)",
                    ));
                }
            }
            "headers" => {
                for (name, v) in entries(&key, &path, value)? {
                    let hpath = format!("{path}.{}", name.value);
                    let v = string(&name, &hpath, &v)?;
                    header(&name, &hpath, &v)?;
                    if !v.is_empty() {
                        headers.push((name.value.clone(), v));
                    }
                }
            }
            _ => return Err(unknown_or_unsupported(&path, &key)),
        }
    }
    Ok(headers)
}

/// Checks one header as the toolkit does: a known name, and for the
/// enumerated ones a known value (case-insensitively). An empty value
/// leaves the header unset.
fn header(name: &Spanned<String>, path: &str, value: &str) -> Result<(), Refusal> {
    let Some((_, allowed)) = HEADERS.iter().find(|(h, _)| *h == name.value) else {
        let names: Vec<&str> = HEADERS.iter().map(|(h, _)| *h).collect();
        return Err(refuse(
            path,
            name,
            format!(
                "this header cannot be configured; the format allows {}",
                names.join(", ")
            ),
        ));
    };
    if let Some(values) = allowed
        && !value.is_empty()
        && !values.contains(&value.to_ascii_lowercase().as_str())
    {
        return Err(refuse(
            path,
            name,
            format!("{value:?} is not allowed here: {}", values.join(" or ")),
        ));
    }
    if http::HeaderValue::from_str(value).is_err() {
        return Err(refuse(path, name, "is not a valid header value"));
    }
    Ok(())
}

fn users(
    section: &Spanned<String>,
    value: Spanned<Node>,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut users = BTreeMap::new();
    for (name, hash) in entries(section, "basic_auth_users", value)? {
        let path = format!("basic_auth_users.{}", name.value);
        let hash = string(&name, &path, &hash)?;
        if let Err(message) = super::validate::check_basic_auth_user(&name.value, &hash) {
            return Err(refuse(&path, &name, message));
        }
        users.insert(name.value.clone(), hash);
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";

    fn dir_with_pem() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in ["tls.crt", "tls.key", "ca.crt"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        dir
    }

    fn err(text: &str) -> String {
        let dir = dir_with_pem();
        parse(text, &dir.path().join("web.yml"))
            .unwrap_err()
            .to_string()
            .replace(&dir.path().display().to_string(), "DIR")
    }

    #[test]
    fn a_fleet_file_is_read_with_the_toolkit_meaning() {
        let dir = dir_with_pem();
        let text = format!(
            "# the fleet's web-config.yml\ntls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n\
             basic_auth_users:\n  prometheus: {HASH}\n"
        );
        let web = parse(&text, &dir.path().join("web.yml")).unwrap();
        let tls = web.tls.unwrap();
        assert_eq!(tls.cert, dir.path().join("tls.crt"));
        assert_eq!(tls.client_ca, Some(dir.path().join("ca.crt")));
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(
            (tls.min_version, tls.max_version),
            (TlsVersion::Tls13, TlsVersion::Tls13)
        );
        assert!(tls.prefer_server_cipher_suites);
        assert_eq!(web.basic_auth_users["prometheus"], HASH);
        assert_eq!(web.headers.len(), 2);
        // Empty and comment-only files configure nothing, as in the toolkit.
        for empty in ["", "# nothing\n", "tls_server_config:\n"] {
            assert_eq!(
                parse(empty, &dir.path().join("w.yml")).unwrap(),
                WebFile::default()
            );
        }
    }

    #[test]
    fn mistakes_name_file_line_and_key() {
        assert_eq!(
            err(
                "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"
            ),
            "DIR/web.yml:4: tls_server_config.cipher_suites: is a key of the exporter-toolkit format that msfb_seat_exporter does not support: rustls chooses among its own safe suites; remove the key"
        );
        assert_eq!(
            err("tls_server_config:\n  cert_file: tls.crt\n  certfile: tls.key\n"),
            "DIR/web.yml:3: tls_server_config.certfile: unknown key (not part of the exporter-toolkit web configuration format)"
        );
        assert_eq!(
            err("basic_auth_user:\n  a: b\n"),
            "DIR/web.yml:1: basic_auth_user: unknown key (not part of the exporter-toolkit web configuration format)"
        );
        assert_eq!(
            err(
                "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_ca_file: ca.crt\n"
            ),
            "DIR/web.yml:4: tls_server_config.client_ca_file: client CAs are configured without a client auth policy: set client_auth_type (RequireAndVerifyClientCert to require certificates from these CAs)"
        );
        assert!(err("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_auth_type: VerifyClientCertIfGiven\n").starts_with("DIR/web.yml:4: tls_server_config.client_auth_type: VerifyClientCertIfGiven needs client_ca_file"));
        assert!(err("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_version: TLS11\n").starts_with("DIR/web.yml:4: tls_server_config.min_version: TLS11 is a value of the exporter-toolkit format that msfb_seat_exporter does not support"));
        assert_eq!(
            err(
                "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  max_version: TLS12\n  min_version: TLS13\n"
            ),
            "DIR/web.yml:5: tls_server_config.min_version: is above max_version"
        );
        assert_eq!(
            err("tls_server_config:\n  cert_file: tls.crt\n"),
            "DIR/web.yml:1: tls_server_config.key_file: is required when TLS is configured"
        );
        assert!(
            err("tls_server_config:\n  cert_file: missing.crt\n  key_file: tls.key\n").starts_with(
                "DIR/web.yml:2: tls_server_config.cert_file: cannot read DIR/missing.crt"
            )
        );
        assert_eq!(
            err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n"),
            "DIR/web.yml:3: http_server_config.headers.X-Frame-Options: \"allow\" is not allowed here: deny or sameorigin"
        );
        assert!(
            err("http_server_config:\n  headers:\n    Server: x\n").starts_with(
                "DIR/web.yml:3: http_server_config.headers.Server: this header cannot be configured"
            )
        );
        assert!(
            err("http_server_config:\n  http2: true\n")
                .starts_with("DIR/web.yml:2: http_server_config.http2: HTTP/2 is not supported")
        );
        assert!(
            err("rate_limit:\n  burst: 10\n")
                .starts_with("DIR/web.yml:1: rate_limit: is a key of the exporter-toolkit format")
        );
        assert_eq!(
            err("basic_auth_users:\n  alice: hunter2\n"),
            "DIR/web.yml:2: basic_auth_users.alice: must be a bcrypt hash (\"$2b$...\"), not a plain password"
        );
        let syntax = err("tls_server_config: [unclosed\n");
        assert!(syntax.starts_with("DIR/web.yml:"), "{syntax}");
    }
}
