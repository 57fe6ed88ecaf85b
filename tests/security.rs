//! Web security (SPEC §7): HTTPS with a certificate re-read when its files
//! change, checked with a real TLS client (reqwest/rustls trusting only the
//! test certificates), and bcrypt basic auth on every path but
//! `/-/healthy`.

use axum::body::Body;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use msfb_seat_exporter::exporter::Exporter;
use msfb_seat_exporter::fake_store::FakeSeat;
use tower::ServiceExt as _;

use crate::util::process::assert_refused;
use crate::util::{P, S, Served, Setup, product};

/// A self-signed certificate for `localhost` and its key, as PEM.
struct Pair {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn pair() -> Pair {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    Pair {
        cert_pem: c.cert.pem(),
        key_pem: c.signing_key.serialize_pem(),
        der: c.cert.der().to_vec(),
    }
}

/// Replaces a file the way renewal tools do: write aside, then rename.
fn replace(path: &std::path::Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// A client that trusts exactly `trusted`, resolves `localhost` to the
/// server, opens a new connection per request and reports the server's
/// certificate.
fn client(served: &Served, trusted: &[&Pair]) -> reqwest::Client {
    let certs = trusted
        .iter()
        .map(|p| reqwest::Certificate::from_pem(p.cert_pem.as_bytes()).unwrap());
    reqwest::Client::builder()
        .tls_certs_only(certs)
        .tls_info(true)
        .resolve("localhost", served.addr)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// GET `https://localhost:PORT{path}`: status and the certificate the
/// server presented.
async fn get_tls(
    client: &reqwest::Client,
    served: &Served,
    path: &str,
    auth: Option<(&str, &str)>,
) -> Result<(u16, Vec<u8>, String), reqwest::Error> {
    let mut req = client.get(format!("https://localhost:{}{path}", served.addr.port()));
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    let resp = req.send().await?;
    let cert = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info")
        .to_vec();
    let status = resp.status().as_u16();
    Ok((status, cert, resp.text().await?))
}

async fn tls_served(first: &Pair, web_extra: &str) -> Served {
    let served = Served::start(Setup {
        web: &format!("tls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"\n{web_extra}"),
        metrics: "",
        products: &product(&["alice@contoso.com"]),
        files: vec![
            ("tls.crt", first.cert_pem.clone().into_bytes()),
            ("tls.key", first.key_pem.clone().into_bytes()),
        ],
    })
    .await;
    served
        .fake
        .set_seat(P, S, "alice@contoso.com", FakeSeat::active());
    served.cycle().await;
    served
}

#[tokio::test]
async fn tls_serves_https_only_and_picks_up_a_renewed_certificate() {
    let (one, two) = (pair(), pair());
    let served = tls_served(&one, "").await;
    let both = client(&served, &[&one, &two]);

    let (status, cert, body) = get_tls(&both, &served, "/metrics", None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(cert, one.der);
    assert!(
        body.contains("msfb_seat_active{product_id=\"9NBLGGH4R315\""),
        "{body}"
    );

    // The port speaks only TLS: a plain HTTP request gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("{}/metrics", served.url()))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // Renewal: the next connection already gets the new certificate,
    // without a restart or a reload.
    replace(&served.path("tls.key"), &two.key_pem);
    replace(&served.path("tls.crt"), &two.cert_pem);
    let (status, cert, _) = get_tls(&both, &served, "/-/healthy", None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(cert, two.der, "the renewed certificate is served");
    // And a client that only trusts the old one now refuses the server:
    // the verification is real.
    let only_one = client(&served, &[&one]);
    assert!(
        get_tls(&only_one, &served, "/-/healthy", None)
            .await
            .is_err()
    );

    // A broken renewal (a key that is not a key) keeps the good pair.
    std::fs::write(served.path("tls.key"), "garbage").unwrap();
    let (status, cert, _) = get_tls(&both, &served, "/-/healthy", None).await.unwrap();
    assert_eq!((status, cert), (200, two.der.clone()));
}

fn bcrypt_users(users: &[(&str, &str)]) -> String {
    let entries: Vec<String> = users
        .iter()
        .map(|(u, p)| format!("{u} = {:?}", bcrypt::hash(p, 4).unwrap()))
        .collect();
    format!("basic_auth_users = {{ {} }}\n", entries.join(", "))
}

/// A request through the real router with optional basic credentials.
async fn send(
    exporter: &Exporter,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> (u16, http::HeaderMap, String) {
    let router = msfb_seat_exporter::web::router(exporter.clone());
    let mut req = http::Request::builder().method(method).uri(path);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = router
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn basic_auth_guards_every_path_but_healthy() {
    let served = Served::start(Setup {
        web: &bcrypt_users(&[("prometheus", "s3cret"), ("grafana", "other")]),
        metrics: "",
        products: &product(&["alice@contoso.com"]),
        files: vec![],
    })
    .await;
    let e = &served.exporter;
    let good = basic("prometheus", "s3cret");
    let wrong = [
        None,
        Some(basic("prometheus", "wrong")),
        Some(basic("prometheus", "other")),
        Some(basic("nobody", "s3cret")),
        Some(basic("", "")),
        Some("Basic not-base64!".to_owned()),
        Some("Bearer s3cret".to_owned()),
    ];
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/metrics"),
        ("GET", "/status"),
        ("GET", "/status?format=json"),
        ("GET", "/-/ready"),
        ("POST", "/-/reload"),
        ("GET", "/no-such-page"),
    ] {
        for auth in &wrong {
            let (status, headers, body) = send(e, method, path, auth.as_deref()).await;
            assert_eq!(status, 401, "{method} {path} with {auth:?}");
            assert_eq!(
                headers["www-authenticate"],
                "Basic realm=\"msfb_seat_exporter\", charset=\"UTF-8\""
            );
            assert_eq!(body, "unauthorized\n");
        }
        let (status, _, _) = send(e, method, path, Some(&good)).await;
        assert_ne!(status, 401, "{method} {path} with good credentials");
    }
    assert_eq!(send(e, "GET", "/-/healthy", None).await.0, 200);
    let (status, _, body) = send(e, "GET", "/metrics", Some(&basic("grafana", "other"))).await;
    assert_eq!(status, 200);
    assert!(body.contains("msfb_seats{"), "{body}");
    // Credentials never show in what the exporter serves.
    assert!(!body.contains("s3cret") && !body.contains("$2b$"));
}

#[tokio::test]
async fn a_reload_changes_the_users() {
    let served = Served::start(Setup {
        web: &bcrypt_users(&[("prometheus", "old")]),
        metrics: "",
        products: &product(&["alice@contoso.com"]),
        files: vec![],
    })
    .await;
    let e = &served.exporter;
    assert_eq!(
        send(e, "GET", "/metrics", Some(&basic("prometheus", "old")))
            .await
            .0,
        200
    );
    let config = served.path("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let start = text.find("basic_auth_users").unwrap();
    let end = start + text[start..].find('\n').unwrap() + 1;
    let rotated = format!(
        "{}{}{}",
        &text[..start],
        bcrypt_users(&[("prometheus", "new")]),
        &text[end..]
    );
    std::fs::write(&config, rotated).unwrap();
    let (status, _, body) = send(e, "POST", "/-/reload", Some(&basic("prometheus", "old"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        send(e, "GET", "/metrics", Some(&basic("prometheus", "old")))
            .await
            .0,
        401
    );
    assert_eq!(
        send(e, "GET", "/metrics", Some(&basic("prometheus", "new")))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn basic_auth_over_tls_with_a_real_client() {
    let one = pair();
    let served = tls_served(&one, &bcrypt_users(&[("prometheus", "s3cret")])).await;
    let c = client(&served, &[&one]);
    let (status, _, _) = get_tls(&c, &served, "/metrics", None).await.unwrap();
    assert_eq!(status, 401);
    let (status, _, _) = get_tls(&c, &served, "/metrics", Some(("prometheus", "nope")))
        .await
        .unwrap();
    assert_eq!(status, 401);
    let (status, _, body) = get_tls(&c, &served, "/metrics", Some(("prometheus", "s3cret")))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("msfb_seat_active{"));
    let (status, _, _) = get_tls(&c, &served, "/-/healthy", None).await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn unusable_tls_files_are_a_configuration_error() {
    let fake = msfb_seat_exporter::fake_store::FakeStore::start()
        .await
        .unwrap();
    let dir = crate::util::temp_dir(&[
        ("secret", msfb_seat_exporter::fake_store::CLIENT_SECRET),
        ("tls.crt", "not a certificate"),
        ("tls.key", "not a key"),
    ]);
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[web]\ntls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"\n\n{}",
            fake.config_toml("secret", &product(&["a@b.c"]))
        ),
    )
    .unwrap();
    for mode in [&["--config.check"][..], &[][..]] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
            .args(mode)
            .arg(format!("--config.file={}", config.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .output()
            .await
            .unwrap();
        let expected = format!(
            "{}: no PEM certificate found",
            dir.path().join("tls.crt").display()
        );
        assert_refused(&out, &expected);
    }
}
