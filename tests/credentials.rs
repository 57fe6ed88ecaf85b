//! Entra ID credentials (SPEC §12) over real HTTP to the fake: certificate
//! assertions, workload identity, managed identity, the v1 and v2
//! endpoints, rotation between fetches, refusals that keep the seat, and
//! proxies (a loopback forward/CONNECT proxy started here). The config
//! errors of every mix-up are in the table at the end. The certificate the
//! README's `openssl` command makes is tested in the contract binary.

use std::path::Path;
use std::sync::{Arc, Mutex};

use msfb_seat_exporter::config;
use msfb_seat_exporter::config::ClientCertificate;
use msfb_seat_exporter::exporter::Exporter;
use msfb_seat_exporter::fake_store::{self, CredentialKind, FakeSeat, FakeStore, Grant};
use msfb_seat_exporter::store::credential::assertion;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::util::entra::{
    ALICE, ENDPOINT_AUDIENCES, certificate_auth, cycle, exporter, fake, rsa_pair, scrape,
    workload_identity_auth, write,
};
use crate::util::process::assert_refused;
use crate::util::{P, S, Scrape, load_with_env, product};

#[tokio::test]
async fn certificate_on_v1_and_v2_gets_a_token_and_exports_its_expiry() {
    for (endpoint, audience) in ENDPOINT_AUDIENCES {
        let fake = fake().await;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = rsa_pair(90);
        fake.trust_certificate(&cert).unwrap();
        let cert_path = write(dir.path(), "cert.pem", &cert);
        let key_path = write(dir.path(), "key.pem", &key);
        let auth = certificate_auth(&fake, endpoint, &cert_path, Some(&key_path));
        let e = exporter(&fake.base_url(), dir.path(), &auth, "", &[]).expect("valid");
        cycle(&e).await;
        let m = scrape(&e).await;
        assert_eq!(
            m.active(ALICE),
            Some(1.0),
            "{endpoint}: {:?}",
            fake.last_refusal()
        );
        assert_eq!(
            fake.grants(),
            vec![Grant {
                credential: CredentialKind::Certificate,
                endpoint,
                audience: audience.into(),
                identity: None,
            }]
        );
        let not_after = ClientCertificate::load(&cert_path, &key_path)
            .unwrap()
            .not_after()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert_eq!(
            m.value("msfb_oauth_credential_expiry_timestamp_seconds", &[]),
            Some(not_after)
        );
    }
}

/// Posts a client assertion to the fake's v1 token endpoint: the status.
async fn post_assertion(fake: &FakeStore, assertion: &str) -> u16 {
    let url = fake.token_url().replace("{tenant_id}", fake_store::TENANT);
    reqwest::Client::new()
        .post(url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", fake_store::CLIENT_ID),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
            ("resource", "https://onestore.microsoft.com"),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_fake_refuses_a_wrong_key_a_wrong_audience_an_expired_or_replayed_assertion() {
    use secrecy::ExposeSecret as _;
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let load = |(cert, key): &(String, String), name: &str| {
        let c = write(dir.path(), &format!("{name}.crt"), cert);
        let k = write(dir.path(), &format!("{name}.key"), key);
        ClientCertificate::load(&c, &k).unwrap()
    };
    let trusted = rsa_pair(30);
    fake.trust_certificate(&trusted.0).unwrap();
    let good = load(&trusted, "trusted");
    let stranger = load(&rsa_pair(30), "stranger");
    let aud = fake.token_url().replace("{tenant_id}", fake_store::TENANT);
    let now = std::time::SystemTime::now();
    let hour = std::time::Duration::from_secs(3600);
    let sign = |c: &ClientCertificate, client: &str, aud: &str, at| {
        assertion(c, client, aud, at)
            .unwrap()
            .expose_secret()
            .to_owned()
    };
    for (what, assertion, code) in [
        (
            "wrong key",
            sign(&stranger, fake_store::CLIENT_ID, &aud, now),
            "AADSTS700027",
        ),
        (
            "wrong aud",
            sign(
                &good,
                fake_store::CLIENT_ID,
                "https://login.example/t/oauth2/token",
                now,
            ),
            "AADSTS700027",
        ),
        (
            "wrong iss and sub",
            sign(&good, "someone-else", &aud, now),
            "AADSTS7000215",
        ),
        (
            "expired",
            sign(&good, fake_store::CLIENT_ID, &aud, now - hour),
            "AADSTS700027",
        ),
        (
            "not yet valid",
            sign(&good, fake_store::CLIENT_ID, &aud, now + hour),
            "AADSTS700027",
        ),
        ("not a JWT", "eyJnot.a.jwt".to_owned(), "AADSTS50027"),
    ] {
        assert_eq!(post_assertion(&fake, &assertion).await, 401, "{what}");
        if code != "AADSTS7000215" {
            let why = fake.last_refusal().unwrap();
            assert!(why.starts_with(code), "{what}: {why}");
        }
    }
    let ok = sign(&good, fake_store::CLIENT_ID, &aud, now);
    assert_eq!(post_assertion(&fake, &ok).await, 200);
    assert_eq!(post_assertion(&fake, &ok).await, 401, "replayed jti");
    assert!(fake.last_refusal().unwrap().contains("jti replayed"));
}

/// Revokes every token and makes the next check fetch one (401, retry).
async fn next_cycle_fetches_a_token(fake: &FakeStore, e: &Exporter) -> Scrape {
    fake.revoke_tokens();
    cycle(e).await;
    scrape(e).await
}

#[tokio::test]
async fn certificate_rotated_on_disk_is_used_at_the_next_fetch() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, key_a) = rsa_pair(20);
    fake.trust_certificate(&cert_a).unwrap();
    let cert = write(dir.path(), "cert.pem", &cert_a);
    let key = write(dir.path(), "key.pem", &key_a);
    let e = exporter(
        &fake.base_url(),
        dir.path(),
        &certificate_auth(&fake, "v2", &cert, Some(&key)),
        "",
        &[],
    )
    .unwrap();
    cycle(&e).await;
    let before = scrape(&e).await;
    assert_eq!(before.active(ALICE), Some(1.0));
    // The renewal: a new pair on disk, only it registered on the app.
    let (cert_b, key_b) = rsa_pair(365);
    write(dir.path(), "cert.pem", &cert_b);
    write(dir.path(), "key.pem", &key_b);
    fake.distrust_certificates();
    fake.trust_certificate(&cert_b).unwrap();
    let after = next_cycle_fetches_a_token(&fake, &e).await;
    assert_eq!(after.success(ALICE), Some(1.0), "{:?}", fake.last_refusal());
    assert_eq!(fake.grants().len(), 2);
    let expiry = |m: &Scrape| m.value("msfb_oauth_credential_expiry_timestamp_seconds", &[]);
    assert!(expiry(&after).unwrap() > expiry(&before).unwrap() + 300.0 * 86400.0);
    // Half a renewal (a new certificate, the old key) is not used: the pair
    // in force stays.
    write(dir.path(), "cert.pem", &rsa_pair(365).0);
    let kept = next_cycle_fetches_a_token(&fake, &e).await;
    assert_eq!(kept.success(ALICE), Some(1.0), "{:?}", fake.last_refusal());
    assert_eq!(expiry(&kept), expiry(&after));
}

