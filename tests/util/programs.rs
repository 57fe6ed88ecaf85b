//! Programs the tests run, and their output as text. The outside ones
//! (promtool, systemd-analyze, python3 with PyYAML, the test venv) are for the contract
//! binary only; each is started in one place, with the message that says
//! where it comes from (`scripts/test.sh` installs them from Debian). A
//! missing program fails the test, it never skips it.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;

/// A file of the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A program's output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `promtool args` in the repository, with `stdin` as its input.
pub fn run_promtool(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package prometheus; bash scripts/test.sh installs it)");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs `systemd-analyze args unit`, without colours or a pager.
pub fn systemd_analyze(args: &[&str], unit: &Path) -> Output {
    std::process::Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .output()
        .expect(
            "systemd-analyze is needed (Debian package systemd; bash scripts/test.sh installs it)",
        )
}

/// Every YAML document of `path`, as JSON, read by PyYAML.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
        ])
        .arg(path)
        .output()
        .expect("python3 with PyYAML is needed (bash scripts/test.sh installs python3-yaml)");
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

/// The Python interpreter of the test venv (`scripts/test.sh` creates it
/// under `target/venv` with `prometheus-client` and `kubernetes-validate`).
pub fn venv_python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("MSFB_TEST_PYTHON") {
        return p.into();
    }
    let p = repo("target/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/test.sh`, which creates the test venv",
        p.display()
    );
    p
}

/// Runs `script` (under tests/python/) with `input` on stdin; its stdout.
pub fn run_python(script: &str, input: &str) -> String {
    use std::io::Write as _;
    let script = repo("tests/python").join(script);
    let mut child = std::process::Command::new(venv_python())
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("python ran");
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A program of the test venv (`target/venv/bin/NAME`).
pub fn venv_bin(name: &str) -> PathBuf {
    let python = venv_python();
    python.with_file_name(name)
}

/// Runs `kubernetes-validate --strict` (test venv) on `files`: the
/// Kubernetes schemas of the version it ships with.
pub fn kubernetes_validate(files: &[&Path]) -> Output {
    std::process::Command::new(venv_bin("kubernetes-validate"))
        .arg("--strict")
        .args(files)
        .output()
        .expect("kubernetes-validate is needed (bash scripts/test.sh puts it in target/venv)")
}

/// Renders the kustomization in `dir` with `kubectl kustomize`.
pub fn kubectl_kustomize(dir: &Path) -> Output {
    std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl is needed (Debian package kubernetes-client; bash scripts/test.sh installs it)")
}

/// Runs `openssl` in `dir`; it must succeed.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed (Debian package openssl; bash scripts/test.sh installs it)");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}
