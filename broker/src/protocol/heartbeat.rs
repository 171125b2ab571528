//! JSON bodies of client membership requests: HEART_BEAT (34) `HeartbeatData`, LOCK/UNLOCK_BATCH_MQ (41/42),
//! GET_CONSUMER_LIST_BY_GROUP (38) response and CHECK_CLIENT_CONFIG (46) request.
//!
//! Lenient as REMOTING.md §10 requires: enums arrive as names (Java, ali-ons, Rust port) or Java ordinals
//! (C++); `subVersion` may be a number or a string; booleans may be strings; a missing `expressionType` means
//! TAG; null lists are empty; unknown fields (`heartbeatFingerprint`, `withoutSub`, ...) are ignored.
//! Serialization emits names, so our own clients produce what Java would.

use std::fmt;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decodes a JSON body.
pub fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Encodes a JSON body.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs into a Vec cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Java's `String.hashCode` (UTF-16 code units), used for tag hash codes. Clients' `codeSet` is not trusted.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

macro_rules! lenient_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $ord:literal => $text:literal),+ $(,)? } default $def:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(
                #[doc = $text]
                $variant,
            )+
        }
        impl Default for $name {
            fn default() -> Self {
                Self::$def
            }
        }
        impl $name {
            /// The Java enum name.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }
            /// The Java ordinal.
            pub fn ordinal(self) -> i64 {
                match self { $(Self::$variant => $ord,)+ }
            }
            pub fn from_ordinal(n: i64) -> Option<Self> {
                match n { $($ord => Some(Self::$variant),)+ _ => None }
            }
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " name or ordinal"))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        if let Ok(n) = v.trim().parse::<i64>() {
                            return self.visit_i64(n);
                        }
                        $name::from_name(v.trim()).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$name, E> {
                        $name::from_ordinal(v).ok_or_else(|| E::invalid_value(de::Unexpected::Signed(v), &self))
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$name, E> {
                        self.visit_i64(i64::try_from(v).unwrap_or(-1))
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<$name, E> {
                        Ok($name::$def)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

lenient_enum!(
    /// `ConsumeType`.
    ConsumeType {
        ConsumeActively = 0 => "CONSUME_ACTIVELY",
        ConsumePassively = 1 => "CONSUME_PASSIVELY",
    } default ConsumePassively
);

lenient_enum!(
    /// `MessageModel`.
    MessageModel {
        Broadcasting = 0 => "BROADCASTING",
        Clustering = 1 => "CLUSTERING",
    } default Clustering
);

lenient_enum!(
    /// `ConsumeFromWhere`; the deprecated variants keep their place in Java's ordinal numbering.
    ConsumeFromWhere {
        LastOffset = 0 => "CONSUME_FROM_LAST_OFFSET",
        LastOffsetAndFromMinWhenBootFirst = 1 => "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        MinOffset = 2 => "CONSUME_FROM_MIN_OFFSET",
        MaxOffset = 3 => "CONSUME_FROM_MAX_OFFSET",
        FirstOffset = 4 => "CONSUME_FROM_FIRST_OFFSET",
        Timestamp = 5 => "CONSUME_FROM_TIMESTAMP",
    } default LastOffset
);

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A boolean that may arrive as `true`, `"true"`, `"1"`, `1`, or null (false).
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            let v = v.trim();
            Ok(v.eq_ignore_ascii_case("true") || v == "1")
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    d.deserialize_any(V)
}

/// An i64 that may arrive as a number or a numeric string (`subVersion`); unparsable text is 0.
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            Ok(i64::try_from(v).unwrap_or(i64::MAX))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            Ok(v as i64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            Ok(v.trim().parse().unwrap_or(0))
        }
        fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
    }
    d.deserialize_any(V)
}

fn default_expression_type() -> String {
    "TAG".to_string()
}

fn tag_expression_type<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(default_expression_type))
}