#[tokio::test]
async fn workload_identity_from_the_webhook_environment_rereads_the_token_file() {
    for (endpoint, audience) in ENDPOINT_AUDIENCES {
        let fake = fake().await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = write(dir.path(), "azure-identity-token", "eyJfederated-one\n");
        fake.accept_federated_token("eyJfederated-one");
        let host = format!("{}/", fake.authority_host());
        let file = token_file.display().to_string();
        // What the AKS webhook injects; the config names only the kind.
        let env = [
            ("AZURE_CLIENT_ID", fake_store::CLIENT_ID),
            ("AZURE_TENANT_ID", fake_store::TENANT),
            ("AZURE_FEDERATED_TOKEN_FILE", file.as_str()),
            ("AZURE_AUTHORITY_HOST", host.as_str()),
        ];
        let auth = format!("credential = \"workload_identity\"\nendpoint = \"{endpoint}\"");
        let e = exporter(&fake.base_url(), dir.path(), &auth, "", &env).unwrap();
        cycle(&e).await;
        let m = scrape(&e).await;
        assert_eq!(m.active(ALICE), Some(1.0), "{:?}", fake.last_refusal());
        assert_eq!(
            fake.grants()[0].credential,
            CredentialKind::WorkloadIdentity
        );
        assert_eq!(fake.grants()[0].audience, audience);
        assert_eq!(
            m.value("msfb_oauth_credential_expiry_timestamp_seconds", &[]),
            None
        );
        // The platform rotates the file; the old token stops working.
        write(dir.path(), "azure-identity-token", "eyJfederated-two");
        fake.revoke_federated_tokens();
        fake.accept_federated_token("eyJfederated-two");
        let m = next_cycle_fetches_a_token(&fake, &e).await;
        assert_eq!(m.success(ALICE), Some(1.0), "{:?}", fake.last_refusal());
        assert_eq!(fake.grants().len(), 2);
    }
}

#[tokio::test]
async fn managed_identity_system_and_user_assigned() {
    for client_id in [None, Some("5e1f0000-0000-0000-0000-0000000000a1")] {
        let fake = fake().await;
        let dir = tempfile::tempdir().unwrap();
        let mut auth = format!(
            "credential = \"managed_identity\"\nmanaged_identity_endpoint = \"{}\"\n",
            fake.imds_url()
        );
        if let Some(id) = client_id {
            fake.add_managed_identity(id);
            auth.push_str(&format!("client_id = \"{id}\"\n"));
        }
        let e = exporter(&fake.base_url(), dir.path(), &auth, "", &[]).unwrap();
        cycle(&e).await;
        assert_eq!(
            scrape(&e).await.active(ALICE),
            Some(1.0),
            "{:?}",
            fake.last_refusal()
        );
        assert_eq!(
            fake.grants(),
            vec![Grant {
                credential: CredentialKind::ManagedIdentity,
                endpoint: "imds",
                audience: "https://onestore.microsoft.com".into(),
                identity: client_id.map(str::to_owned),
            }]
        );
        let m = next_cycle_fetches_a_token(&fake, &e).await;
        assert_eq!(
            m.success(ALICE),
            Some(1.0),
            "a 401 fetches a new token from IMDS too"
        );
    }
}

