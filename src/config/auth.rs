//! The checks of `[auth]` (SPEC §3, §12): which credential, the keys it
//! takes and no others, the environment defaults the Azure SDKs and the AKS
//! workload identity webhook use, and the token endpoint's URL.
//!
//! A key that belongs to another credential is an error naming it, not
//! something ignored: an operator who sets `client_certificate_file` and
//! forgets `credential = "certificate"` would otherwise run on a secret they
//! thought they had retired. A certificate is loaded here, so that a
//! mismatched key or an expired certificate stops `--config.check` and a
//! reload instead of the first token request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;

use super::certificate::{CertificateError, ClientCertificate};
use super::credential::{
    CertificateFiles, Credential, DEFAULT_AUTHORITY_HOST, Endpoint, IMDS_ENDPOINT,
    read_federated_token,
};
use super::locate::KeyPath;
use super::raw::{RawAuth, RawCredential, RawEndpoint};
use super::validate::{Checked, Ctx, check_url, check_url_as, issue, non_empty};
use super::{AuthConfig, TENANT_PLACEHOLDER};

/// A certificate closer than this to its end is warned about (and the
/// shipped alert fires).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

fn key(name: &str) -> KeyPath {
    KeyPath::of("auth").key(name)
}

/// The credential each credential-specific key belongs to.
const OWNED_KEYS: &[(&str, RawCredential)] = &[
    ("client_secret_file", RawCredential::Secret),
    ("client_secret_env", RawCredential::Secret),
    ("client_certificate_file", RawCredential::Certificate),
    ("client_key_file", RawCredential::Certificate),
    ("federated_token_file", RawCredential::WorkloadIdentity),
    ("managed_identity_endpoint", RawCredential::ManagedIdentity),
];

/// Keys that mean nothing to a managed identity: IMDS knows the tenant and
/// issues the token itself.
const NOT_FOR_MANAGED_IDENTITY: &[&str] = &["tenant_id", "token_url", "endpoint", "authority_host"];

pub(super) fn auth(raw: RawAuth, ctx: &mut Ctx<'_>) -> Checked<AuthConfig> {
    let kind = raw.credential;
    foreign_keys(&raw)?;
    let tenant_id = identity(&raw.tenant_id, "tenant_id", "AZURE_TENANT_ID", kind, ctx)?;
    let client_id = identity(&raw.client_id, "client_id", "AZURE_CLIENT_ID", kind, ctx)?;
    for (name, given, value) in [
        ("tenant_id", &raw.tenant_id, &tenant_id),
        ("client_id", &raw.client_id, &client_id),
    ] {
        if kind != RawCredential::ManagedIdentity || given.is_some() {
            non_empty(&key(name), value)?;
        }
    }
    let credential = match kind {
        RawCredential::Secret => Credential::Secret(secret(&raw, ctx)?),
        RawCredential::Certificate => certificate(&raw, ctx)?,
        RawCredential::WorkloadIdentity => workload_identity(&raw, ctx)?,
        RawCredential::ManagedIdentity => Credential::ManagedIdentity,
    };
    let endpoint = match raw.endpoint {
        Some(RawEndpoint::V2) => Endpoint::V2,
        Some(RawEndpoint::V1) | None => Endpoint::V1,
    };
    let token_url = token_url(&raw, kind, endpoint, ctx)?;
    non_empty(&key("resource"), &raw.resource)?;
    Ok(AuthConfig {
        tenant_id: tenant_id.trim().to_owned(),
        client_id: client_id.trim().to_owned(),
        credential,
        endpoint,
        token_url,
        resource: raw.resource,
    })
}

/// `tenant_id` or `client_id` (`name`): as written; unwritten, from the
/// environment variable `var` for a workload identity (the webhook sets
/// it), empty for a managed identity (IMDS knows it), an error otherwise.
fn identity(
    given: &Option<String>,
    name: &str,
    var: &str,
    kind: RawCredential,
    ctx: &Ctx<'_>,
) -> Checked<String> {
    match (given, kind) {
        (Some(v), _) => Ok(v.clone()),
        (None, RawCredential::ManagedIdentity) => Ok(String::new()),
        (None, RawCredential::WorkloadIdentity) => (ctx.options.env)(var)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                issue(
                    &key(name),
                    format!(
                        "is required (or {var} in the environment, as the workload identity \
                         webhook sets it)"
                    ),
                )
            }),
        (None, _) => Err(issue(&key(name), format!("missing field `{name}`"))),
    }
}