/// HEART_BEAT (34) body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    #[serde(rename = "clientID", default, deserialize_with = "null_default")]
    pub client_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub producer_data_set: Vec<ProducerData>,
    #[serde(default, deserialize_with = "null_default")]
    pub consumer_data_set: Vec<ConsumerData>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    #[serde(default, deserialize_with = "null_default")]
    pub group_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    #[serde(default, deserialize_with = "null_default")]
    pub group_name: String,
    #[serde(default)]
    pub consume_type: ConsumeType,
    #[serde(default)]
    pub message_model: MessageModel,
    #[serde(default)]
    pub consume_from_where: ConsumeFromWhere,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub unit_mode: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub subscription_data_set: Vec<SubscriptionData>,
}

/// One subscription (`SubscriptionData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    #[serde(default, deserialize_with = "null_default")]
    pub topic: String,
    #[serde(default, deserialize_with = "null_default")]
    pub sub_string: String,
    #[serde(default, deserialize_with = "null_default")]
    pub tags_set: Vec<String>,
    /// As sent by the client; C++ sends wrong values, so recompute with [`java_string_hash`].
    #[serde(default, deserialize_with = "null_default")]
    pub code_set: Vec<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub sub_version: i64,
    /// "TAG" when absent.
    #[serde(
        default = "default_expression_type",
        deserialize_with = "tag_expression_type"
    )]
    pub expression_type: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub class_filter_mode: bool,
}

impl Default for SubscriptionData {
    fn default() -> Self {
        Self {
            topic: String::new(),
            sub_string: String::new(),
            tags_set: Vec::new(),
            code_set: Vec::new(),
            sub_version: 0,
            expression_type: default_expression_type(),
            class_filter_mode: false,
        }
    }
}

/// A message queue as named in lock bodies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub broker_name: String,
    #[serde(default)]
    pub queue_id: i32,
}

/// LOCK_BATCH_MQ (41) and UNLOCK_BATCH_MQ (42) request body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchRequestBody {
    #[serde(default, deserialize_with = "null_default")]
    pub consumer_group: String,
    #[serde(default, deserialize_with = "null_default")]
    pub client_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub mq_set: Vec<MessageQueue>,
}

pub type UnlockBatchRequestBody = LockBatchRequestBody;

/// LOCK_BATCH_MQ (41) response body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet", default, deserialize_with = "null_default")]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

/// GET_CONSUMER_LIST_BY_GROUP (38) response body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetConsumerListResponseBody {
    #[serde(default, deserialize_with = "null_default")]
    pub consumer_id_list: Vec<String>,
}

