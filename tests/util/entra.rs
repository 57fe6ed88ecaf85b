//! Fixtures of the credential tests (SPEC §12): RSA certificates, an
//! exporter with a given `[auth]` and environment, one cycle and a scrape.

use std::path::{Path, PathBuf};

use msfb_seat_exporter::config::ConfigError;
use msfb_seat_exporter::exporter::Exporter;
use msfb_seat_exporter::fake_store::{self, FakeSeat, FakeStore};
use tokio_util::sync::CancellationToken;

use super::exposition::Scrape;
use super::harness::{P, S, fast_options, load_with_env, product, request};

/// The user every credential test checks.
pub use super::harness::ALICE;

/// A self-signed RSA certificate and its PKCS#8 key valid for `days` more
/// days (negative: expired), as PEM.
pub fn rsa_pair(days: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["msfb-seat-exporter".into()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "msfb-seat-exporter");
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// An exporter for a config with the `[auth]` body `auth` and extra
/// `[store]` lines, loaded with the environment `env` only.
pub fn exporter(
    fake_base: &str,
    dir: &Path,
    auth: &str,
    store_extra: &str,
    env: &[(&str, &str)],
) -> Result<Exporter, ConfigError> {
    let text = format!(
        "[store]\nbase_url = \"{fake_base}\"\ntimeout = \"2s\"\nmax_requests_per_second = 0\n\
         max_retries = 0\n{store_extra}\n\n[auth]\n{auth}\n\n[poll]\ninterval = \"10s\"\n\n{}",
        product(&[ALICE])
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    let config = load_with_env(&path, env)?;
    Ok(Exporter::new(config, fast_options()).expect("exporter"))
}

pub async fn cycle(e: &Exporter) {
    e.run_cycle(&CancellationToken::new()).await.expect("cycle");
}

pub async fn scrape(e: &Exporter) -> Scrape {
    let (status, body) = request(e, "GET", "/metrics").await;
    assert_eq!(status, 200);
    Scrape::parse(&body)
}

/// A fake with alice holding a seat.
pub async fn fake() -> FakeStore {
    let fake = FakeStore::start().await.unwrap();
    fake.set_seat(P, S, ALICE, FakeSeat::active());
    fake
}

/// The token endpoints and the Store audience each asks for.
pub const ENDPOINT_AUDIENCES: [(&str, &str); 2] = [
    ("v1", "https://onestore.microsoft.com"),
    ("v2", "https://onestore.microsoft.com/.default"),
];

/// `[auth]` for workload identity at the fake as authority host, with the
/// federated token in the file `token` next to the configuration.
pub fn workload_identity_auth(fake: &FakeStore) -> String {
    format!(
        "credential = \"workload_identity\"\nfederated_token_file = \"token\"\n\
         authority_host = \"{}\"\ntenant_id = \"{}\"\nclient_id = \"{}\"",
        fake.authority_host(),
        fake_store::TENANT,
        fake_store::CLIENT_ID
    )
}

/// `[auth]` for a certificate at the fake as authority host.
pub fn certificate_auth(
    fake: &FakeStore,
    endpoint: &str,
    cert: &Path,
    key: Option<&Path>,
) -> String {
    let key = key.map_or(String::new(), |k| {
        format!("client_key_file = {:?}\n", k.display().to_string())
    });
    format!(
        "credential = \"certificate\"\nendpoint = \"{endpoint}\"\nauthority_host = \"{}\"\n\
         tenant_id = \"{}\"\nclient_id = \"{}\"\nclient_certificate_file = {:?}\n{key}",
        fake.authority_host(),
        fake_store::TENANT,
        fake_store::CLIENT_ID,
        cert.display().to_string()
    )
}

/// Writes `text` to `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
