//! Token checks for `hello` when `WHISPER_JWT_SECRET` is set: HS256 JSON Web
//! Tokens whose `sub` is the user id and whose optional `name` claim is the
//! display name; `exp` is required and honoured.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

/// The claims the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub name: Option<String>,
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

/// Checks a token against the shared secret.
pub fn verify(secret: &str, token: Option<&str>) -> Result<Claims, AuthError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "sub"]);
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

    #[test]
    fn accepts_good_tokens_and_refuses_the_rest() {
        let exp = crate::clock::now_ms() / 1000 + 60;
        let good = token("s3cret", serde_json::json!({"sub": "u-1", "name": "Alice", "exp": exp}));
        assert_eq!(
            verify("s3cret", Some(&good)),
            Ok(Claims {
                sub: "u-1".into(),
                name: Some("Alice".into())
            })
        );
        assert_eq!(verify("s3cret", None), Err(AuthError::Missing));
        assert!(matches!(verify("other", Some(&good)), Err(AuthError::Invalid(_))));
        let expired = token("s3cret", serde_json::json!({"sub": "u-1", "exp": exp - 3600}));
        assert_eq!(verify("s3cret", Some(&expired)), Err(AuthError::Expired));
        let no_exp = token("s3cret", serde_json::json!({"sub": "u-1"}));
        assert!(verify("s3cret", Some(&no_exp)).is_err());
        assert!(verify("s3cret", Some("not.a.jwt")).is_err());
    }
}
