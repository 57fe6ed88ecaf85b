//! The configuration: read one TOML file (SPEC §3), check everything that
//! can be checked before the first request, and hand out typed values.
//!
//! Loading is split in two, like ripgrep's low/high arguments: `raw` is the
//! file as serde sees it, `validate` turns it into [`Config`]. Every
//! rejection becomes a [`ConfigError`] naming file, line and key; the line is
//! found by `locate` from the key path, so the checks themselves only need to
//! say *which key* is wrong.

mod auth;
mod certificate;
mod credential;
mod error;
pub(crate) mod files;
mod locate;
mod network;
mod raw;
mod validate;
pub mod webfile;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

pub use auth::EXPIRY_WARNING;
pub use certificate::{CertificateError, ClientCertificate};
pub use credential::{
    CertificateFiles, Credential, DEFAULT_AUTHORITY_HOST, Endpoint, IMDS_ENDPOINT,
    read_federated_token,
};
pub use error::ConfigError;
pub use network::{CaBundle, ProxyConfig};

use locate::{KeyPath, SourceMap};

/// Reads environment variables for `client_secret_env` and
/// `$CREDENTIALS_DIRECTORY`. Injected so that tests need not touch the
/// process environment.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What the command line may override, and where the environment comes from.
/// Kept with the loader so that a reload applies the same overrides again.
#[derive(Clone)]
pub struct LoadOptions {
    /// `--web.listen-address`.
    pub listen_address: Option<String>,
    /// `--shard.index`.
    pub shard_index: Option<u32>,
    /// `--shard.count`.
    pub shard_count: Option<u32>,
    /// `--web.config.file`: the exporter-toolkit web configuration, read
    /// with the TOML file (and again on every reload).
    pub web_config_file: Option<PathBuf>,
    /// `--persistence.file` (relative to the working directory, as any
    /// path on a command line).
    pub persistence_file: Option<PathBuf>,
    /// Environment lookup; the process environment by default.
    pub env: EnvLookup,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            listen_address: None,
            shard_index: None,
            shard_count: None,
            web_config_file: None,
            persistence_file: None,
            env: Arc::new(|name| std::env::var(name).ok()),
        }
    }
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("listen_address", &self.listen_address)
            .field("shard_index", &self.shard_index)
            .field("shard_count", &self.shard_count)
            .field("web_config_file", &self.web_config_file)
            .field("persistence_file", &self.persistence_file)
            .finish_non_exhaustive()
    }
}

/// A validated configuration. Cheap to share behind an `Arc`; replaced whole
/// on reload.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from (relative paths in it are relative to it).
    pub source: PathBuf,
    /// `[web]`.
    pub web: WebConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[poll]`.
    pub poll: PollConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[inventory]`.
    pub inventory: InventoryConfig,
    /// `[persistence]`.
    pub persistence: PersistenceConfig,
    /// `[[products]]`, in file order, users merged and de-duplicated.
    pub products: Vec<ProductConfig>,
    /// Things worth a warning that do not stop the exporter.
    pub warnings: Vec<String>,
    /// The secret files read (client secret, hash key).
    pub secret_files: Vec<SecretFile>,
}

/// A secret file the configuration names: `--config.check` run as root
/// reads any file, while the systemd unit's dynamic user reads secrets only
/// through `LoadCredential=`, so a check that passes as root says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// The key that names it, e.g. `auth.client_secret_file`.
    pub key: String,
    /// Where it was read.
    pub path: PathBuf,
    /// Whether it was written as `$CREDENTIALS_DIRECTORY/…`.
    pub from_credentials: bool,
}

/// `[web]`: where and how the exporter serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// `host:port` or `:port`.
    pub listen_address: String,
    /// Path of the metrics endpoint.
    pub telemetry_path: String,
    /// Certificate and key files when TLS is on.
    pub tls: Option<TlsFiles>,
    /// User name → bcrypt hash; empty means no authentication.
    pub basic_auth_users: BTreeMap<String, String>,
    /// Headers added to every answer (`http_server_config.headers` of the
    /// web configuration file).
    pub headers: Vec<(String, String)>,
}

/// The TLS listener: PEM files and the exporter-toolkit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// Whether and how client certificates are asked for.
    pub client_auth: ClientAuth,
    /// CA certificates (PEM) that client certificates are verified against.
    pub client_ca: Option<PathBuf>,
    /// Lowest TLS version spoken.
    pub min_version: TlsVersion,
    /// Highest TLS version spoken.
    pub max_version: TlsVersion,
    /// Whether the server's cipher suite order wins over the client's.
    pub prefer_server_cipher_suites: bool,
}

