//! The Secrets a ChatCluster references: read once per pass, hashed onto the
//! gateways' pod template (a changed Secret rolls them), and turned into the
//! controller's own Kafka client settings.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use sha2::{Digest, Sha256};

use whisper_common::kafka;
use whisper_common::tls::Pem;

use crate::controller::Context;
use crate::crd::{ChatCluster, KafkaAuth};
use crate::topic::Connection;

/// The referenced keys of the referenced Secrets.
#[derive(Default)]
pub(super) struct Secrets {
    values: BTreeMap<(String, String), Vec<u8>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.values.keys()).finish()
    }
}

impl Secrets {
    /// A referenced key's value, as text.
    fn text(&self, name: &str, key: &str) -> Result<String, String> {
        let bytes = self
            .values
            .get(&(name.to_owned(), key.to_owned()))
            .ok_or_else(|| format!("Secret {name} has no key {key}"))?;
        String::from_utf8(bytes.clone()).map_err(|_| format!("key {key} of Secret {name} is not UTF-8 text"))
    }

    /// SHA-256 over every referenced key and value: what the gateways' pod
    /// template carries, so a change of any of them rolls the gateways.
    pub(super) fn hash(&self) -> String {
        let mut hash = Sha256::new();
        for ((name, key), value) in &self.values {
            for part in [name.as_bytes(), key.as_bytes(), value] {
                hash.update((part.len() as u64).to_be_bytes());
                hash.update(part);
            }
        }
        format!("{:x}", hash.finalize())
    }
}

/// Reads the referenced keys; the inner error names a Secret or key that
/// does not exist (a condition, not a failed pass).
pub(super) async fn read(cluster: &ChatCluster, ctx: &Context) -> Result<Result<Secrets, String>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let mut secrets = Secrets::default();
    let mut fetched: BTreeMap<&str, Option<Secret>> = BTreeMap::new();
    for (name, key) in cluster.secret_keys() {
        let secret = match fetched.get(name) {
            Some(secret) => secret.clone(),
            None => {
                let secret = api.get_opt(name).await?;
                fetched.insert(name, secret.clone());
                secret
            }
        };
        let Some(secret) = secret else {
            return Ok(Err(format!("Secret {name} does not exist")));
        };
        let Some(value) = secret.data.as_ref().and_then(|d| d.get(key)) else {
            return Ok(Err(format!("Secret {name} has no key {key}")));
        };
        secrets
            .values
            .insert((name.to_owned(), key.to_owned()), value.0.clone());
    }
    Ok(Ok(secrets))
}

/// How the controller reaches the cluster's Kafka: its bootstrap servers and
/// the client properties the spec's `kafka.auth` asks for.
pub(super) fn kafka(cluster: &ChatCluster, secrets: &Secrets) -> Result<Connection, String> {
    let properties = match &cluster.spec.kafka.auth {
        Some(auth) => properties(auth, secrets)?,
        None => BTreeMap::new(),
    };
    Ok(Connection {
        brokers: cluster.spec.kafka.bootstrap_servers.clone(),
        properties,
    })
}

/// librdkafka's properties for `auth`, with PEM and credentials inline:
/// the gateway's own rules (`whisper_common::kafka`), so both reach Kafka
/// the same way.
fn properties(auth: &KafkaAuth, secrets: &Secrets) -> Result<BTreeMap<String, String>, String> {
    let inline = |name: &str, key: &str| secrets.text(name, key).map(Pem::Inline);
    let (mechanism, username, password) = match &auth.sasl {
        Some(sasl) => (
            Some(sasl.mechanism.as_str().parse()?),
            Some(secrets.text(&sasl.username_secret_ref.name, &sasl.username_secret_ref.key)?),
            Some(kafka::Secret(
                secrets.text(&sasl.password_secret_ref.name, &sasl.password_secret_ref.key)?,
            )),
        ),
        None => (None, None, None),
    };
    let cert = auth.client_cert_secret_ref.as_ref();
    let settings = kafka::SecuritySettings {
        protocol: Some(auth.security_protocol.as_str().parse()?),
        mechanism,
        username,
        password,
        ca: auth
            .ca_secret_ref
            .as_ref()
            .map(|r| inline(&r.name, &r.key))
            .transpose()?,
        cert: cert.map(|c| inline(&c.name, &c.cert_key)).transpose()?,
        key: cert.map(|c| inline(&c.name, &c.key_key)).transpose()?,
    };
    let security = settings.check().map_err(|e| e.to_string())?;
    Ok(security
        .properties()
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ChatClusterSpec;

    fn secrets(entries: &[(&str, &str, &str)]) -> Secrets {
        Secrets {
            values: entries
                .iter()
                .map(|(n, k, v)| ((n.to_string(), k.to_string()), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    fn cluster(auth: serde_json::Value) -> ChatCluster {
        let spec: ChatClusterSpec =
            serde_json::from_value(serde_json::json!({"kafka": {"bootstrapServers": "kafka:9093", "auth": auth}}))
                .unwrap();
        ChatCluster::new("demo", spec)
    }

    #[test]
    fn sasl_ssl_with_mtls_sets_every_librdkafka_property() {
        let c = cluster(serde_json::json!({
            "securityProtocol": "SASL_SSL",
            "caSecretRef": {"name": "kafka-ca", "key": "ca.crt"},
            "clientCertSecretRef": {"name": "kafka-user", "certKey": "user.crt", "keyKey": "user.key"},
            "sasl": {"mechanism": "SCRAM-SHA-512",
                     "usernameSecretRef": {"name": "kafka-user", "key": "username"},
                     "passwordSecretRef": {"name": "kafka-user", "key": "password"}}
        }));
        const CA: &str = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
        const CERT: &str = "-----BEGIN CERTIFICATE-----\nUSER\n-----END CERTIFICATE-----\n";
        const KEY: &str = "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n";
        let s = secrets(&[
            ("kafka-ca", "ca.crt", CA),
            ("kafka-user", "user.crt", CERT),
            ("kafka-user", "user.key", KEY),
            ("kafka-user", "username", "chat"),
            ("kafka-user", "password", "hunter2"),
        ]);
        let kafka = kafka(&c, &s).unwrap();
        assert_eq!(kafka.brokers, "kafka:9093");
        let expected: BTreeMap<String, String> = [
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.pem", CA),
            ("ssl.certificate.pem", CERT),
            ("ssl.key.pem", KEY),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "chat"),
            ("sasl.password", "hunter2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(kafka.properties, expected);
        assert!(
            !format!("{kafka:?}").contains("hunter2"),
            "the password leaks into logs"
        );
    }

    #[test]
    fn a_missing_key_is_named_and_no_auth_means_plaintext_defaults() {
        let c = cluster(
            serde_json::json!({"securityProtocol": "SSL", "caSecretRef": {"name": "kafka-ca", "key": "ca.crt"}}),
        );
        assert_eq!(
            kafka(&c, &secrets(&[])).unwrap_err(),
            "Secret kafka-ca has no key ca.crt"
        );
        let mut plain = c.clone();
        plain.spec.kafka.auth = None;
        assert!(kafka(&plain, &secrets(&[])).unwrap().properties.is_empty());
    }

    #[test]
    fn the_hash_follows_every_referenced_value() {
        let a = secrets(&[("jwt", "secret", "one")]);
        let b = secrets(&[("jwt", "secret", "two")]);
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), secrets(&[("jwt", "secret", "one")]).hash());
    }
}
