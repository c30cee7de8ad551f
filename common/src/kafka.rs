//! How a Kafka client reaches the brokers: the security protocol, SASL, the
//! CA and a client certificate (mTLS), checked together and turned into
//! librdkafka properties. The gateway (from its settings) and the
//! controller (from a ChatCluster and its Secrets) both go through here, so
//! they connect the same way.

use std::fmt;
use std::str::FromStr;

use crate::tls::Pem;

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    const ALL: [Self; 4] = [Self::Plaintext, Self::Ssl, Self::SaslPlaintext, Self::SaslSsl];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// The connection is TLS.
    pub const fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// The client logs in with SASL.
    pub const fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// A SASL mechanism librdkafka implements itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    const ALL: [Self; 3] = [Self::Plain, Self::ScramSha256, Self::ScramSha512];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Parses one of `all` by its name, in any case; the error lists the names.
fn parse_named<T: Copy>(text: &str, all: &[T], name: fn(T) -> &'static str) -> Result<T, String> {
    let text = text.trim();
    all.iter()
        .copied()
        .find(|v| name(*v).eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            let names: Vec<_> = all.iter().map(|v| name(*v)).collect();
            format!("`{text}` is not one of {}", names.join(", "))
        })
}

impl FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_named(s, &Self::ALL, Self::as_str)
    }
}

impl FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_named(s, &Self::ALL, Self::as_str)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which part of the settings a problem is about, so each binary names its
/// own setting (an environment variable, a field of the ChatCluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Mechanism,
    Username,
    Password,
    Ca,
    Cert,
    Key,
}

/// Settings that cannot be used together, or PEM that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityError {
    pub part: Part,
    /// What is wrong; never quotes a password or PEM text.
    pub problem: String,
}

impl fmt::Display for SecurityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem)
    }
}

impl std::error::Error for SecurityError {}

fn problem(part: Part, problem: impl Into<String>) -> SecurityError {
    SecurityError {
        part,
        problem: problem.into(),
    }
}

/// The security settings as given, each optional; [`Self::check`] makes
/// them a [`KafkaSecurity`].
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {
    /// Unset: PLAINTEXT.
    pub protocol: Option<SecurityProtocol>,
    pub mechanism: Option<SaslMechanism>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca: Option<Pem>,
    pub cert: Option<Pem>,
    pub key: Option<Pem>,
}

/// A password, shown as `***` by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// SASL login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

/// A client certificate and its key (mTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: Pem,
    pub key: Pem,
}

/// How to reach Kafka, checked: SASL exactly when the protocol logs in,
/// TLS material only when it is TLS, a certificate only with its key, and
/// every PEM readable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    pub protocol: SecurityProtocol,
    pub sasl: Option<Sasl>,
    /// `None` with TLS: the system's CAs.
    pub ca: Option<Pem>,
    pub client_cert: Option<ClientCert>,
}

impl SecuritySettings {
    /// Checks the settings together; an error names the part to fix.
    pub fn check(self) -> Result<KafkaSecurity, SecurityError> {
        let protocol = self.protocol.unwrap_or_default();
        let sasl = if protocol.sasl() {
            let mechanism = self
                .mechanism
                .ok_or_else(|| problem(Part::Mechanism, format!("is needed with {protocol}")))?;
            let username = self
                .username
                .filter(|u| !u.is_empty())
                .ok_or_else(|| problem(Part::Username, format!("is needed with {protocol}")))?;
            let password = self
                .password
                .filter(|p| !p.0.is_empty())
                .ok_or_else(|| problem(Part::Password, format!("is needed with {protocol}")))?;
            Some(Sasl {
                mechanism,
                username,
                password,
            })
        } else {
            let given = [
                (Part::Mechanism, self.mechanism.is_some()),
                (Part::Username, self.username.is_some()),
                (Part::Password, self.password.is_some()),
            ];
            if let Some((part, _)) = given.into_iter().find(|(_, set)| *set) {
                return Err(problem(
                    part,
                    format!("is set, but {protocol} does not log in with SASL (use SASL_PLAINTEXT or SASL_SSL)"),
                ));
            }
            None
        };
        if !protocol.tls() {
            let given = [
                (Part::Ca, self.ca.is_some()),
                (Part::Cert, self.cert.is_some()),
                (Part::Key, self.key.is_some()),
            ];
            if let Some((part, _)) = given.into_iter().find(|(_, set)| *set) {
                return Err(problem(
                    part,
                    format!("is set, but {protocol} does not use TLS (use SSL or SASL_SSL)"),
                ));
            }
        }
        let client_cert = match (self.cert, self.key) {
            (Some(cert), Some(key)) => Some(ClientCert { cert, key }),
            (Some(_), None) => return Err(problem(Part::Key, "is needed with the client certificate")),
            (None, Some(_)) => return Err(problem(Part::Cert, "is needed with the client key")),
            (None, None) => None,
        };
        let readable = [
            (Part::Ca, self.ca.as_ref()),
            (Part::Cert, client_cert.as_ref().map(|c| &c.cert)),
            (Part::Key, client_cert.as_ref().map(|c| &c.key)),
        ];
        for (part, pem) in readable {
            if let Some(pem) = pem {
                pem.load().map_err(|e| problem(part, e))?;
            }
        }
        Ok(KafkaSecurity {
            protocol,
            sasl,
            ca: self.ca,
            client_cert,
        })
    }
}