impl TlsFiles {
    /// A certificate and key with no client certificates, TLS 1.2 and 1.3,
    /// the client's suite order (`[web]`).
    pub fn new(cert: PathBuf, key: PathBuf) -> TlsFiles {
        TlsFiles {
            cert,
            key,
            client_auth: ClientAuth::NoClientCert,
            client_ca: None,
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            prefer_server_cipher_suites: false,
        }
    }
}

/// `client_auth_type` of the exporter-toolkit format (Go's `tls.ClientAuthType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    NoClientCert,
    /// One is asked for; the client may send none, and any is accepted.
    RequestClientCert,
    /// One must be sent; any is accepted (it is not verified).
    RequireAnyClientCert,
    /// One may be sent; if it is, it must verify against the client CAs.
    VerifyClientCertIfGiven,
    /// One must be sent and verify against the client CAs.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    /// The name in the web configuration file.
    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::NoClientCert => "NoClientCert",
            ClientAuth::RequestClientCert => "RequestClientCert",
            ClientAuth::RequireAnyClientCert => "RequireAnyClientCert",
            ClientAuth::VerifyClientCertIfGiven => "VerifyClientCertIfGiven",
            ClientAuth::RequireAndVerifyClientCert => "RequireAndVerifyClientCert",
        }
    }

    /// Whether a certificate the client sends is verified against the CAs.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }

    /// Whether the client must send a certificate.
    pub fn requires(self) -> bool {
        matches!(
            self,
            ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// A TLS protocol version (`min_version`/`max_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// `[store]`: the upstream API and how politely to call it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Scheme, host and optional path prefix, without a trailing slash.
    pub base_url: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Checks in flight at once.
    pub max_concurrency: usize,
    /// Requests per second across everything; `None` is unlimited.
    pub max_requests_per_second: Option<f64>,
    /// Retries of transient failures within one cycle.
    pub max_retries: u32,
    /// Proxy for token and Store requests.
    pub proxy: ProxyConfig,
    /// Extra trusted CA certificates.
    pub ca_file: Option<CaBundle>,
    /// What a 404 whose body is not the Store's JSON means.
    pub non_json_404: NonJson404,
}

#[cfg(test)]
impl StoreConfig {
    /// The defaults of `[store]` against `base_url`, one request at a time
    /// and no retries, for unit tests of the layers above.
    pub(crate) fn for_tests(base_url: &str) -> StoreConfig {
        StoreConfig {
            base_url: base_url.to_owned(),
            timeout: Duration::from_secs(10),
            max_concurrency: 1,
            max_requests_per_second: None,
            max_retries: 0,
            proxy: ProxyConfig::default(),
            ca_file: None,
            non_json_404: NonJson404::default(),
        }
    }
}

/// `[store] non_json_404`: what a 404 whose body is not a JSON object (an
/// HTML page from a proxy, a wrong `base_url` path, an empty body) means
/// (SPEC §17).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonJson404 {
    /// Nothing about the seat: `code="404"`, `reason="not_store"`, the seat
    /// gauge unchanged.
    #[default]
    Inconclusive,
    /// "No seat", like the Store's own 404 with no item type (for a Store
    /// front end known to answer 404 with no body).
    Conclusive,
}

/// Where `auth.token_url` takes the tenant id.
pub const TENANT_PLACEHOLDER: &str = "{tenant_id}";

/// `[auth]`: how the exporter gets its OAuth2 token (SPEC §4, §12). Secrets
/// stay inside [`Credential`], whose `Debug` prints none.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// Entra ID tenant (empty for a managed identity).
    pub tenant_id: String,
    /// Application (client) id; for a managed identity, the user-assigned
    /// identity's client id, or empty for the system-assigned one.
    pub client_id: String,
    /// Secret, certificate, workload identity or managed identity.
    pub credential: Credential,
    /// v1 (`resource=`) or v2 (`scope=`) token endpoint.
    pub endpoint: Endpoint,
    /// Token endpoint as configured or built from the authority host; the
    /// token client fills in [`TENANT_PLACEHOLDER`] (`store::auth`). For a
    /// managed identity, the identity endpoint.
    pub token_url: String,
    /// Resource (audience) to ask a token for.
    pub resource: String,
}

