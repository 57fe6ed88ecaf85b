//! The signed client assertion Entra ID takes instead of a secret
//! (RFC 7523, as Entra documents it): RS256, `x5t` and `x5t#S256` in the
//! header, `aud` = the token endpoint, `iss` = `sub` = the client id, a
//! fresh `jti`, and a lifetime of at most ten minutes from `iat` = `nbf`.

use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, Header};
use secrecy::SecretString;
use serde::Serialize;

use super::CredentialError;
use crate::config::ClientCertificate;

/// Longest lifetime of an assertion: Entra accepts up to 10 minutes.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

/// The claims of a client assertion.
#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// A fresh assertion signed with `pair` for `client_id` at the token
/// endpoint `audience`, valid from `now` for [`ASSERTION_LIFETIME`].
///
/// # Errors
/// [`CredentialError`] if the key cannot sign (it signed a probe at load,
/// so this does not happen in practice).
pub fn assertion(
    pair: &ClientCertificate,
    client_id: &str,
    audience: &str,
    now: SystemTime,
) -> Result<SecretString, CredentialError> {
    let iat = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut header = Header::new(Algorithm::RS256);
    header.x5t = Some(pair.x5t().to_owned());
    header.x5t_s256 = Some(pair.x5t_s256().to_owned());
    let claims = Claims {
        aud: audience,
        iss: client_id,
        sub: client_id,
        jti: fresh_jti(),
        iat,
        nbf: iat,
        exp: iat + ASSERTION_LIFETIME.as_secs() as i64,
    };
    jsonwebtoken::encode(&header, &claims, pair.signing_key())
        .map(SecretString::from)
        .map_err(|e| CredentialError(format!("cannot sign the client assertion: {e}")))
}

/// 128 random bits as a UUID-shaped string: unique per assertion, which is
/// all Entra asks of `jti`.
fn fresh_jti() -> String {
    let h = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn assertions_carry_the_thumbprints_the_claims_and_a_fresh_jti() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["t".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pair = ClientCertificate::from_pem(
            cert.pem().as_bytes(),
            Path::new("c.pem"),
            key.serialize_pem().as_bytes(),
            Path::new("k.pem"),
        )
        .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let jwt = assertion(&pair, "client", "https://aud/token", now).unwrap();
        let header = jsonwebtoken::decode_header(jwt.expose_secret()).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.x5t.as_deref(), Some(pair.x5t()));
        assert_eq!(header.x5t_s256.as_deref(), Some(pair.x5t_s256()));
        let claims: serde_json::Value =
            jsonwebtoken::dangerous::insecure_decode(jwt.expose_secret())
                .unwrap()
                .claims;
        assert_eq!(claims["aud"], "https://aud/token");
        assert_eq!(claims["iss"], "client");
        assert_eq!(claims["sub"], "client");
        assert_eq!(claims["nbf"], 1_800_000_000);
        assert_eq!(claims["exp"], 1_800_000_600);
        let again = assertion(&pair, "client", "https://aud/token", now).unwrap();
        assert_ne!(jwt.expose_secret(), again.expose_secret(), "fresh jti");
    }
}
