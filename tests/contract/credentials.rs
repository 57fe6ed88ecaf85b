//! The client certificate exactly as the docs tell operators to make it
//! (`openssl req -x509 …`), with its key as openssl writes it (PKCS#8) and
//! converted to PKCS#1, in two files and in one, against the fake Store;
//! and the Kubernetes workload identity variant against the StatefulSet.

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

/// `contrib/kubernetes/workload-identity.yaml` is the shipped ConfigMap and
/// StatefulSet with exactly the documented differences, and its
/// configuration passes `--config.check` with what the webhook injects.
#[test]
fn the_workload_identity_variant_differs_from_the_statefulset_only_where_documented() {
    use crate::util::programs::{repo, yaml_documents};
    let docs = yaml_documents(&repo("contrib/kubernetes/workload-identity.yaml"));
    let kind = |docs: &[serde_json::Value], k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
            .clone()
    };
    let account = kind(&docs, "ServiceAccount");
    let mut sts = kind(&docs, "StatefulSet");
    let config = kind(&docs, "ConfigMap");
    assert!(
        account["metadata"]["annotations"]["azure.workload.identity/client-id"].is_string(),
        "{account}"
    );
    let pod = &mut sts["spec"]["template"];
    assert_eq!(
        pod["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    assert_eq!(
        pod["spec"]["serviceAccountName"],
        account["metadata"]["name"]
    );
    // Undo the documented differences: what is left is the shipped file.
    let labels = pod["metadata"]["labels"].as_object_mut().unwrap();
    labels.remove("azure.workload.identity/use");
    pod["spec"]
        .as_object_mut()
        .unwrap()
        .remove("serviceAccountName");
    let base = yaml_documents(&repo("contrib/kubernetes/statefulset.yaml"));
    let mut base = kind(&base, "StatefulSet");
    let base_pod = &mut base["spec"]["template"]["spec"];
    let container = &mut base_pod["containers"][0];
    container["env"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["name"] != "CREDENTIALS_DIRECTORY");
    container["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["name"] != "secret");
    base_pod["volumes"]
        .as_array_mut()
        .unwrap()
        .retain(|v| v.get("secret").is_none());
    assert_eq!(sts, base, "the variant drifted from statefulset.yaml");
    let shipped = yaml_documents(&repo("contrib/kubernetes/configmap.yaml"));
    let shipped = kind(&shipped, "ConfigMap");
    assert_eq!(config["metadata"], shipped["metadata"]);
    assert_eq!(config["data"]["users.txt"], shipped["data"]["users.txt"]);
    // Its configuration, with what the webhook injects.
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in config["data"].as_object().unwrap() {
        write(dir.path(), file, text.as_str().unwrap());
    }
    let token = write(dir.path(), "azure-identity-token", "eyJfederated");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
        .arg(format!(
            "--config.file={}",
            dir.path().join("config.toml").display()
        ))
        .arg("--config.check")
        .env("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000000")
        .env("AZURE_TENANT_ID", "contoso.onmicrosoft.com")
        .env("AZURE_FEDERATED_TOKEN_FILE", &token)
        .env("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("config OK: 4 targets"));
}
