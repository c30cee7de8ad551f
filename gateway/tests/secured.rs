//! Gateways on secured services (`scripts/services up-secure`): Kafka over
//! TLS, logging in with SASL (SCRAM, PLAIN) or with a client certificate,
//! and Redis over TLS with a user and password. A wrong password, a missing
//! or wrong CA, keep a gateway out of service with the reason in its log
//! and no secret in it.

mod common;

use std::time::Duration;

use common::{Client, Gateway, log_file, secure_service, secure_service_var, unique, wait_for_log};

/// The secured services, from `scripts/services env-secure`.
struct Secure {
    sasl_brokers: String,
    mtls_brokers: String,
    username: String,
    password: String,
    ca: String,
    other_ca: String,
    cert: String,
    key: String,
    redis: String,
}

fn secure() -> Option<Secure> {
    Some(Secure {
        sasl_brokers: secure_service("WHISPER_TEST_SECURE_KAFKA_BROKERS")?,
        mtls_brokers: secure_service_var("WHISPER_TEST_SECURE_KAFKA_MTLS_BROKERS"),
        username: secure_service_var("WHISPER_TEST_SECURE_USERNAME"),
        password: secure_service_var("WHISPER_TEST_SECURE_PASSWORD"),
        ca: secure_service_var("WHISPER_TEST_SECURE_CA_FILE"),
        other_ca: secure_service_var("WHISPER_TEST_SECURE_OTHER_CA_FILE"),
        cert: secure_service_var("WHISPER_TEST_SECURE_CERT_FILE"),
        key: secure_service_var("WHISPER_TEST_SECURE_KEY_FILE"),
        redis: secure_service_var("WHISPER_TEST_SECURE_REDIS_URL"),
    })
}

impl Secure {
    /// Settings of a gateway logging in to Kafka over SASL_SSL, trusting
    /// the test CA, on a topic of its own.
    fn sasl<'a>(&'a self, topic: &'a str, mechanism: &'a str, password: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("WHISPER_KAFKA_BROKERS", &self.sasl_brokers),
            ("WHISPER_KAFKA_TOPIC", topic),
            ("WHISPER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("WHISPER_KAFKA_SASL_MECHANISM", mechanism),
            ("WHISPER_KAFKA_SASL_USERNAME", &self.username),
            ("WHISPER_KAFKA_SASL_PASSWORD", password),
            ("WHISPER_KAFKA_CA_FILE", &self.ca),
        ]
    }

    /// Settings of presence on the TLS Redis, trusting `ca`.
    fn redis<'a>(&'a self, ca: &'a str) -> [(&'a str, &'a str); 2] {
        [("WHISPER_REDIS_URL", &self.redis), ("WHISPER_REDIS_CA_FILE", ca)]
    }
}