#[cfg(test)]
impl AuthConfig {
    /// Tenant `t`, client `c` with secret `s`, the v1 endpoint at
    /// `token_url` and resource `r`, for unit tests of the layers above.
    pub(crate) fn for_tests(token_url: &str) -> AuthConfig {
        AuthConfig {
            tenant_id: "t".into(),
            client_id: "c".into(),
            credential: Credential::Secret(SecretString::from("s")),
            endpoint: Endpoint::V1,
            token_url: token_url.into(),
            resource: "r".into(),
        }
    }
}

/// `[poll]`: the schedule and this instance's shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollConfig {
    /// Time between the starts of two cycles.
    pub interval: Duration,
    /// This instance's shard, `0..shard_count`.
    pub shard_index: u32,
    /// Number of instances sharing the configuration.
    pub shard_count: u32,
}

/// `[metrics]`: what the `user` label carries, and which families are
/// exported per target.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// UPN or keyed hash.
    pub user_label: UserLabel,
    /// The metric profile (SPEC §16).
    pub per_target: PerTarget,
}

/// `[metrics] per_target`: how many series each target costs at
/// Prometheus' end (SPEC §16).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PerTarget {
    /// Every per-target family of SPEC §6 (five to six series a target).
    #[default]
    Full,
    /// Per target only `msfb_seat_active` and `msfb_seat_check_errors_total`;
    /// freshness, failing checks and losses per product.
    Compact,
}

/// What identifies a user outside the process (labels, logs, status page).
#[derive(Debug, Clone)]
pub enum UserLabel {
    /// The UPN as configured.
    Upn,
    /// A keyed hash of the UPN; the key comes from `user_hash_key_file`.
    Hash(SecretString),
}

/// `[inventory]` (SPEC §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryConfig {
    /// Whether Get Inventory is polled.
    pub enabled: bool,
    /// How often.
    pub interval: Duration,
    /// Get Inventory pages after which a listing is cut off as an error.
    pub max_pages: u32,
}

/// `[persistence]` (SPEC §13).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersistenceConfig {
    /// Where the seat state is saved; `None` keeps it in memory only.
    pub file: Option<PathBuf>,
}

/// How a product's seats are checked (SPEC §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One Get seat per configured user.
    PerUser,
    /// Page through Get seats and match users.
    List,
}

/// One `[[products]]` entry after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductConfig {
    /// Store product id.
    pub product_id: String,
    /// Store SKU id (a string: leading zeros matter).
    pub sku_id: String,
    /// Human name, if given.
    pub name: Option<String>,
    /// Configured users, de-duplicated (case-insensitively), in file order.
    pub users: Vec<String>,
    /// `users = "all"`: watch every listed seat.
    pub discover: bool,
    /// Per-user or listing.
    pub mode: Mode,
    /// Discovery: how long a lost seat stays exported.
    pub forget_after: Duration,
    /// Listing safety cut-off.
    pub max_pages: u32,
    /// Discovery: most targets this instance keeps for the product.
    pub max_discovered: usize,
}

impl Config {
    /// Number of targets in the whole configuration (all shards).
    pub fn target_count(&self) -> usize {
        self.products.iter().map(|p| p.users.len()).sum()
    }

    /// Number of distinct users across products.
    pub fn user_count(&self) -> usize {
        let mut users: Vec<String> = self
            .products
            .iter()
            .flat_map(|p| p.users.iter().map(|u| u.to_lowercase()))
            .collect();
        users.sort_unstable();
        users.dedup();
        users.len()
    }

    /// The line `--config.check` prints.
    pub fn summary(&self) -> String {
        format!(
            "{} ({}, {})",
            counted(self.target_count(), "target"),
            counted(self.products.len(), "product"),
            counted(self.user_count(), "user")
        )
    }
}

/// `1 product`, `2 products`.
fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Reads and validates the configuration file at `path`.
///
/// # Errors
/// [`ConfigError`] naming file, line and key for any problem, including
/// unreadable secret, key and users files.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Config, ConfigError> {
    let text = files::read_text(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    from_toml(&text, path, options)
}

