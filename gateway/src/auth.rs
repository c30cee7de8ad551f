//! Token checks for `hello` when `WHISPER_JWT_SECRET` is set: HS256 JSON Web
//! Tokens whose `sub` is the user id and whose optional `name` claim is the
//! display name; `exp` is required and honoured, `nbf` honoured when
//! present, and `iss` / `aud` required to match when the gateway is given
//! an issuer or audience.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

/// The claims the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Expiry, Unix seconds (required by [`verify`]).
    pub exp: u64,
}

impl Claims {
    /// When the token expires, Unix milliseconds.
    pub fn exp_ms(&self) -> i64 {
        i64::try_from(self.exp.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid: {0}")]
    Invalid(String),
}

/// Shortest accepted HS256 secret, in bytes (RFC 7518 §3.2: at least the
/// hash's 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// What a token must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRules {
    pub secret: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// Checks a token against the rules.
pub fn verify(rules: &TokenRules, token: Option<&str>) -> Result<Claims, AuthError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.validate_nbf = true;
    let mut required = vec!["exp", "sub"];
    if let Some(issuer) = &rules.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &rules.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    let secret = &rules.secret;
    let data =
        decode::<Claims>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            }
        })?;
    if data.claims.sub.is_empty() || data.claims.sub.len() > 128 {
        return Err(AuthError::Invalid("`sub` must be 1-128 bytes".into()));
    }
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn rules(issuer: Option<&str>, audience: Option<&str>) -> TokenRules {
        TokenRules {
            secret: SECRET.into(),
            issuer: issuer.map(Into::into),
            audience: audience.map(Into::into),
        }
    }

    #[test]
    fn accepts_good_tokens_and_refuses_the_rest() {
        let exp = crate::clock::now_ms() / 1000 + 60;
        let r = rules(None, None);
        let good = token(SECRET, serde_json::json!({"sub": "u-1", "name": "Alice", "exp": exp}));
        assert_eq!(
            verify(&r, Some(&good)),
            Ok(Claims {
                sub: "u-1".into(),
                name: Some("Alice".into()),
                exp: exp as u64,
            })
        );
        assert_eq!(verify(&r, None), Err(AuthError::Missing));
        let other = token(
            "another-secret-of-32-bytes-000000",
            serde_json::json!({"sub": "u-1", "exp": exp}),
        );
        assert!(matches!(verify(&r, Some(&other)), Err(AuthError::Invalid(_))));
        let expired = token(SECRET, serde_json::json!({"sub": "u-1", "exp": exp - 3600}));
        assert_eq!(verify(&r, Some(&expired)), Err(AuthError::Expired));
        let no_exp = token(SECRET, serde_json::json!({"sub": "u-1"}));
        assert!(verify(&r, Some(&no_exp)).is_err());
        assert!(verify(&r, Some("not.a.jwt")).is_err());
        let not_yet = token(SECRET, serde_json::json!({"sub": "u-1", "exp": exp, "nbf": exp - 30}));
        assert!(verify(&r, Some(&not_yet)).is_err(), "nbf in the future");
        let now_valid = token(SECRET, serde_json::json!({"sub": "u-1", "exp": exp, "nbf": exp - 120}));
        assert!(verify(&r, Some(&now_valid)).is_ok());
    }

    #[test]
    fn issuer_and_audience_must_match_when_set() {
        let exp = crate::clock::now_ms() / 1000 + 60;
        let r = rules(Some("https://id.example.com"), Some("whisperrooms"));
        let good = token(
            SECRET,
            serde_json::json!({"sub": "u", "exp": exp, "iss": "https://id.example.com", "aud": "whisperrooms"}),
        );
        assert!(verify(&r, Some(&good)).is_ok());
        for claims in [
            serde_json::json!({"sub": "u", "exp": exp, "aud": "whisperrooms"}),
            serde_json::json!({"sub": "u", "exp": exp, "iss": "https://evil.example", "aud": "whisperrooms"}),
            serde_json::json!({"sub": "u", "exp": exp, "iss": "https://id.example.com"}),
            serde_json::json!({"sub": "u", "exp": exp, "iss": "https://id.example.com", "aud": "other"}),
        ] {
            assert!(verify(&r, Some(&token(SECRET, claims.clone()))).is_err(), "{claims}");
        }
        // Without rules for them, iss and aud are not looked at.
        let any = token(SECRET, serde_json::json!({"sub": "u", "exp": exp, "aud": "other"}));
        assert!(verify(&rules(None, None), Some(&any)).is_ok());
    }
}
