//! `contrib/kubernetes/` (issue 5): the manifests parse as YAML, agree with
//! each other (names, selectors, ports, shard count = replicas), and every
//! pod's command line, with the shipped configuration, passes the
//! exporter's own `--config.check`.
//!
//! The core objects, as shipped and as `kubectl kustomize` renders them,
//! pass `kubernetes-validate --strict` (the Kubernetes schemas); the
//! Operator's `ServiceMonitor` and `PrometheusRule`, which those schemas do
//! not cover, are checked for the fields their CRDs require and for what
//! they must say (the alerting job; exactly the rules of
//! `contrib/prometheus/alerts.yml`).
//!
//! YAML is read by PyYAML (Debian's `python3-yaml`, which `scripts/test.sh`
//! installs, as it installs kubectl and puts kubernetes-validate in the test
//! venv); without them these tests fail, never skip. Debian's promtool is
//! built without Kubernetes service discovery, so the scrape configuration
//! is checked here by reading it, not by promtool.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::programs::{kubectl_kustomize, kubernetes_validate, repo, text, yaml_documents};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/kubernetes")
}

/// Every YAML document of a file of `contrib/kubernetes/`, as JSON.
fn load(name: &str) -> Vec<Value> {
    yaml_documents(&dir().join(name))
}

fn one(name: &str, kind: &str) -> Value {
    let docs = load(name);
    assert_eq!(docs.len(), 1, "{name}: one document");
    assert_eq!(docs[0]["kind"], kind, "{name}");
    docs[0].clone()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Whether every label of `selector` is in `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("selector map");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

struct Manifests {
    config: Value,
    service: Value,
    sts: Value,
}

fn manifests() -> Manifests {
    Manifests {
        config: one("configmap.yaml", "ConfigMap"),
        service: one("service.yaml", "Service"),
        sts: one("statefulset.yaml", "StatefulSet"),
    }
}

impl Manifests {
    fn container(&self) -> &Value {
        let containers = self.sts["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers");
        assert_eq!(containers.len(), 1);
        &containers[0]
    }

    fn env(&self, name: &str) -> &Value {
        self.container()["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no env {name}"))
    }

    fn args(&self) -> Vec<String> {
        self.container()["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| str_of(a).to_owned())
            .collect()
    }
}

#[test]
fn kustomization_lists_every_manifest() {
    let k = one("kustomization.yaml", "Kustomization");
    let listed: Vec<&str> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(
        listed,
        ["configmap.yaml", "service.yaml", "statefulset.yaml"]
    );
    for file in listed {
        assert!(dir().join(file).is_file(), "{file}");
    }
}

#[test]
fn the_statefulset_shards_by_pod_ordinal() {
    let m = manifests();
    let spec = &m.sts["spec"];
    // The shard index is the ordinal, through the downward API.
    assert_eq!(
        m.env("SHARD_INDEX")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    let args = m.args();
    assert!(args.contains(&"--shard.index=$(SHARD_INDEX)".to_owned()));
    assert!(args.contains(&"--shard.count=$(SHARD_COUNT)".to_owned()));
    // One shard per replica.
    let count: u64 = str_of(&m.env("SHARD_COUNT")["value"]).parse().unwrap();
    assert_eq!(spec["replicas"].as_u64(), Some(count));
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    // Names, selectors and ports agree.
    let labels = &spec["template"]["metadata"]["labels"];
    assert!(selects(&spec["selector"]["matchLabels"], labels));
    assert!(selects(&m.service["spec"]["selector"], labels));
    assert_eq!(spec["serviceName"], m.service["metadata"]["name"]);
    assert_eq!(m.service["spec"]["clusterIP"], "None");
    let port = &m.container()["ports"][0];
    let service_port = &m.service["spec"]["ports"][0];
    assert_eq!(service_port["targetPort"], port["name"]);
    assert_eq!(service_port["port"], port["containerPort"]);
    let toml = str_of(&m.config["data"]["config.toml"]);
    assert!(toml.contains(&format!("listen_address = \":{}\"", port["containerPort"])));
    // Probes on the exporter's health and readiness endpoints.
    let c = m.container();
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/-/ready");
    // Locked down like the systemd unit.
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(
        spec["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
}

/// Every pod's command line, with `$(VAR)` expanded as Kubernetes does and
/// the volumes laid out in a temporary directory, passes `--config.check`.
#[test]
fn every_pod_command_line_passes_config_check() {
    let m = manifests();
    let count: u32 = str_of(&m.env("SHARD_COUNT")["value"]).parse().unwrap();
    let root = tempfile::tempdir().unwrap();
    // The volumes as mounted.
    let mounts = m.container()["volumeMounts"].as_array().expect("mounts");
    let volumes = m.sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes");
    let mut renamed: Vec<(String, String)> = Vec::new();
    for mount in mounts {
        let at = str_of(&mount["mountPath"]);
        let local = root.path().join(at.trim_start_matches('/'));
        std::fs::create_dir_all(&local).unwrap();
        let claims = m.sts["spec"]["volumeClaimTemplates"].as_array();
        if claims.is_some_and(|c| c.iter().any(|t| t["metadata"]["name"] == mount["name"])) {
            // A volume claim per pod: an empty directory at first.
            renamed.push((at.to_owned(), local.to_str().unwrap().to_owned()));
            continue;
        }
        let volume = volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("volume of the mount");
        if volume.get("configMap").is_some() {
            assert_eq!(volume["configMap"]["name"], m.config["metadata"]["name"]);
            for (file, text) in m.config["data"].as_object().expect("data") {
                std::fs::write(local.join(file), str_of(text)).unwrap();
            }
        } else {
            assert!(volume.get("secret").is_some(), "{volume}");
            std::fs::write(local.join("client_secret"), "s3cret\n").unwrap();
        }
        renamed.push((at.to_owned(), local.to_str().unwrap().to_owned()));
    }
    let local_path = |p: &str| {
        renamed
            .iter()
            .find(|(at, _)| p.starts_with(at.as_str()))
            .map_or_else(|| p.to_owned(), |(at, local)| p.replacen(at, local, 1))
    };
    let credentials = local_path(str_of(&m.env("CREDENTIALS_DIRECTORY")["value"]));
    for index in 0..count {
        let args: Vec<String> = m
            .args()
            .iter()
            .map(|a| {
                let a = a
                    .replace("$(SHARD_INDEX)", &index.to_string())
                    .replace("$(SHARD_COUNT)", &count.to_string());
                match a.split_once('=') {
                    Some((flag, path)) if path.starts_with('/') => {
                        format!("{flag}={}", local_path(path))
                    }
                    _ => a,
                }
            })
            .collect();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
            .args(&args)
            .arg("--config.check")
            .env("CREDENTIALS_DIRECTORY", &credentials)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shard {index}: {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("config OK: 4 targets"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn the_scrape_config_keeps_every_shard_under_the_alerting_job() {
    let m = manifests();
    let docs = load("prometheus.yml");
    let jobs = docs[0]["scrape_configs"]
        .as_array()
        .expect("scrape_configs");
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    // contrib/prometheus/alerts.yml looks for this job.
    assert_eq!(job["job_name"], "msfb_seat_exporter");
    assert_eq!(job["kubernetes_sd_configs"][0]["role"], "endpoints");
    let relabel = job["relabel_configs"].as_array().expect("relabel_configs");
    let keep = relabel
        .iter()
        .find(|r| r["action"] == "keep")
        .expect("a keep rule");
    assert_eq!(
        keep["regex"],
        format!(
            "{};{}",
            str_of(&m.service["metadata"]["name"]),
            str_of(&m.service["spec"]["ports"][0]["name"])
        )
    );
    assert!(relabel.iter().any(|r| r["target_label"] == "shard"
        && r["source_labels"][0] == "__meta_kubernetes_pod_label_apps_kubernetes_io_pod_index"));
}

#[test]
fn core_manifests_and_their_kustomize_rendering_pass_the_kubernetes_schemas() {
    let files: Vec<PathBuf> = ["configmap.yaml", "service.yaml", "statefulset.yaml"]
        .iter()
        .map(|f| dir().join(f))
        .collect();
    let rendered = tempfile::tempdir().unwrap();
    let out = kubectl_kustomize(&dir());
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        text(&out.stderr)
    );
    let all = rendered.path().join("rendered.yaml");
    std::fs::write(&all, &out.stdout).unwrap();
    let kinds: Vec<Value> = yaml_documents(&all)
        .iter()
        .map(|d| d["kind"].clone())
        .collect();
    assert_eq!(kinds, ["ConfigMap", "Service", "StatefulSet"]);
    let mut paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    paths.push(&all);
    let out = kubernetes_validate(&paths);
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{report}");
    // One "passed" line per object: nothing was left unchecked.
    assert_eq!(
        report.matches(" passed for resource ").count(),
        6,
        "{report}"
    );
}

#[test]
fn the_servicemonitor_scrapes_every_shard_as_the_alerting_job() {
    let m = manifests();
    let sm = one("servicemonitor.yaml", "ServiceMonitor");
    // The fields the Operator's CRD requires, and what they must say.
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert!(!str_of(&sm["metadata"]["name"]).is_empty());
    let spec = &sm["spec"];
    assert!(
        selects(
            &spec["selector"]["matchLabels"],
            &m.service["metadata"]["labels"]
        ),
        "the selector must pick the Service"
    );
    // The job name comes from a Service label and is the one the rules'
    // MsfbExporterDown matches.
    let job_label = str_of(&spec["jobLabel"]);
    assert_eq!(
        m.service["metadata"]["labels"][job_label],
        "msfb_seat_exporter"
    );
    let endpoints = spec["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 1);
    let port_names: Vec<&Value> = m.service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    assert!(port_names.contains(&&endpoints[0]["port"]));
    assert_eq!(endpoints[0]["path"], "/metrics");
    assert!(
        endpoints[0]["relabelings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["targetLabel"] == "shard"
                && r["sourceLabels"][0]
                    == "__meta_kubernetes_pod_label_apps_kubernetes_io_pod_index")
    );
}

#[test]
fn the_prometheusrule_holds_exactly_the_shipped_rules() {
    let rule = one("prometheusrule.yaml", "PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert!(!str_of(&rule["metadata"]["name"]).is_empty());
    let alerts = yaml_documents(&repo("contrib/prometheus/alerts.yml"));
    // Groups with a name and rules with alert/expr are what the CRD
    // requires; equal to alerts.yml, they have them.
    let groups = rule["spec"]["groups"].as_array().expect("spec.groups");
    assert!(
        groups
            .iter()
            .all(|g| g["name"].is_string() && g["rules"].is_array())
    );
    assert!(
        rule["spec"]["groups"] == alerts[0]["groups"],
        "contrib/kubernetes/prometheusrule.yaml differs from contrib/prometheus/alerts.yml: \
         run scripts/prometheusrule.sh"
    );
}

/// The state file (SPEC §13) lies on a volume claim template, so each pod,
/// hence each shard, keeps its own file across restarts and rescheduling.
#[test]
fn each_shard_keeps_its_state_on_a_volume_of_its_own() {
    let m = manifests();
    let file = m
        .args()
        .iter()
        .find_map(|a| a.strip_prefix("--persistence.file=").map(str::to_owned))
        .expect("--persistence.file");
    let mounts = m.container()["volumeMounts"].as_array().expect("mounts");
    let mount = mounts
        .iter()
        .find(|v| file.starts_with(&format!("{}/", str_of(&v["mountPath"]))))
        .expect("the state file is on a mounted volume");
    let claims = m.sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .expect("volumeClaimTemplates");
    assert!(
        claims
            .iter()
            .any(|c| c["metadata"]["name"] == mount["name"]),
        "{mount}"
    );
    assert_ne!(mount["readOnly"], true);
}
