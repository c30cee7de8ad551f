//! The Kafka record of a chat message: the storage format, kept apart from
//! the protocol's frames and converted explicitly, so that a protocol change
//! cannot silently change records still in flight during a rolling upgrade.
//!
//! - Version 1 (no `v` field): `{room, id, user: {id, name}, text, ts,
//!   expires_at}`, what gateways wrote before records had a type of their own.
//! - Version 2 (`"v": 2`): version 1 and `enc`, the end-to-end encryption
//!   scheme of `text` when it is ciphertext.
//!
//! A gateway reads every version it knows; a record of a newer version is
//! read for the fields it knows (a newer writer only adds fields), so gateways
//! of two versions can share a topic in either order of upgrade.

use serde::{Deserialize, Serialize};

use crate::protocol::{ChatMessage, Member};

/// The version this gateway writes.
pub const VERSION: u32 = 2;

/// A chat message as stored in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Absent in version 1.
    #[serde(default = "version_1")]
    pub v: u32,
    pub room: String,
    pub id: String,
    pub user: RecordUser,
    pub text: String,
    pub ts: i64,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enc: Option<String>,
}

/// The sender, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordUser {
    pub id: String,
    pub name: String,
}

fn version_1() -> u32 {
    1
}

impl From<&ChatMessage> for Record {
    fn from(m: &ChatMessage) -> Self {
        Self {
            v: VERSION,
            room: m.room.clone(),
            id: m.id.clone(),
            user: RecordUser {
                id: m.user.id.clone(),
                name: m.user.name.clone(),
            },
            text: m.text.clone(),
            ts: m.ts,
            expires_at: m.expires_at,
            enc: m.enc.clone(),
        }
    }
}

impl From<Record> for ChatMessage {
    fn from(r: Record) -> Self {
        Self {
            room: r.room,
            id: r.id,
            user: Member {
                id: r.user.id,
                name: r.user.name,
            },
            text: r.text,
            ts: r.ts,
            expires_at: r.expires_at,
            enc: r.enc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_version_1_record_as_the_previous_gateway_wrote_it() {
        let v1 = r#"{"room":"r","id":"1","user":{"id":"u","name":"n"},"text":"t","ts":5,"expires_at":9}"#;
        let record: Record = serde_json::from_str(v1).unwrap();
        assert_eq!(record.v, 1);
        let message = ChatMessage::from(record);
        assert_eq!((message.text.as_str(), message.expires_at, message.enc), ("t", 9, None));
    }

    #[test]
    fn writes_version_2_and_reads_it_back_and_a_newer_one_for_what_it_knows() {
        let message = ChatMessage {
            room: "r".into(),
            id: "c-1".into(),
            user: Member {
                id: "u".into(),
                name: "n".into(),
            },
            text: "ciphertext".into(),
            ts: 5,
            expires_at: 9,
            enc: Some("aes-gcm-v1".into()),
        };
        let json = serde_json::to_value(Record::from(&message)).unwrap();
        assert_eq!(json["v"], 2);
        assert_eq!(json["enc"], "aes-gcm-v1");
        let back: Record = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(ChatMessage::from(back), message);
        let mut newer = json;
        newer["v"] = 3.into();
        newer["added_later"] = "x".into();
        let read: Record = serde_json::from_value(newer).unwrap();
        assert_eq!(ChatMessage::from(read), message);
    }
}
