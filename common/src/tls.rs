//! PEM material (certificates, keys, CA bundles) as the binaries get it: a
//! file named in a setting, or the text itself (the controller reads it
//! from Kubernetes Secrets).

use std::path::PathBuf;

/// A PEM certificate, key or CA bundle.
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    /// A file, read by whoever uses it (librdkafka reads it itself).
    File(PathBuf),
    /// The PEM text.
    Inline(String),
}

impl std::fmt::Debug for Pem {
    /// Names a file but never shows PEM text: it may be a private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Inline(_) => f.write_str("Inline(..)"),
        }
    }
}

impl Pem {
    /// The PEM text: the file's content, or the text itself. A file that
    /// cannot be read, or text without a PEM block, is an error that says
    /// so without quoting the text.
    pub fn load(&self) -> Result<String, String> {
        let text = match self {
            Self::File(path) => {
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
            }
            Self::Inline(text) => text.clone(),
        };
        if !text.contains("-----BEGIN ") {
            return Err(match self {
                Self::File(path) => format!("{} is not PEM (no -----BEGIN line)", path.display()),
                Self::Inline(_) => "is not PEM (no -----BEGIN line)".to_owned(),
            });
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_is_checked_and_never_shown() {
        let key = Pem::Inline("-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n".into());
        assert!(key.load().unwrap().contains("secret"));
        assert!(!format!("{key:?}").contains("secret"));
        let err = Pem::Inline("secret".into()).load().unwrap_err();
        assert!(err.contains("not PEM") && !err.contains("secret"), "{err}");
        let err = Pem::File("/nonexistent/ca.pem".into()).load().unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