/// Refuses every key set for a credential other than the chosen one.
fn foreign_keys(raw: &RawAuth) -> Checked<()> {
    let kind = raw.credential;
    let set = |name: &str| match name {
        "client_secret_file" => raw.client_secret_file.is_some(),
        "client_secret_env" => raw.client_secret_env.is_some(),
        "client_certificate_file" => raw.client_certificate_file.is_some(),
        "client_key_file" => raw.client_key_file.is_some(),
        "federated_token_file" => raw.federated_token_file.is_some(),
        "managed_identity_endpoint" => raw.managed_identity_endpoint.is_some(),
        "tenant_id" => raw.tenant_id.is_some(),
        "token_url" => raw.token_url.is_some(),
        "endpoint" => raw.endpoint.is_some(),
        "authority_host" => raw.authority_host.is_some(),
        _ => false,
    };
    for (name, owner) in OWNED_KEYS {
        if *owner != kind && set(name) {
            return Err(issue(
                &key(name),
                format!(
                    "belongs to credential = \"{}\", but this [auth] uses credential = \"{}\"",
                    owner.word(),
                    kind.word()
                ),
            ));
        }
    }
    if kind == RawCredential::ManagedIdentity {
        for name in NOT_FOR_MANAGED_IDENTITY {
            if set(name) {
                return Err(issue(
                    &key(name),
                    "does not apply to credential = \"managed_identity\": the identity \
                     endpoint knows the tenant and issues the token (see managed_identity_endpoint)",
                ));
            }
        }
    }
    if raw.token_url.is_some() && raw.authority_host.is_some() {
        return Err(issue(
            &key("authority_host"),
            "set either token_url or authority_host, not both (token_url is the whole URL)",
        ));
    }
    Ok(())
}

fn secret(raw: &RawAuth, ctx: &mut Ctx<'_>) -> Checked<SecretString> {
    match (&raw.client_secret_file, &raw.client_secret_env) {
        (Some(file), None) => ctx.read_secret(&key("client_secret_file"), file),
        (None, Some(var)) => {
            let k = key("client_secret_env");
            non_empty(&k, var)?;
            let value = (ctx.options.env)(var)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    issue(
                        &k,
                        format!("environment variable {var} is not set or empty"),
                    )
                })?;
            Ok(SecretString::from(value))
        }
        (Some(_), Some(_)) => Err(issue(
            &key("client_secret_env"),
            "set either client_secret_file or client_secret_env, not both",
        )),
        (None, None) => Err(issue(
            &key("client_secret_file"),
            "one of client_secret_file or client_secret_env is required",
        )),
    }
}

/// Loads the pair, refusing a mismatched key and an expired certificate,
/// and warning about one that ends within [`EXPIRY_WARNING`].
fn certificate(raw: &RawAuth, ctx: &mut Ctx<'_>) -> Checked<Credential> {
    let cert_key = key("client_certificate_file");
    let written = raw.client_certificate_file.as_deref().ok_or_else(|| {
        issue(
            &cert_key,
            "is required for credential = \"certificate\" (a PEM file with the certificate \
             uploaded to the app registration)",
        )
    })?;
    let cert_path = ctx.resolve(&cert_key, written)?;
    let key_key = match &raw.client_key_file {
        Some(_) => key("client_key_file"),
        None => cert_key.clone(),
    };
    let key_path = match &raw.client_key_file {
        Some(k) => ctx.resolve(&key_key, k)?,
        None => cert_path.clone(),
    };
    let pair = ClientCertificate::load(&cert_path, &key_path).map_err(|e| {
        let at = match &e {
            CertificateError::Read { file, .. } if *file == key_path => &key_key,
            CertificateError::Key { .. } | CertificateError::Mismatch { .. } => &key_key,
            _ => &cert_key,
        };
        let hint = if raw.client_key_file.is_none() && matches!(e, CertificateError::Key { .. }) {
            " (set client_key_file when the key is in a file of its own)"
        } else {
            ""
        };
        issue(at, format!("{e}{hint}"))
    })?;
    let now = SystemTime::now();
    let described = format!(
        "the certificate {} (thumbprint {})",
        pair.subject(),
        pair.thumbprint()
    );
    let end = humantime::format_rfc3339_seconds(pair.not_after());
    match pair.not_after().duration_since(now) {
        Err(_) => {
            return Err(issue(
                &cert_key,
                format!(
                    "{described} expired at {end}: create a new one, upload it to the app \
                     registration and replace this file"
                ),
            ));
        }
        Ok(left) if left < EXPIRY_WARNING => ctx.warnings.push(format!(
            "auth.client_certificate_file: {described} expires at {end}, in {}: upload its \
             successor to the app registration and replace the file",
            humantime::format_duration(Duration::from_secs(left.as_secs() / 3600 * 3600))
        )),
        Ok(_) => {}
    }
    ctx.warnings.extend(super::files::exposure_warning(
        &key_key.to_string(),
        &key_path,
    ));
    Ok(Credential::Certificate(Arc::new(CertificateFiles::new(
        cert_path, key_path, pair,
    ))))
}