/// CHECK_CLIENT_CONFIG (46) request body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckClientConfigBody {
    #[serde(default, deserialize_with = "null_default")]
    pub client_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub group: String,
    #[serde(default)]
    pub subscription_data: Option<SubscriptionData>,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_port_heartbeat() {
        let body = br#"{"clientID":"192.0.2.2@12350#1795480195629509367","producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}],
      "consumerDataSet":[{"groupName":"CG_RS_TAG","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING",
      "consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[{"classFilterMode":false,"topic":"TopicRs12350",
      "subString":"TagA","tagsSet":["TagA"],"codeSet":[2598919],"subVersion":0,"expressionType":"TAG"}],
      "unitMode":false}],"heartbeatFingerprint":0,"withoutSub":false}"#;
        let h: HeartbeatData = from_json(body).unwrap();
        assert_eq!(h.client_id, "192.0.2.2@12350#1795480195629509367");
        assert_eq!(h.producer_data_set[0].group_name, "CLIENT_INNER_PRODUCER");
        let c = &h.consumer_data_set[0];
        assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(c.message_model, MessageModel::Clustering);
        let s = &c.subscription_data_set[0];
        assert_eq!(s.code_set[0], java_string_hash("TagA") as i64);
    }

    #[test]
    fn cpp_heartbeat_with_ordinals() {
        let body = br#"{"clientID":"12484-127.0.0.1@DEFAULT","consumerDataSet":[{"consumeFromWhere":4,"consumeType":1,"groupName":"CG_CPP",
      "messageModel":0,"subscriptionDataSet":[{"subString":"*","subVersion":"1795480235943","topic":"%RETRY%CG_CPP"},
      {"codeSet":[0],"subString":"TagA","subVersion":"1795480235943","tagsSet":["TagA"],"topic":"TopicCpp80235"}]}],
      "producerDataSet":[{"groupName":"PG_CPP"},{"groupName":"PG_CPP_TX"}]}"#;
        let h: HeartbeatData = from_json(body).unwrap();
        let c = &h.consumer_data_set[0];
        assert_eq!(c.consume_from_where, ConsumeFromWhere::FirstOffset);
        assert_eq!(c.message_model, MessageModel::Broadcasting);
        assert_eq!(c.subscription_data_set[0].sub_version, 1795480235943);
        assert_eq!(c.subscription_data_set[1].expression_type, "TAG");
        assert_eq!(h.producer_data_set.len(), 2);
        // Our own encoding uses names and round-trips.
        let again: HeartbeatData = from_json(&to_json(&h)).unwrap();
        assert_eq!(again, h);
        assert!(String::from_utf8(to_json(&h))
            .unwrap()
            .contains("\"CONSUME_FROM_FIRST_OFFSET\""));
    }

    #[test]
    fn lenient_edges() {
        let h: HeartbeatData =
            from_json(br#"{"clientID":"c","producerDataSet":null,"consumerDataSet":[{"groupName":"g","unitMode":"1",
                "consumeType":"0","subscriptionDataSet":[{"topic":"t","expressionType":null}]}]}"#)
                .unwrap();
        let c = &h.consumer_data_set[0];
        assert!(c.unit_mode);
        assert_eq!(c.consume_type, ConsumeType::ConsumeActively);
        assert_eq!(c.subscription_data_set[0].expression_type, "TAG");
        assert!(
            from_json::<HeartbeatData>(br#"{"consumerDataSet":[{"consumeType":"NOPE"}]}"#).is_err()
        );
        assert!(
            from_json::<HeartbeatData>(br#"{"consumerDataSet":[{"messageModel":9}]}"#).is_err()
        );
        assert!(from_json::<HeartbeatData>(b"\xff").is_err());
    }

    #[test]
    fn lock_and_list_bodies() {
        let req: LockBatchRequestBody = from_json(
            br#"{"consumerGroup":"G","clientId":"c","mqSet":[{"topic":"T","brokerName":"b","queueId":1}],"onlyThisBroker":false}"#,
        )
        .unwrap();
        assert_eq!(req.mq_set[0].queue_id, 1);
        let resp = LockBatchResponseBody {
            lock_ok_mq_set: req.mq_set.clone(),
        };
        assert_eq!(
            String::from_utf8(to_json(&resp)).unwrap(),
            r#"{"lockOKMQSet":[{"topic":"T","brokerName":"b","queueId":1}]}"#
        );
        let list = GetConsumerListResponseBody {
            consumer_id_list: vec!["a".into()],
        };
        assert_eq!(
            String::from_utf8(to_json(&list)).unwrap(),
            r#"{"consumerIdList":["a"]}"#
        );
        let cc: CheckClientConfigBody = from_json(
            br#"{"clientId":"c","group":"g","subscriptionData":{"topic":"t","subString":"a > 1","expressionType":"SQL92"},"namespace":null}"#,
        )
        .unwrap();
        assert_eq!(cc.subscription_data.unwrap().expression_type, "SQL92");
    }

    #[test]
    fn java_hash() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("TagA"), 2598919);
        assert_eq!(java_string_hash("hello world, a long string"), {
            let mut h: i32 = 0;
            for c in "hello world, a long string".chars() {
                h = h.wrapping_mul(31).wrapping_add(c as i32);
            }
            h
        });
    }
}