/// Validates configuration text as if read from `path` (which is used for
/// messages and to resolve relative paths).
///
/// # Errors
/// As [`load`].
pub fn from_toml(text: &str, path: &Path, options: &LoadOptions) -> Result<Config, ConfigError> {
    let map = SourceMap::new(text);
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| toml_error(&e, &map, path))?;
    let mut config = validate::validate(raw, path, options).map_err(|issue| match issue.flag {
        Some(flag) => ConfigError::Flag {
            flag,
            message: issue.message,
        },
        None => ConfigError::Invalid {
            file: path.to_path_buf(),
            line: map.line_of_path(&issue.path),
            key: issue.path.to_string(),
            message: issue.message,
        },
    })?;
    if let Some(file) = &options.web_config_file {
        with_web_file(&mut config, file, &map, path)?;
    }
    Ok(config)
}

/// Takes TLS, users and headers from the web configuration file, which
/// must then be their only source: the same setting in two places would
/// leave the reader guessing which one is in force.
fn with_web_file(
    config: &mut Config,
    file: &Path,
    map: &SourceMap<'_>,
    path: &Path,
) -> Result<(), ConfigError> {
    let web = webfile::load(file)?;
    // [web] sets both TLS files or neither.
    let clash = if config.web.tls.is_some() {
        Some("web.tls_cert_file")
    } else if !config.web.basic_auth_users.is_empty() {
        Some("web.basic_auth_users")
    } else {
        None
    };
    if let Some(key) = clash {
        return Err(ConfigError::Invalid {
            file: path.to_path_buf(),
            line: map.line_of_path(&KeyPath::of(key)),
            key: key.to_owned(),
            message: format!(
                "cannot be used together with --web.config.file ({}): set TLS and users in one place",
                file.display()
            ),
        });
    }
    config.web.tls = web.tls;
    config.web.basic_auth_users = web.basic_auth_users;
    config.web.headers = web.headers;
    Ok(())
}

/// A valid configuration of `[auth]` and then `rest`, for unit tests above
/// this layer.
#[cfg(test)]
pub(crate) fn for_tests(rest: &str) -> Config {
    let text = format!(
        "[auth]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_env = \"S\"\n\n{rest}"
    );
    let options = LoadOptions {
        // Only `S`: a lookup answering every name would set the proxy and
        // authority host variables too.
        env: Arc::new(|name| (name == "S").then(|| "secret".into())),
        ..LoadOptions::default()
    };
    from_toml(&text, Path::new("/x/config.toml"), &options).expect("valid config")
}

/// Checks a `--web.listen-address` value on its own, for `--demo`, which
/// has no configuration file to blame.
///
/// # Errors
/// [`ConfigError::Flag`] naming the flag.
pub fn check_listen_address_flag(address: &str) -> Result<(), ConfigError> {
    validate::check_listen_address(&KeyPath::of("web.listen_address"), address).map_err(|issue| {
        ConfigError::Flag {
            flag: validate::LISTEN_ADDRESS_FLAG,
            message: issue.message,
        }
    })
}

/// Turns a serde/TOML error into one that names the key.
fn toml_error(err: &toml::de::Error, map: &SourceMap<'_>, path: &Path) -> ConfigError {
    let offset = err.span().map_or(0, |s| s.start);
    let line = map.line_of(offset);
    let mut key = map.path_at(offset);
    if let Some(unquoted) = locate::unquoted_string(map.text(), line) {
        // `listen_address = :10043`: the parser's words ("invalid float",
        // "expected literal string") are about TOML grammar; say what to type.
        if key == KeyPath::root() {
            key = unquoted.key;
        }
        return ConfigError::Invalid {
            file: path.to_path_buf(),
            line,
            key: key.to_string(),
            message: format!(
                "{} is not quoted; a string value needs quotes: {} = {:?}",
                unquoted.value, unquoted.name, unquoted.value
            ),
        };
    }
    let message = err.message().trim().to_owned();
    // "missing field `x`" points at the table that lacks `x`: name `x` too.
    // An empty span means the top-level table.
    if let Some(rest) = message.strip_prefix("missing field `") {
        if err.span().is_none_or(|s| s.is_empty()) {
            key = KeyPath::root();
        }
        if let Some(field) = rest.split('`').next() {
            key = key.key(field);
        }
    }
    if key == KeyPath::root() {
        return ConfigError::Syntax {
            file: path.to_path_buf(),
            line,
            message,
        };
    }
    ConfigError::Invalid {
        file: path.to_path_buf(),
        line,
        key: key.to_string(),
        message,
    }
}