#[tokio::test]
async fn the_fake_imds_wants_the_metadata_header_and_a_known_identity() {
    let fake = fake().await;
    let url = format!(
        "{}?api-version=2018-02-01&resource=https://onestore.microsoft.com",
        fake.imds_url()
    );
    let http = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(http.get(&url).send().await.unwrap()), 400);
    assert_eq!(
        status(
            http.get(&url)
                .header("Metadata", "true")
                .send()
                .await
                .unwrap()
        ),
        200
    );
    let user = format!("{url}&client_id=unknown");
    assert_eq!(
        status(
            http.get(&user)
                .header("Metadata", "true")
                .send()
                .await
                .unwrap()
        ),
        400
    );
}

/// Each credential, refused by the fake after a first success, counts a
/// token failure and leaves the seat as it was.
#[tokio::test]
async fn every_refused_credential_counts_a_failure_and_keeps_the_seat() {
    for kind in [
        CredentialKind::Secret,
        CredentialKind::Certificate,
        CredentialKind::WorkloadIdentity,
        CredentialKind::ManagedIdentity,
    ] {
        let fake = fake().await;
        let dir = tempfile::tempdir().unwrap();
        let auth = match kind {
            CredentialKind::Secret => {
                write(dir.path(), "secret", fake_store::CLIENT_SECRET);
                format!(
                    "endpoint = \"v2\"\nauthority_host = \"{}\"\ntenant_id = \"{}\"\n\
                     client_id = \"{}\"\nclient_secret_file = \"secret\"",
                    fake.authority_host(),
                    fake_store::TENANT,
                    fake_store::CLIENT_ID
                )
            }
            CredentialKind::Certificate => {
                let (cert, key) = rsa_pair(30);
                fake.trust_certificate(&cert).unwrap();
                let both = write(dir.path(), "both.pem", &format!("{cert}{key}"));
                certificate_auth(&fake, "v1", &both, None)
            }
            CredentialKind::WorkloadIdentity => {
                write(dir.path(), "token", "eyJfederated");
                fake.accept_federated_token("eyJfederated");
                workload_identity_auth(&fake)
            }
            CredentialKind::ManagedIdentity => format!(
                "credential = \"managed_identity\"\nmanaged_identity_endpoint = \"{}\"",
                fake.imds_url()
            ),
        };
        let e = exporter(&fake.base_url(), dir.path(), &auth, "", &[]).unwrap();
        cycle(&e).await;
        assert_eq!(scrape(&e).await.active(ALICE), Some(1.0), "{kind:?}");
        fake.reject_credential(kind);
        let m = next_cycle_fetches_a_token(&fake, &e).await;
        assert_eq!(m.active(ALICE), Some(1.0), "{kind:?}: the seat stays");
        assert_eq!(m.success(ALICE), Some(0.0), "{kind:?}");
        let reason = match kind {
            CredentialKind::ManagedIdentity => "invalid_request",
            _ => "invalid_client",
        };
        assert_eq!(
            m.value(
                "msfb_oauth_token_request_failures_total",
                &[("reason", reason)]
            ),
            Some(1.0),
            "{kind:?}"
        );
        assert_eq!(
            m.api(
                "token",
                if reason == "invalid_request" {
                    "400"
                } else {
                    "401"
                }
            ),
            Some(1.0)
        );
    }
}

#[tokio::test]
async fn an_unreadable_federated_token_file_at_fetch_time_is_a_credential_failure() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "token", "eyJfederated");
    fake.accept_federated_token("eyJfederated");
    let auth = workload_identity_auth(&fake);
    let e = exporter(&fake.base_url(), dir.path(), &auth, "", &[]).unwrap();
    cycle(&e).await;
    std::fs::remove_file(dir.path().join("token")).unwrap();
    let m = next_cycle_fetches_a_token(&fake, &e).await;
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(
        m.value(
            "msfb_oauth_token_request_failures_total",
            &[("reason", "credential")]
        ),
        Some(1.0)
    );
    assert_eq!(
        fake.counts().token_requests,
        1,
        "no request without a token to send"
    );
}

// ---------------------------------------------------------------- proxies

