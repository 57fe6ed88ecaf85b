//! `--web.config.file` (SPEC §14): the exporter-toolkit web configuration
//! with a real TLS client (reqwest/rustls) — each `client_auth_type` with
//! a good, a wrong-CA and a missing client certificate, TLS versions, the
//! configured headers on every answer, and a reload that swaps the
//! certificate and adds a user without a restart. Certificates come from
//! rcgen.

use std::path::Path;
use std::process::Output;

use msfb_seat_exporter::fake_store::FakeSeat;

use crate::util::process::assert_refused;
use crate::util::programs::text;
use crate::util::{P, S, Served, Setup, product};

/// A CA, and certificates it signs.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A certificate with its key, as PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `name` (a server's DNS name, or a client's).
    fn sign(&self, name: &str, client: bool) -> Leaf {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The bcrypt hash of `password` (cost 4: these tests are about the
/// configuration, not about bcrypt's cost).
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

/// An exporter serving with `web_yml` as its web configuration, with the
/// server certificate of `server_ca` and the client CA `client_ca` on disk
/// as tls.crt, tls.key and clients.crt.
async fn serve(web_yml: &str, server: &Leaf, client_ca: &Ca) -> Served {
    let served = Served::start_with(
        Setup {
            web: "",
            metrics: "",
            products: &product(&["alice@contoso.com"]),
            files: vec![
                ("web.yml", web_yml.as_bytes().to_vec()),
                ("tls.crt", server.cert_pem.clone().into_bytes()),
                ("tls.key", server.key_pem.clone().into_bytes()),
                ("clients.crt", client_ca.pem().into_bytes()),
            ],
        },
        Some("web.yml"),
    )
    .await;
    served
        .fake
        .set_seat(P, S, "alice@contoso.com", FakeSeat::active());
    served
}

/// A client trusting `server_ca` only, presenting `identity` if given,
/// speaking at most `max_tls`.
fn client(served: &Served, server_ca: &Ca, identity: Option<&Leaf>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(server_ca.pem().as_bytes()).unwrap()])
        .resolve("localhost", served.addr)
        .pool_max_idle_per_host(0);
    if let Some(leaf) = identity {
        let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// GET `https://localhost:PORT{path}`: the status, or the error's chain.
async fn get(client: &reqwest::Client, served: &Served, path: &str) -> Result<u16, String> {
    let url = format!("https://localhost:{}{path}", served.addr.port());
    match client.get(url).send().await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => {
            let mut chain = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                source = s.source();
            }
            Err(chain)
        }
    }
}

fn tls_yml(client_auth: &str, client_ca: bool) -> String {
    let ca = if client_ca {
        "  client_ca_file: clients.crt\n"
    } else {
        ""
    };
    format!(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_auth_type: {client_auth}\n{ca}"
    )
}

#[tokio::test]
async fn each_client_auth_type_with_a_good_a_wrong_and_no_client_certificate() {
    let server_ca = Ca::new("server CA");
    let server = server_ca.sign("localhost", false);
    let clients = Ca::new("client CA");
    let good = clients.sign("prometheus", true);
    let wrong = Ca::new("someone else's CA").sign("prometheus", true);
    // (client_auth_type, client CA configured, good, wrong CA, none)
    for (auth, with_ca, want) in [
        ("NoClientCert", false, [true, true, true]),
        ("RequestClientCert", true, [true, true, true]),
        ("RequireAnyClientCert", true, [true, true, false]),
        ("VerifyClientCertIfGiven", true, [true, false, true]),
        ("RequireAndVerifyClientCert", true, [true, false, false]),
    ] {
        let served = serve(&tls_yml(auth, with_ca), &server, &clients).await;
        for ((who, identity), ok) in [
            ("good", Some(&good)),
            ("wrong CA", Some(&wrong)),
            ("none", None),
        ]
        .into_iter()
        .zip(want)
        {
            let c = client(&served, &server_ca, identity);
            let got = get(&c, &served, "/metrics").await;
            if ok {
                assert_eq!(got, Ok(200), "{auth}, {who} certificate");
            } else {
                assert!(got.is_err(), "{auth}, {who} certificate: {got:?}");
            }
        }
        // Liveness stays open to anyone the TLS layer lets in.
        let c = client(&served, &server_ca, Some(&good));
        assert_eq!(get(&c, &served, "/-/healthy").await, Ok(200), "{auth}");
    }
}