/// Two clients on `gw`: presence of the second reaches the first, and a
/// message goes out, is acked and comes back through the bus.
async fn chat(gw: &Gateway) {
    let mut alice = Client::hello(&gw.url(), "alice").await;
    let mut bob = Client::hello(&gw.url(), "bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    let event = tokio::time::timeout(Duration::from_secs(5), alice.expect("presence"))
        .await
        .expect("presence event in time");
    assert_eq!(event["joined"][0]["name"], "bob", "{event}");
    let id = alice.say("lobby", "over TLS").await;
    let got = bob.next_message().await;
    assert_eq!(
        (got["id"].as_str(), got["text"].as_str()),
        (Some(id.as_str()), Some("over TLS"))
    );
}

#[tokio::test]
async fn scram_over_tls_and_redis_over_tls_chat_end_to_end() {
    let Some(s) = secure() else { return };
    let topic = unique("secured");
    let mut settings = s.sasl(&topic, "SCRAM-SHA-512", &s.password);
    settings.extend(s.redis(&s.ca));
    let (log, file) = log_file("secured-scram");
    let gw = Gateway::start_logging_to(&settings, file).await;
    gw.wait_readyz(200).await;
    chat(&gw).await;
    let log = std::fs::read_to_string(log).unwrap();
    assert!(!log.contains(&s.password), "the password reached the log:\n{log}");
}

#[tokio::test]
async fn plain_and_scram_sha_256_log_in_too() {
    let Some(s) = secure() else { return };
    for mechanism in ["PLAIN", "SCRAM-SHA-256"] {
        let topic = unique("secured");
        let gw = Gateway::start(&s.sasl(&topic, mechanism, &s.password)).await;
        gw.wait_readyz(200).await;
        let mut alice = Client::hello(&gw.url(), "alice").await;
        alice.join("lobby").await;
        let id = alice.say("lobby", mechanism).await;
        assert_eq!(alice.next_message().await["id"], id.as_str(), "{mechanism}");
    }
}

#[tokio::test]
async fn client_certificates_over_ssl_chat_end_to_end() {
    let Some(s) = secure() else { return };
    let topic = unique("secured");
    let mut settings = vec![
        ("WHISPER_KAFKA_BROKERS", s.mtls_brokers.as_str()),
        ("WHISPER_KAFKA_TOPIC", &topic),
        ("WHISPER_KAFKA_SECURITY_PROTOCOL", "SSL"),
        ("WHISPER_KAFKA_CA_FILE", &s.ca),
        ("WHISPER_KAFKA_CERT_FILE", &s.cert),
        ("WHISPER_KAFKA_KEY_FILE", &s.key),
    ];
    settings.extend(s.redis(&s.ca));
    let gw = Gateway::start(&settings).await;
    gw.wait_readyz(200).await;
    chat(&gw).await;

    // The listener really asks for the certificate: without it, no entry.
    let without: Vec<_> = settings
        .into_iter()
        .filter(|(k, _)| !["WHISPER_KAFKA_CERT_FILE", "WHISPER_KAFKA_KEY_FILE"].contains(k))
        .chain([("WHISPER_KAFKA_CREATE_TOPIC", "false")])
        .collect();
    let (log, file) = log_file("secured-no-client-cert");
    let gw = Gateway::start_logging_to(&without, file).await;
    wait_for_log(&log, "bad certificate").await;
    gw.wait_readyz(503).await;
}

#[tokio::test]
async fn a_wrong_password_keeps_the_gateway_unready_and_out_of_its_log() {
    let Some(s) = secure() else { return };
    let topic = unique("secured");
    let wrong = unique("not-the-password");
    let mut settings = s.sasl(&topic, "SCRAM-SHA-512", &wrong);
    // The topic is not created here, so the gateway waits for Kafka instead
    // of exiting (what a gateway run by the controller does).
    settings.push(("WHISPER_KAFKA_CREATE_TOPIC", "false"));
    let (log, file) = log_file("secured-wrong-password");
    let gw = Gateway::start_logging_to(&settings, file).await;
    let text = wait_for_log(&log, "Authentication failed").await;
    gw.wait_readyz(503).await;
    assert!(!text.contains(&wrong), "the password reached the log:\n{text}");
}

#[tokio::test]
async fn a_wrong_password_with_topic_creation_exits_saying_why() {
    let Some(s) = secure() else { return };
    let topic = unique("secured");
    let wrong = unique("not-the-password");
    let (log, file) = log_file("secured-wrong-password-exit");
    let status = Gateway::run_to_exit(&s.sasl(&topic, "SCRAM-SHA-512", &wrong), file).await;
    assert!(!status.success());
    let text = std::fs::read_to_string(log).unwrap();
    // The last line, the one that ends the gateway, says why.
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.contains("cannot reach Kafka") && last.contains("Authentication failed"),
        "{text}"
    );
    assert!(!text.contains(&wrong), "the password reached the log:\n{text}");
}

#[tokio::test]
async fn a_broker_certificate_no_known_ca_signed_is_refused() {
    let Some(s) = secure() else { return };
    let topic = unique("secured");
    // Without WHISPER_KAFKA_CA_FILE the system's CAs, which never signed the
    // test broker's certificate.
    let settings: Vec<_> = s
        .sasl(&topic, "SCRAM-SHA-512", &s.password)
        .into_iter()
        .filter(|(k, _)| *k != "WHISPER_KAFKA_CA_FILE")
        .chain([("WHISPER_KAFKA_CREATE_TOPIC", "false")])
        .collect();
    let (log, file) = log_file("secured-no-ca");
    let gw = Gateway::start_logging_to(&settings, file).await;
    wait_for_log(&log, "certificate verify failed").await;
    gw.wait_readyz(503).await;
}

#[tokio::test]
async fn rediss_with_the_wrong_ca_keeps_presence_unready() {
    let Some(s) = secure() else { return };
    let (log, file) = log_file("secured-redis-wrong-ca");
    let gw = Gateway::start_logging_to(&s.redis(&s.other_ca), file).await;
    let text = wait_for_log(&log, "UnknownIssuer").await;
    gw.wait_readyz(503).await;
    assert!(!text.contains(&s.password), "the password reached the log:\n{text}");

    // The right CA on the same URL: ready.
    let gw = Gateway::start(&s.redis(&s.ca)).await;
    gw.wait_readyz(200).await;
}