/// A loopback proxy: forwards absolute-form HTTP requests (tunnelling the
/// rest of the connection to the same origin) and CONNECT tunnels, and
/// keeps every byte clients sent it outside a tunnel.
struct Proxy {
    url: String,
    seen: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(Self::serve(conn, Arc::clone(&log)));
            }
        });
        Proxy { url, seen, task }
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    async fn serve(mut client: tokio::net::TcpStream, log: Arc<Mutex<Vec<u8>>>) {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        log.lock().unwrap().extend_from_slice(&head);
        let line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        let mut parts = line.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let origin = if method == "CONNECT" {
            target.to_owned()
        } else {
            let url = reqwest::Url::parse(target).expect("absolute-form request");
            format!(
                "{}:{}",
                url.host_str().unwrap(),
                url.port_or_known_default().unwrap()
            )
        };
        let Ok(mut upstream) = tokio::net::TcpStream::connect(&origin).await else {
            return;
        };
        if method == "CONNECT" {
            let _ = client
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            return;
        }
        let _ = upstream.write_all(&head).await;
        let (mut client_read, mut client_write) = client.into_split();
        let (mut up_read, mut up_write) = upstream.into_split();
        let back = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut up_read, &mut client_write).await;
        });
        loop {
            match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    log.lock().unwrap().extend_from_slice(&buf[..n]);
                    if up_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        back.abort();
    }
}

fn secret_auth(fake: &FakeStore, dir: &Path) -> String {
    write(dir, "secret", fake_store::CLIENT_SECRET);
    format!(
        "authority_host = \"{}\"\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"secret\"",
        fake.authority_host(),
        fake_store::TENANT,
        fake_store::CLIENT_ID
    )
}

#[tokio::test]
async fn http_proxy_from_the_environment_carries_token_and_store_calls_unless_no_proxy_or_proxy_url()
 {
    let fake = fake().await;
    let proxy = Proxy::start().await;
    let other = Proxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let auth = secret_auth(&fake, dir.path());
    let token_line = format!(
        "POST {}/{}/oauth2/token HTTP/1.1",
        fake.base_url(),
        fake_store::TENANT
    );
    let seat_line = format!(
        "GET {}/V1/Inventory/{P}/{S}/Seats/{ALICE} HTTP/1.1",
        fake.base_url()
    );
    let via = proxy.url.as_str();
    let proxy_url = format!("proxy_url = \"{}\"", other.url);
    // Extra [store] lines, the environment, the proxy that should carry
    // the calls, and whether it does.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a Proxy, bool);
    let cases: [Case<'_>; 5] = [
        ("", &[("HTTP_PROXY", via)], &proxy, true),
        ("", &[("http_proxy", via)], &proxy, true),
        (
            "",
            &[("HTTP_PROXY", via), ("NO_PROXY", "127.0.0.1")],
            &proxy,
            false,
        ),
        ("proxy_url = \"\"", &[("HTTP_PROXY", via)], &proxy, false),
        (&proxy_url, &[("HTTP_PROXY", via)], &other, true),
    ];
    for (extra, env, used_proxy, used) in cases {
        let before = used_proxy.seen().len();
        let e = exporter(&fake.base_url(), dir.path(), &auth, extra, env).unwrap();
        cycle(&e).await;
        assert_eq!(scrape(&e).await.active(ALICE), Some(1.0), "{extra} {env:?}");
        let seen = used_proxy.seen()[before..].to_owned();
        assert_eq!(seen.contains(&token_line), used, "{extra} {env:?}: {seen}");
        assert_eq!(seen.contains(&seat_line), used, "{extra} {env:?}: {seen}");
    }
}

#[tokio::test]
async fn https_through_a_connect_proxy_with_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let files = config::TlsFiles::new(
        write(dir.path(), "server.crt", &server.cert.pem()),
        write(
            dir.path(),
            "server.key",
            &server.signing_key.serialize_pem(),
        ),
    );
    let fake = FakeStore::start_tls(&files).await.unwrap();
    fake.set_seat(P, S, ALICE, FakeSeat::active());
    let base = format!("https://localhost:{}", fake.addr().port());
    let proxy = Proxy::start().await;
    write(dir.path(), "secret", fake_store::CLIENT_SECRET);
    let auth = format!(
        "authority_host = \"{base}\"\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"secret\"",
        fake_store::TENANT,
        fake_store::CLIENT_ID
    );
    let env = [("HTTPS_PROXY", proxy.url.as_str())];
    // Without the CA the fake's certificate is not trusted.
    let e = exporter(&base, dir.path(), &auth, "", &env).unwrap();
    cycle(&e).await;
    let m = scrape(&e).await;
    assert_eq!(m.active(ALICE), None);
    assert_eq!(
        m.value(
            "msfb_oauth_token_request_failures_total",
            &[("reason", "connect")]
        ),
        Some(1.0)
    );
    let e = exporter(&base, dir.path(), &auth, "ca_file = \"server.crt\"", &env).unwrap();
    cycle(&e).await;
    assert_eq!(scrape(&e).await.active(ALICE), Some(1.0));
    let seen = proxy.seen();
    assert!(
        seen.contains(&format!(
            "CONNECT localhost:{} HTTP/1.1",
            fake.addr().port()
        )),
        "{seen}"
    );
}

