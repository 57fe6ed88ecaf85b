#!/usr/bin/env bash
# The test suite, as the README gives it: installs what the tests need from
# Debian when it is missing (as root, or through sudo), then runs every test:
# both binaries, `tests` (needs only cargo) and `contract`, where promtool and
# prometheus check the shipped rules, dashboard and exposition,
# systemd-analyze the units, node the status page's script, chromium (headless,
# driven by node) the status page's layout, python3-yaml the Kubernetes
# manifests, kubectl their kustomization and openssl the client certificate
# the README tells operators to make, mount(8) a tmpfs filled under the
# state file (as root); the contract tests fail without them. A venv under
# target/ holds what Debian does not package: prometheus-client (a strict
# OpenMetrics parser) and kubernetes-validate (the manifests against the
# Kubernetes schemas).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
python3 -c 'import yaml' >/dev/null 2>&1 || need+=(python3-yaml)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
{ command -v mount && command -v umount; } >/dev/null 2>&1 || need+=(mount)
if [ "${#need[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing ${need[*]} for the tests" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

venv=target/venv
if ! "$venv/bin/python" -c 'import prometheus_client, kubernetes_validate' >/dev/null 2>&1; then
    echo "creating $venv for the tests" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check \
        prometheus-client==0.26.0 kubernetes-validate==1.37.0
fi

cargo test --all-targets "$@"
