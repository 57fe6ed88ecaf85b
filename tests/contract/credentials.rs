//! The client certificate exactly as the README tells operators to make it
//! (`openssl req -x509 …`), with its key as openssl writes it (PKCS#8) and
//! converted to PKCS#1, in two files and in one, against the fake Store.

use crate::util::entra::{ALICE, certificate_auth, cycle, exporter, fake, scrape, write};
use crate::util::programs::openssl;

#[tokio::test]
async fn the_documented_openssl_certificate_works_with_pkcs8_and_pkcs1_keys_in_one_file_or_two() {
    let dir = tempfile::tempdir().unwrap();
    // The command the README gives.
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-sha256",
            "-nodes",
            "-days",
            "365",
            "-subj",
            "/CN=msfb_seat_exporter",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ],
    );
    openssl(
        dir.path(),
        &[
            "rsa",
            "-in",
            "key.pem",
            "-traditional",
            "-out",
            "key-pkcs1.pem",
        ],
    );
    let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
    assert!(read("key.pem").contains("BEGIN PRIVATE KEY"));
    assert!(read("key-pkcs1.pem").contains("BEGIN RSA PRIVATE KEY"));
    write(
        dir.path(),
        "both.pem",
        &(read("cert.pem") + &read("key-pkcs1.pem")),
    );
    for (cert, key) in [
        ("cert.pem", Some("key.pem")),
        ("cert.pem", Some("key-pkcs1.pem")),
        ("both.pem", None),
    ] {
        let fake = fake().await;
        fake.trust_certificate(&read("cert.pem")).unwrap();
        let key = key.map(|k| dir.path().join(k));
        let auth = certificate_auth(&fake, "v1", &dir.path().join(cert), key.as_deref());
        let e = exporter(&fake.base_url(), dir.path(), &auth, "", &[]).expect("valid");
        cycle(&e).await;
        assert_eq!(scrape(&e).await.active(ALICE), Some(1.0), "{cert} {key:?}");
    }
}