// ------------------------------------------------------ configuration errors

/// Loads `[auth]` `auth` (and `[store]` `store`) in a directory holding a
/// valid pair, a stranger's key, an expired pair, a secret and a federated
/// token; the error with the directory stripped.
fn error_of(auth: &str, store: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = rsa_pair(30);
    let (expired, expired_key) = rsa_pair(-1);
    write(dir.path(), "cert.pem", &cert);
    write(dir.path(), "key.pem", &key);
    write(dir.path(), "other.key", &rsa_pair(30).1);
    write(
        dir.path(),
        "expired.pem",
        &format!("{expired}{expired_key}"),
    );
    write(dir.path(), "secret.txt", "s3cr3t");
    write(dir.path(), "token", "eyJfederated");
    write(dir.path(), "empty", "");
    let ec = rcgen::KeyPair::generate().unwrap().serialize_pem();
    write(dir.path(), "ec.key", &ec);
    let text = format!(
        "[store]\nbase_url = \"http://127.0.0.1:1\"\n{store}\n[auth]\n{auth}\n\n{}",
        product(&[ALICE])
    );
    let path = write(dir.path(), "config.toml", &text);
    let err = load_with_env(&path, env).expect_err("rejected").to_string();
    err.replace(&format!("{}/", dir.path().display()), "")
}

const IDS: &str = "tenant_id = \"t\"\nclient_id = \"c\"\n";

/// Each case, one row: its name, the `[auth]` body (a format string, so
/// `{IDS}` stands for the tenant and client lines), then, where the case
/// needs them, `store` lines for `[store]` and an `env` variable; after
/// `=>` the whole message, or its beginning followed by `starts` (for
/// messages that go on with a thumbprint or a date).
macro_rules! auth_rejected {
    ($($name:ident: $auth:literal $(, store $store:literal)? $(, env $env:expr)?
        => $message:literal $(, $starts:ident)?;)*) => {$(
        #[test]
        fn $name() {
            let error = error_of(&format!($auth), concat!($($store)?), &[$($env)?]);
            auth_rejected!(@check error, $message $(, $starts)?);
        }
    )*};
    (@check $error:ident, $message:expr) => { assert_eq!($error, $message) };
    (@check $error:ident, $message:expr, starts) => {
        assert!($error.starts_with($message), "{}", $error)
    };
}