impl KafkaSecurity {
    /// The librdkafka properties to set on every client (producer, consumer,
    /// admin). They carry the password and may carry a private key: set
    /// them, never log them.
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let mut properties = vec![("security.protocol", self.protocol.as_str().to_owned())];
        if let Some(sasl) = &self.sasl {
            properties.push(("sasl.mechanisms", sasl.mechanism.as_str().to_owned()));
            properties.push(("sasl.username", sasl.username.clone()));
            properties.push(("sasl.password", sasl.password.0.clone()));
        }
        if self.protocol.tls() {
            properties.push(match &self.ca {
                Some(ca) => pem_property(ca, "ssl.ca.location", "ssl.ca.pem"),
                // librdkafka looks for the system's CA bundle (a statically
                // linked OpenSSL knows no default place of its own).
                None => ("ssl.ca.location", "probe".to_owned()),
            });
            if let Some(client) = &self.client_cert {
                properties.push(pem_property(
                    &client.cert,
                    "ssl.certificate.location",
                    "ssl.certificate.pem",
                ));
                properties.push(pem_property(&client.key, "ssl.key.location", "ssl.key.pem"));
            }
        }
        properties
    }
}

/// A file is named by its `location` property, PEM text given by its `pem`
/// property.
fn pem_property(pem: &Pem, location: &'static str, text: &'static str) -> (&'static str, String) {
    match pem {
        Pem::File(path) => (location, path.display().to_string()),
        Pem::Inline(pem) => (text, pem.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nhunter2key\n-----END PRIVATE KEY-----\n";

    fn pem_file(name: &str, text: &str) -> Pem {
        let dir = std::env::temp_dir().join(format!("whisper-kafka-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        Pem::File(path)
    }

    fn scram(protocol: SecurityProtocol) -> SecuritySettings {
        SecuritySettings {
            protocol: Some(protocol),
            mechanism: Some(SaslMechanism::ScramSha512),
            username: Some("chat".into()),
            password: Some(Secret("hunter2".into())),
            ..SecuritySettings::default()
        }
    }

    fn get<'a>(properties: &'a [(&'static str, String)], key: &str) -> Option<&'a str> {
        properties.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn names_parse_in_any_case_and_errors_list_them() {
        assert_eq!("sasl_ssl".parse(), Ok(SecurityProtocol::SaslSsl));
        assert_eq!(" SSL ".parse(), Ok(SecurityProtocol::Ssl));
        assert_eq!("scram-sha-512".parse(), Ok(SaslMechanism::ScramSha512));
        assert_eq!("PLAIN".parse(), Ok(SaslMechanism::Plain));
        let err = "TLS".parse::<SecurityProtocol>().unwrap_err();
        assert_eq!(err, "`TLS` is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL");
        assert!("GSSAPI".parse::<SaslMechanism>().unwrap_err().contains("SCRAM-SHA-256"));
    }

    #[test]
    fn plaintext_sets_only_the_protocol() {
        let security = SecuritySettings::default().check().unwrap();
        assert_eq!(security.properties(), [("security.protocol", "PLAINTEXT".to_owned())]);
    }

    #[test]
    fn sasl_ssl_with_files_names_the_files() {
        let ca = pem_file("ca.pem", CERT);
        let Pem::File(ca_path) = &ca else { unreachable!() };
        let security = SecuritySettings {
            ca: Some(ca.clone()),
            ..scram(SecurityProtocol::SaslSsl)
        }
        .check()
        .unwrap();
        let p = security.properties();
        assert_eq!(get(&p, "security.protocol"), Some("SASL_SSL"));
        assert_eq!(get(&p, "sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(get(&p, "sasl.username"), Some("chat"));
        assert_eq!(get(&p, "sasl.password"), Some("hunter2"));
        assert_eq!(get(&p, "ssl.ca.location"), ca_path.to_str());
        assert_eq!(get(&p, "ssl.certificate.location"), None);
        assert!(!format!("{security:?}").contains("hunter2"));
    }

    #[test]
    fn inline_pem_goes_in_pem_properties() {
        let security = SecuritySettings {
            protocol: Some(SecurityProtocol::Ssl),
            ca: Some(Pem::Inline(CERT.into())),
            cert: Some(Pem::Inline(CERT.into())),
            key: Some(Pem::Inline(KEY.into())),
            ..SecuritySettings::default()
        }
        .check()
        .unwrap();
        let p = security.properties();
        assert_eq!(get(&p, "security.protocol"), Some("SSL"));
        assert_eq!(get(&p, "ssl.ca.pem"), Some(CERT));
        assert_eq!(get(&p, "ssl.certificate.pem"), Some(CERT));
        assert_eq!(get(&p, "ssl.key.pem"), Some(KEY));
        assert_eq!(get(&p, "ssl.ca.location"), None);
        assert_eq!(get(&p, "sasl.mechanisms"), None);
        assert!(!format!("{security:?}").contains("hunter2key"));
    }

    #[test]
    fn tls_without_a_ca_probes_the_system_store() {
        let p = scram(SecurityProtocol::SaslSsl).check().unwrap().properties();
        assert_eq!(get(&p, "ssl.ca.location"), Some("probe"));
        let p = scram(SecurityProtocol::SaslPlaintext).check().unwrap().properties();
        assert_eq!(get(&p, "ssl.ca.location"), None);
    }

    #[test]
    fn inconsistent_settings_name_the_part() {
        let cases = [
            (
                SecuritySettings {
                    mechanism: None,
                    ..scram(SecurityProtocol::SaslSsl)
                },
                Part::Mechanism,
            ),
            (
                SecuritySettings {
                    username: Some(String::new()),
                    ..scram(SecurityProtocol::SaslPlaintext)
                },
                Part::Username,
            ),
            (
                SecuritySettings {
                    password: None,
                    ..scram(SecurityProtocol::SaslSsl)
                },
                Part::Password,
            ),
            (scram(SecurityProtocol::Ssl), Part::Mechanism),
            (
                SecuritySettings {
                    password: Some(Secret("hunter2".into())),
                    ..SecuritySettings::default()
                },
                Part::Password,
            ),
            (
                SecuritySettings {
                    ca: Some(Pem::Inline(CERT.into())),
                    ..scram(SecurityProtocol::SaslPlaintext)
                },
                Part::Ca,
            ),
            (
                SecuritySettings {
                    protocol: Some(SecurityProtocol::Ssl),
                    cert: Some(Pem::Inline(CERT.into())),
                    ..SecuritySettings::default()
                },
                Part::Key,
            ),
            (
                SecuritySettings {
                    protocol: Some(SecurityProtocol::Ssl),
                    key: Some(Pem::Inline(KEY.into())),
                    ..SecuritySettings::default()
                },
                Part::Cert,
            ),
            (
                SecuritySettings {
                    protocol: Some(SecurityProtocol::Ssl),
                    ca: Some(Pem::File("/nonexistent/ca.pem".into())),
                    ..SecuritySettings::default()
                },
                Part::Ca,
            ),
            (
                SecuritySettings {
                    protocol: Some(SecurityProtocol::Ssl),
                    cert: Some(Pem::Inline(CERT.into())),
                    key: Some(Pem::Inline("hunter2key".into())),
                    ..SecuritySettings::default()
                },
                Part::Key,
            ),
        ];
        for (settings, part) in cases {
            let err = settings.clone().check().unwrap_err();
            assert_eq!(err.part, part, "{settings:?}: {err}");
            assert!(!err.problem.contains("hunter2"), "{err}");
        }
    }
}
