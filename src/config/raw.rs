//! The configuration file exactly as written: serde types with defaults and
//! `deny_unknown_fields`, and nothing checked beyond TOML types. `validate`
//! turns this into the typed [`super::Config`]; keeping the two apart lets the
//! file format stay close to SPEC §3 while the rest of the crate sees only
//! values that are known to be good.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

pub(crate) const DEFAULT_LISTEN_ADDRESS: &str = ":10043";
pub(crate) const DEFAULT_TELEMETRY_PATH: &str = "/metrics";
pub(crate) const DEFAULT_BASE_URL: &str = "https://bspmts.mp.microsoft.com";
pub(crate) const DEFAULT_RESOURCE: &str = "https://onestore.microsoft.com";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub web: RawWeb,
    #[serde(default)]
    pub store: RawStore,
    pub auth: RawAuth,
    #[serde(default)]
    pub poll: RawPoll,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub inventory: RawInventory,
    #[serde(default)]
    pub persistence: RawPersistence,
    #[serde(default)]
    pub products: Vec<RawProduct>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawWeb {
    pub listen_address: String,
    pub telemetry_path: String,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub basic_auth_users: BTreeMap<String, String>,
}

impl Default for RawWeb {
    fn default() -> Self {
        Self {
            listen_address: DEFAULT_LISTEN_ADDRESS.to_owned(),
            telemetry_path: DEFAULT_TELEMETRY_PATH.to_owned(),
            tls_cert_file: None,
            tls_key_file: None,
            basic_auth_users: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawStore {
    pub base_url: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub max_concurrency: i64,
    pub max_requests_per_second: f64,
    pub max_retries: i64,
    pub proxy_url: Option<String>,
    pub ca_file: Option<String>,
    pub non_json_404: super::NonJson404,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            timeout: Duration::from_secs(10),
            max_concurrency: 8,
            max_requests_per_second: 10.0,
            max_retries: 2,
            proxy_url: None,
            ca_file: None,
            non_json_404: super::NonJson404::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    #[serde(default)]
    pub credential: RawCredential,
    pub endpoint: Option<RawEndpoint>,
    pub authority_host: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<String>,
    pub client_secret_env: Option<String>,
    pub token_url: Option<String>,
    #[serde(default = "default_resource")]
    pub resource: String,
    pub client_certificate_file: Option<String>,
    pub client_key_file: Option<String>,
    pub federated_token_file: Option<String>,
    pub managed_identity_endpoint: Option<String>,
}

/// `[auth] credential` (SPEC §12).
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawCredential {
    #[default]
    Secret,
    Certificate,
    WorkloadIdentity,
    ManagedIdentity,
}

impl RawCredential {
    pub(crate) fn word(self) -> &'static str {
        match self {
            RawCredential::Secret => "secret",
            RawCredential::Certificate => "certificate",
            RawCredential::WorkloadIdentity => "workload_identity",
            RawCredential::ManagedIdentity => "managed_identity",
        }
    }
}

/// `[auth] endpoint`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawEndpoint {
    V1,
    V2,
}

fn default_resource() -> String {
    DEFAULT_RESOURCE.to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawPoll {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub shard_index: i64,
    pub shard_count: i64,
}

impl Default for RawPoll {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            shard_index: 0,
            shard_count: 1,
        }
    }
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawUserLabel {
    #[default]
    Upn,
    Hash,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawPerTarget {
    #[default]
    Full,
    Compact,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawMetrics {
    pub user_label: RawUserLabel,
    pub user_hash_key_file: Option<String>,
    pub per_target: RawPerTarget,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawInventory {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub max_pages: i64,
}

impl Default for RawInventory {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(3600),
            max_pages: 1000,
        }
    }
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawMode {
    #[default]
    PerUser,
    List,
}

/// `users` is either a list of UPNs or the word `"all"` (discovery, SPEC §11).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawUsers {
    List(Vec<String>),
    Word(String),
}

impl Default for RawUsers {
    fn default() -> Self {
        RawUsers::List(Vec::new())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProduct {
    pub product_id: String,
    pub sku_id: String,
    pub name: Option<String>,
    #[serde(default)]
    pub users: RawUsers,
    pub users_file: Option<String>,
    pub mode: Option<RawMode>,
    #[serde(default, with = "humantime_serde")]
    pub forget_after: Option<Duration>,
    pub max_pages: Option<i64>,
    pub max_discovered: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawPersistence {
    pub file: Option<String>,
}