auth_rejected! {
    certificate_key_with_the_secret_credential: "{IDS}client_secret_file = \"secret.txt\"\nclient_certificate_file = \"cert.pem\"" =>
        "config.toml:8: auth.client_certificate_file: belongs to credential = \"certificate\", but this [auth] uses credential = \"secret\"";
    secret_with_the_certificate_credential: "credential = \"certificate\"\n{IDS}client_certificate_file = \"cert.pem\"\nclient_secret_file = \"secret.txt\"" =>
        "config.toml:9: auth.client_secret_file: belongs to credential = \"secret\", but this [auth] uses credential = \"certificate\"";
    federated_file_with_managed_identity: "credential = \"managed_identity\"\nfederated_token_file = \"token\"" =>
        "config.toml:6: auth.federated_token_file: belongs to credential = \"workload_identity\", but this [auth] uses credential = \"managed_identity\"";
    imds_endpoint_with_workload_identity: "credential = \"workload_identity\"\n{IDS}federated_token_file = \"token\"\nmanaged_identity_endpoint = \"http://169.254.169.254/x\"" =>
        "config.toml:9: auth.managed_identity_endpoint: belongs to credential = \"managed_identity\", but this [auth] uses credential = \"workload_identity\"";
    tenant_with_managed_identity: "credential = \"managed_identity\"\ntenant_id = \"t\"" =>
        "config.toml:6: auth.tenant_id: does not apply to credential = \"managed_identity\": the identity endpoint knows the tenant and issues the token (see managed_identity_endpoint)";
    endpoint_with_managed_identity: "credential = \"managed_identity\"\nendpoint = \"v2\"" =>
        "config.toml:6: auth.endpoint: does not apply to credential = \"managed_identity\": the identity endpoint knows the tenant and issues the token (see managed_identity_endpoint)";
    token_url_and_authority_host: "{IDS}client_secret_file = \"secret.txt\"\ntoken_url = \"https://a/t\"\nauthority_host = \"https://login.microsoftonline.us\"" =>
        "config.toml:9: auth.authority_host: set either token_url or authority_host, not both (token_url is the whole URL)";
    unknown_credential: "credential = \"password\"" =>
        "config.toml:5: auth.credential: unknown variant `password`, expected one of `secret`, `certificate`, `workload_identity`, `managed_identity`";
    unknown_endpoint: "endpoint = \"v3\"\n{IDS}client_secret_file = \"secret.txt\"" =>
        "config.toml:5: auth.endpoint: unknown variant `v3`, expected `v1` or `v2`";
    bad_authority_host: "{IDS}client_secret_file = \"secret.txt\"\nauthority_host = \"login.microsoftonline.us\"" =>
        "config.toml:8: auth.authority_host: is not a valid URL (relative URL without a base): \"login.microsoftonline.us\"";
    bad_authority_host_from_the_environment: "{IDS}client_secret_file = \"secret.txt\"", env ("AZURE_AUTHORITY_HOST", "ftp://x") =>
        "config.toml:4: auth.authority_host: must be an http:// or https:// URL with a host (got \"ftp://x\")";
    certificate_file_missing_setting: "credential = \"certificate\"\n{IDS}" =>
        "config.toml:4: auth.client_certificate_file: is required for credential = \"certificate\" (a PEM file with the certificate uploaded to the app registration)";
    certificate_file_missing: "credential = \"certificate\"\n{IDS}client_certificate_file = \"nope.pem\"" =>
        "config.toml:8: auth.client_certificate_file: cannot read nope.pem: No such file or directory (os error 2)";
    key_file_missing: "credential = \"certificate\"\n{IDS}client_certificate_file = \"cert.pem\"\nclient_key_file = \"nope.key\"" =>
        "config.toml:9: auth.client_key_file: cannot read nope.key: No such file or directory (os error 2)";
    certificate_without_its_key: "credential = \"certificate\"\n{IDS}client_certificate_file = \"cert.pem\"" =>
        "config.toml:8: auth.client_certificate_file: cert.pem: no PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----) found (set client_key_file when the key is in a file of its own)";
    not_a_certificate: "credential = \"certificate\"\n{IDS}client_certificate_file = \"key.pem\"" =>
        "config.toml:8: auth.client_certificate_file: key.pem: no PEM certificate (-----BEGIN CERTIFICATE-----) found";
    key_of_another_certificate: "credential = \"certificate\"\n{IDS}client_certificate_file = \"cert.pem\"\nclient_key_file = \"other.key\"" =>
        "config.toml:9: auth.client_key_file: the private key in other.key does not belong to the certificate in cert.pem (thumbprint ", starts;
    not_an_rsa_key: "credential = \"certificate\"\n{IDS}client_certificate_file = \"cert.pem\"\nclient_key_file = \"ec.key\"" =>
        "config.toml:9: auth.client_key_file: ec.key: the private key is not an RSA key in PKCS#8 or PKCS#1 form";
    expired_certificate: "credential = \"certificate\"\n{IDS}client_certificate_file = \"expired.pem\"" =>
        "config.toml:8: auth.client_certificate_file: the certificate CN=msfb-seat-exporter (thumbprint ", starts;
    federated_file_unset: "credential = \"workload_identity\"\ntenant_id = \"t\"\nclient_id = \"c\"" =>
        "config.toml:4: auth.federated_token_file: is required for credential = \"workload_identity\" (or AZURE_FEDERATED_TOKEN_FILE in the environment, as the workload identity webhook sets it)";
    federated_file_unreadable: "credential = \"workload_identity\"\n{IDS}federated_token_file = \"nope\"" =>
        "config.toml:8: auth.federated_token_file: cannot read the federated token file nope: No such file or directory (os error 2)";
    federated_file_empty: "credential = \"workload_identity\"\n{IDS}federated_token_file = \"empty\"" =>
        "config.toml:8: auth.federated_token_file: the federated token file empty is empty";
    workload_identity_without_client_id: "credential = \"workload_identity\"\ntenant_id = \"t\"\nfederated_token_file = \"token\"" =>
        "config.toml:4: auth.client_id: is required (or AZURE_CLIENT_ID in the environment, as the workload identity webhook sets it)";
    missing_client_id: "tenant_id = \"t\"\nclient_secret_file = \"secret.txt\"" =>
        "config.toml:4: auth.client_id: missing field `client_id`";
    bad_proxy_url: "{IDS}client_secret_file = \"secret.txt\"", store "proxy_url = \"socks5://proxy:1080\"" =>
        "config.toml:3: store.proxy_url: proxy_url must be an http:// or https:// proxy URL with a host (got socks5://proxy:1080)";
    bad_proxy_environment: "{IDS}client_secret_file = \"secret.txt\"", env ("HTTPS_PROXY", "ftp://proxy") =>
        "config.toml:1: store.proxy_url: the environment variable HTTPS_PROXY must be an http:// or https:// proxy URL with a host (got ftp://proxy)";
    ca_file_without_certificates: "{IDS}client_secret_file = \"secret.txt\"", store "ca_file = \"secret.txt\"" =>
        "config.toml:3: store.ca_file: secret.txt holds no PEM certificate (-----BEGIN CERTIFICATE-----)";
}