fn workload_identity(raw: &RawAuth, ctx: &Ctx<'_>) -> Checked<Credential> {
    let k = key("federated_token_file");
    let path: PathBuf = match &raw.federated_token_file {
        Some(written) => ctx.resolve(&k, written)?,
        None => (ctx.options.env)("AZURE_FEDERATED_TOKEN_FILE")
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| {
                issue(
                    &k,
                    "is required for credential = \"workload_identity\" (or \
                     AZURE_FEDERATED_TOKEN_FILE in the environment, as the workload identity \
                     webhook sets it)",
                )
            })?,
    };
    read_federated_token(&path).map_err(|e| issue(&k, e))?;
    Ok(Credential::WorkloadIdentity {
        federated_token_file: path,
    })
}

/// The token endpoint template: `token_url` as written, or built from the
/// authority host (`authority_host`, else `AZURE_AUTHORITY_HOST`, else the public
/// cloud), the tenant and the endpoint version; for a managed identity, the
/// identity endpoint.
fn token_url(
    raw: &RawAuth,
    kind: RawCredential,
    endpoint: Endpoint,
    ctx: &mut Ctx<'_>,
) -> Checked<String> {
    if kind == RawCredential::ManagedIdentity {
        let k = key("managed_identity_endpoint");
        let url = raw
            .managed_identity_endpoint
            .clone()
            .unwrap_or_else(|| IMDS_ENDPOINT.to_owned());
        check_url(&k, &url)?;
        if url.contains(['?', '#']) {
            return Err(issue(&k, "must not contain a query or fragment"));
        }
        return Ok(url);
    }
    if let Some(url) = &raw.token_url {
        // The token client fills in the tenant (`store::auth`); the
        // template is checked with a plain stand-in and quoted as written.
        check_url_as(
            &key("token_url"),
            &url.replace(TENANT_PLACEHOLDER, "tenant"),
            url,
        )?;
        return Ok(url.clone());
    }
    let (host, k) = match &raw.authority_host {
        Some(h) => (h.clone(), key("authority_host")),
        None => match (ctx.options.env)("AZURE_AUTHORITY_HOST").filter(|v| !v.trim().is_empty()) {
            Some(h) => (h, key("authority_host")),
            None => (DEFAULT_AUTHORITY_HOST.to_owned(), key("authority_host")),
        },
    };
    let host = host.trim().trim_end_matches('/');
    check_url(&k, host)?;
    if host.contains(['?', '#']) {
        return Err(issue(&k, "must not contain a query or fragment"));
    }
    if host.starts_with("http://") {
        ctx.warnings.push(format!(
            "auth.authority_host {host:?} is plain http: credentials travel unencrypted"
        ));
    }
    Ok(match endpoint {
        Endpoint::V1 => format!("{host}/{TENANT_PLACEHOLDER}/oauth2/token"),
        Endpoint::V2 => format!("{host}/{TENANT_PLACEHOLDER}/oauth2/v2.0/token"),
    })
}