#[tokio::test]
async fn tls_versions_are_held_to_the_configured_range() {
    let server_ca = Ca::new("server CA");
    let server = server_ca.sign("localhost", false);
    let clients = Ca::new("client CA");
    let served = serve(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_version: TLS13\n",
        &server,
        &clients,
    )
    .await;
    let tls12_only = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(server_ca.pem().as_bytes()).unwrap()])
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .resolve("localhost", served.addr)
        .build()
        .unwrap();
    assert!(get(&tls12_only, &served, "/-/healthy").await.is_err());
    let any = client(&served, &server_ca, None);
    assert_eq!(get(&any, &served, "/-/healthy").await, Ok(200));
}

#[tokio::test]
async fn configured_headers_are_on_every_answer() {
    let server_ca = Ca::new("server CA");
    let server = server_ca.sign("localhost", false);
    let yml = format!(
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n    \
         Strict-Transport-Security: max-age=31536000\n    Content-Security-Policy: \"default-src 'none'\"\n\
         basic_auth_users:\n  prometheus: {}\n",
        hash("s3cret")
    );
    let served = serve(&yml, &server, &Ca::new("unused")).await;
    served.cycle().await;
    let http = crate::util::served::client();
    for (method, path, auth, status) in [
        ("GET", "/", true, 200),
        ("GET", "/metrics", true, 200),
        ("GET", "/status", true, 200),
        ("GET", "/status?format=json", true, 200),
        ("GET", "/-/ready", true, 200),
        ("POST", "/-/reload", true, 200),
        ("GET", "/-/healthy", false, 200),
        ("GET", "/nowhere", true, 404),
        ("GET", "/metrics", false, 401),
    ] {
        let mut req = http.request(method.parse().unwrap(), format!("{}{path}", served.url()));
        if auth {
            req = req.basic_auth("prometheus", Some("s3cret"));
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        let h = resp.headers();
        for (name, value) in [
            ("x-frame-options", "deny"),
            ("x-content-type-options", "nosniff"),
            ("strict-transport-security", "max-age=31536000"),
            ("content-security-policy", "default-src 'none'"),
        ] {
            assert_eq!(
                h.get(name).map(|v| v.to_str().unwrap()),
                Some(value),
                "{method} {path}: {name}"
            );
        }
    }
}

/// Rewrites `web.yml` and reloads through `/-/reload` (with `auth`).
async fn rewrite_and_reload(
    served: &Served,
    yml: &str,
    client: &reqwest::Client,
    auth: (&str, &str),
) -> u16 {
    replace(&served.path("web.yml"), yml);
    let url = format!("https://localhost:{}/-/reload", served.addr.port());
    client
        .post(url)
        .basic_auth(auth.0, Some(auth.1))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn replace(path: &Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

#[tokio::test]
async fn a_reload_swaps_the_certificate_and_adds_a_user_without_a_restart() {
    let old_ca = Ca::new("old server CA");
    let old = old_ca.sign("localhost", false);
    let clients = Ca::new("client CA");
    let yml = |cert: &str, key: &str, users: &[(&str, &str)]| {
        let mut y = format!(
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\nbasic_auth_users:\n"
        );
        for (u, h) in users {
            y.push_str(&format!("  {u}: {h}\n"));
        }
        y
    };
    let alice_hash = hash("alice-pw");
    let served = serve(
        &yml("tls.crt", "tls.key", &[("alice", &alice_hash)]),
        &old,
        &clients,
    )
    .await;
    let trusts_old = client(&served, &old_ca, None);
    let metrics = |c: reqwest::Client, user: &'static str, pw: &'static str| {
        let url = format!("https://localhost:{}/metrics", served.addr.port());
        async move {
            c.get(url)
                .basic_auth(user, Some(pw))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        }
    };
    assert_eq!(
        metrics(trusts_old.clone(), "alice", "alice-pw").await,
        Ok(200)
    );
    assert_eq!(metrics(trusts_old.clone(), "bob", "bob-pw").await, Ok(401));

    // New certificate files (from another CA) and a new user, named in
    // the web configuration; the old files stay where they were.
    let new_ca = Ca::new("new server CA");
    let new = new_ca.sign("localhost", false);
    std::fs::write(served.path("new.crt"), &new.cert_pem).unwrap();
    std::fs::write(served.path("new.key"), &new.key_pem).unwrap();
    let bob_hash = hash("bob-pw");
    let next = yml(
        "new.crt",
        "new.key",
        &[("alice", &alice_hash), ("bob", &bob_hash)],
    );
    assert_eq!(
        rewrite_and_reload(&served, &next, &trusts_old, ("alice", "alice-pw")).await,
        200
    );

    let trusts_new = client(&served, &new_ca, None);
    assert_eq!(metrics(trusts_new.clone(), "bob", "bob-pw").await, Ok(200));
    assert_eq!(metrics(trusts_new, "alice", "alice-pw").await, Ok(200));
    assert!(
        metrics(trusts_old.clone(), "alice", "alice-pw")
            .await
            .is_err(),
        "the old certificate is gone"
    );

    // A web configuration with a mistake is refused; what is in force stays.
    let trusts_new = client(&served, &new_ca, None);
    let bad = format!("{next}  carol: not-a-hash\n");
    assert_eq!(
        rewrite_and_reload(&served, &bad, &trusts_new, ("bob", "bob-pw")).await,
        500
    );
    assert_eq!(metrics(trusts_new, "bob", "bob-pw").await, Ok(200));
}

/// Runs `--config.check` on a config for a fake Store with `web` in its
/// `[web]` table and `web_yml` as the web configuration file: its output,
/// with the directory written `DIR`, and the directory (kept).
async fn config_check(web: &str, web_yml: &str) -> (Output, std::path::PathBuf) {
    let fake = msfb_seat_exporter::fake_store::FakeStore::start()
        .await
        .unwrap();
    let server_ca = Ca::new("server CA");
    let server = server_ca.sign("seats.example.net", false);
    let clients = Ca::new("client CA");
    let dir = crate::util::temp_dir(&[
        ("secret", msfb_seat_exporter::fake_store::CLIENT_SECRET),
        ("web-config.yml", web_yml),
        ("tls.crt", &server.cert_pem),
        ("tls.key", &server.key_pem),
        ("clients.crt", &clients.pem()),
    ]);
    let config = dir.path().join("config.toml");
    let toml = fake.config_toml("secret", &product(&["a@b.c"])).replacen(
        "[store]",
        &format!("[web]\n{web}\n\n[store]"),
        1,
    );
    std::fs::write(&config, toml).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
        .arg("--config.check")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--web.config.file={}",
            dir.path().join("web-config.yml").display()
        ))
        .output()
        .await
        .unwrap();
    let dir_as_dir = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace(&dir.path().display().to_string(), "DIR")
            .into_bytes()
    };
    let out = Output {
        status: out.status,
        stdout: dir_as_dir(&out.stdout),
        stderr: dir_as_dir(&out.stderr),
    };
    (out, dir.keep())
}