#[test]
fn a_certificate_ending_within_14_days_is_accepted_with_a_warning_and_debug_shows_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = rsa_pair(3);
    let both = write(dir.path(), "both.pem", &format!("{cert}{key}"));
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&both, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[auth]\ncredential = \"certificate\"\n{IDS}client_certificate_file = \"both.pem\"\n\n{}",
        product(&[ALICE])
    );
    let path = write(dir.path(), "config.toml", &text);
    let c = load_with_env(&path, &[]).expect("valid");
    let warning = c
        .warnings
        .iter()
        .find(|w| {
            w.starts_with("auth.client_certificate_file: the certificate CN=msfb-seat-exporter")
        })
        .unwrap_or_else(|| panic!("{:?}", c.warnings));
    assert!(
        warning.contains("in 2days 23h") || warning.contains("in 3days"),
        "{warning}"
    );
    assert!(
        !c.warnings
            .iter()
            .any(|w| w.contains("can be read by others")),
        "{:?}",
        c.warnings
    );
    let debug = format!("{c:?}");
    let body = key.lines().nth(3).unwrap();
    assert!(!debug.contains(body), "key in Debug: {debug}");
    assert!(!debug.contains("PRIVATE"), "{debug}");
}

// ------------------------------------------------------------ never leaked

/// Runs the binary once (`--once`) with `config` at `level` in `format`:
/// stdout and stderr together.
async fn run_once(config: &Path, level: &str, format: &str) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
        .arg(format!("--config.file={}", config.display()))
        .arg("--once")
        .arg(format!("--log.level={level}"))
        .arg(format!("--log.format={format}"))
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("AZURE_AUTHORITY_HOST")
        .output()
        .await
        .expect("binary runs");
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The key, every assertion (a JWT starts `eyJ`), the federated token and
/// every access token stay out of the output at every level and in both
/// formats: with a token endpoint that echoes the assertion back in its
/// error, with a 401 that forces a second fetch, and on success; and out of
/// the pages and `Debug`.
#[tokio::test]
async fn key_assertion_federated_token_and_access_token_never_leave_the_process() {
    const FEDERATED: &str = "eyJfederated-marker-7d1e";
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = rsa_pair(30);
    fake.trust_certificate(&cert).unwrap();
    fake.accept_federated_token(FEDERATED);
    let both = write(dir.path(), "both.pem", &format!("{cert}{key}"));
    write(dir.path(), "token", FEDERATED);
    let key_line = key.lines().nth(5).unwrap().to_owned();
    let workload = workload_identity_auth(&fake);
    let leaked = |text: &str| -> Option<&'static str> {
        [
            (key_line.as_str(), "the key"),
            ("PRIVATE KEY", "the key"),
            ("eyJ", "an assertion or the federated token"),
            ("fake-token-", "an access token"),
        ]
        .into_iter()
        .find(|(needle, _)| text.contains(needle))
        .map(|(_, what)| what)
    };
    for auth in [certificate_auth(&fake, "v2", &both, None), workload] {
        let e = exporter(&fake.base_url(), dir.path(), &auth, "", &[]).unwrap();
        assert_eq!(leaked(&format!("{:?}", e.generation().config)), None);
        for level in ["debug", "info", "warn", "error"] {
            for format in ["logfmt", "json"] {
                // A token endpoint that echoes what it was sent, then one
                // whose token the Store refuses once.
                fake.add_fault(fake_store::Fault::times(
                    1,
                    fake_store::Match::Token,
                    fake_store::Action::Status {
                        code: 400,
                        body: format!(
                            "{{\"error\":\"invalid_client\",\"error_description\":\
                             \"AADSTS700027: bad assertion {FEDERATED} eyJhbGciOiJSUzI1NiJ9\"}}"
                        ),
                        retry_after: None,
                    },
                ));
                let refused = run_once(&dir.path().join("config.toml"), level, format).await;
                if level != "error" {
                    assert!(refused.contains("AADSTS700027"), "logged: {refused}");
                }
                fake.add_fault(fake_store::Fault::times(
                    1,
                    fake_store::Match::AllSeats,
                    fake_store::Fault::status(401),
                ));
                let served = run_once(&dir.path().join("config.toml"), level, format).await;
                assert!(served.contains("msfb_seat_active{"), "{served}");
                for text in [&refused, &served] {
                    assert_eq!(leaked(text), None, "{level} {format}: {text}");
                }
            }
        }
    }
    // The pages after a refused and an accepted assertion.
    let e = exporter(
        &fake.base_url(),
        dir.path(),
        &certificate_auth(&fake, "v1", &both, None),
        "",
        &[],
    )
    .unwrap();
    fake.reject_credential(CredentialKind::Certificate);
    cycle(&e).await;
    fake.accept_credential(CredentialKind::Certificate);
    fake.revoke_tokens();
    cycle(&e).await;
    for path in ["/", "/status", "/status?format=json", "/metrics"] {
        let (_, page) = crate::util::request(&e, "GET", path).await;
        assert_eq!(leaked(&page), None, "{path}: {page}");
    }
}

#[test]
fn a_key_file_others_can_read_is_used_with_a_warning() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = rsa_pair(30);
    write(dir.path(), "cert.pem", &cert);
    let key_path = write(dir.path(), "key.pem", &key);
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!(
        "[auth]\ncredential = \"certificate\"\n{IDS}client_certificate_file = \"cert.pem\"\n\
         client_key_file = \"key.pem\"\n\n{}",
        product(&[ALICE])
    );
    let path = write(dir.path(), "config.toml", &text);
    let c = load_with_env(&path, &[]).expect("valid");
    let prefix = format!("{}/", dir.path().display());
    let warnings: Vec<String> = c.warnings.iter().map(|w| w.replace(&prefix, "")).collect();
    assert_eq!(
        warnings,
        [
            "auth.client_key_file: key.pem has mode 0644: other users can read it; restrict it to the exporter's user (chmod 600)"
        ]
    );
}

/// An expired certificate stops `--config.check` (exit 2, file, line and
/// key) and a reload, which keeps the configuration in force.
#[tokio::test]
async fn an_expired_certificate_fails_config_check_and_reload() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = rsa_pair(30);
    fake.trust_certificate(&cert).unwrap();
    let both = write(dir.path(), "both.pem", &format!("{cert}{key}"));
    let auth = certificate_auth(&fake, "v1", &both, None);
    let e = exporter(&fake.base_url(), dir.path(), &auth, "", &[]).unwrap();
    cycle(&e).await;
    let (expired, expired_key) = rsa_pair(-2);
    write(dir.path(), "both.pem", &format!("{expired}{expired_key}"));
    let err = e.reload().await.expect_err("refused").to_string();
    assert!(
        err.contains("auth.client_certificate_file: the certificate CN=msfb-seat-exporter")
            && err.contains("expired at"),
        "{err}"
    );
    let (status, _) = crate::util::request(&e, "POST", "/-/reload").await;
    assert_eq!(status, 500);
    let m = scrape(&e).await;
    assert_eq!(
        m.value("msfb_seat_exporter_config_last_reload_successful", &[]),
        Some(0.0)
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
        .arg(format!(
            "--config.file={}",
            dir.path().join("config.toml").display()
        ))
        .arg("--config.check")
        .env_remove("AZURE_AUTHORITY_HOST")
        .output()
        .await
        .unwrap();
    let stderr = assert_refused(&out, "auth.client_certificate_file: the certificate");
    assert!(stderr.contains("config.toml:"), "{stderr}");
}

/// A token that expires at once (`expires_in` 0) is refreshed before the
/// next check, without a 401, for every credential and endpoint: the
/// certificate signs a fresh assertion (a new `jti`, or the fake refuses a
/// replay), workload identity re-reads its file, managed identity asks IMDS.
#[tokio::test]
async fn an_expired_token_is_refreshed_for_every_credential_and_endpoint() {
    for (kind, endpoint) in [
        ("certificate", "v1"),
        ("certificate", "v2"),
        ("workload_identity", "v1"),
        ("workload_identity", "v2"),
        ("managed_identity", "imds"),
    ] {
        let fake = fake().await;
        let dir = tempfile::tempdir().unwrap();
        let mut env = Vec::new();
        let host = format!("{}/", fake.authority_host());
        let token_file = write(dir.path(), "azure-identity-token", "eyJfederated-one");
        let file = token_file.display().to_string();
        let auth = match kind {
            "certificate" => {
                let (cert, key) = rsa_pair(90);
                fake.trust_certificate(&cert).unwrap();
                let cert_path = write(dir.path(), "cert.pem", &cert);
                let key_path = write(dir.path(), "key.pem", &key);
                certificate_auth(&fake, endpoint, &cert_path, Some(&key_path))
            }
            "workload_identity" => {
                fake.accept_federated_token("eyJfederated-one");
                env = vec![
                    ("AZURE_CLIENT_ID", fake_store::CLIENT_ID),
                    ("AZURE_TENANT_ID", fake_store::TENANT),
                    ("AZURE_FEDERATED_TOKEN_FILE", file.as_str()),
                    ("AZURE_AUTHORITY_HOST", host.as_str()),
                ];
                format!("credential = \"workload_identity\"\nendpoint = \"{endpoint}\"")
            }
            _ => format!(
                "credential = \"managed_identity\"\nmanaged_identity_endpoint = \"{}\"\n",
                fake.imds_url()
            ),
        };
        fake.set_expires_in_raw(Some(serde_json::json!(0)));
        let e = exporter(&fake.base_url(), dir.path(), &auth, "", &env).unwrap();
        cycle(&e).await;
        let first = fake.grants().len();
        assert!(first >= 1, "{kind}/{endpoint}: {:?}", fake.last_refusal());
        cycle(&e).await;
        let m = scrape(&e).await;
        assert_eq!(
            m.success(ALICE),
            Some(1.0),
            "{kind}/{endpoint}: {:?}",
            fake.last_refusal()
        );
        assert!(
            fake.grants().len() > first,
            "{kind}/{endpoint}: the expired token was used again"
        );
        assert_eq!(fake.last_refusal(), None, "{kind}/{endpoint}");
    }
}