/// What a fleet's web-config.yml typically holds (the toolkit's keys, as
/// its documentation and the Ansible/NixOS modules write them).
fn fleet_web_config() -> String {
    format!(
        "# Managed by Ansible: prometheus.prometheus.node_exporter role\n\
         tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_auth_type: \"RequireAndVerifyClientCert\"\n  \
         client_ca_file: clients.crt\n  min_version: \"TLS12\"\n  max_version: \"TLS13\"\n  prefer_server_cipher_suites: true\n\
         http_server_config:\n  http2: false\n  headers:\n    Strict-Transport-Security: max-age=31536000; includeSubDomains\n    \
         X-Content-Type-Options: nosniff\n    X-Frame-Options: deny\n    X-XSS-Protection: 1; mode=block\n\
         basic_auth_users:\n  prometheus: '{}'\n",
        hash("s3cret")
    )
}

#[tokio::test]
async fn a_fleet_web_config_is_accepted_unchanged_and_an_unsupported_key_refused_by_name() {
    let (out, dir) = config_check("", &fleet_web_config()).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "config OK: 1 target (1 product, 1 user)\n"
    );
    let _ = std::fs::remove_dir_all(dir);

    // The same file with a toolkit key this exporter does not implement.
    let with_suites = fleet_web_config().replace(
        "  prefer_server_cipher_suites: true\n",
        "  prefer_server_cipher_suites: true\n  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n",
    );
    let (out, dir) = config_check("", &with_suites).await;
    assert_refused(
        &out,
        "DIR/web-config.yml:10: tls_server_config.cipher_suites: is a key of the exporter-toolkit format that msfb_seat_exporter does not support",
    );
    let _ = std::fs::remove_dir_all(dir);

    // A key the toolkit does not know either.
    let typo = fleet_web_config().replace("  client_ca_file:", "  client_ca_files:");
    let (out, dir) = config_check("", &typo).await;
    assert_refused(
        &out,
        "DIR/web-config.yml:6: tls_server_config.client_ca_files: unknown key",
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_web_config_file_and_web_tls_or_users_in_the_toml_do_not_mix() {
    for (web, key, line) in [
        (
            "tls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"",
            "web.tls_cert_file",
            2,
        ),
        (
            "basic_auth_users = { alice = \"$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG\" }",
            "web.basic_auth_users",
            2,
        ),
    ] {
        let (out, dir) = config_check(
            web,
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
        )
        .await;
        assert_refused(
            &out,
            &format!(
                "DIR/config.toml:{line}: {key}: cannot be used together with --web.config.file (DIR/web-config.yml)"
            ),
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
