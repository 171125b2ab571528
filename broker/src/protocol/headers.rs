//! Typed request headers parsed from [`ExtFields`], and builders for response headers.
//!
//! Request headers borrow their strings from the command's `ExtFields` (no allocation per field). Parsing is
//! lenient in what clients differ on (numbers as text, `true/false/1/0` booleans, optional fields absent) and
//! strict where the broker cannot proceed: a missing required field is a [`HeaderError`] naming it, which
//! processors turn into a response remark.

use super::error::HeaderError;
use super::ext_fields::ExtFields;

/// SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320), SEND_REPLY_MESSAGE(_V2) (324/325).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessageHeader<'a> {
    pub producer_group: &'a str,
    pub topic: &'a str,
    pub default_topic: &'a str,
    pub default_topic_queue_nums: i32,
    pub queue_id: i32,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub flag: i32,
    pub properties: &'a str,
    pub reconsume_times: i32,
    pub unit_mode: bool,
    /// Body is a batch (§8). Always true for code 320.
    pub batch: bool,
    pub max_reconsume_times: Option<i32>,
    pub broker_name: Option<&'a str>,
}

/// Field names of the long (code 10) and letter (V2) forms, in the same order.
struct SendNames {
    producer_group: &'static str,
    topic: &'static str,
    default_topic: &'static str,
    default_topic_queue_nums: &'static str,
    queue_id: &'static str,
    sys_flag: &'static str,
    born_timestamp: &'static str,
    flag: &'static str,
    properties: &'static str,
    reconsume_times: &'static str,
    unit_mode: &'static str,
    max_reconsume_times: &'static str,
    batch: &'static str,
    broker_name: &'static str,
}

const SEND_V1: SendNames = SendNames {
    producer_group: "producerGroup",
    topic: "topic",
    default_topic: "defaultTopic",
    default_topic_queue_nums: "defaultTopicQueueNums",
    queue_id: "queueId",
    sys_flag: "sysFlag",
    born_timestamp: "bornTimestamp",
    flag: "flag",
    properties: "properties",
    reconsume_times: "reconsumeTimes",
    unit_mode: "unitMode",
    max_reconsume_times: "maxReconsumeTimes",
    batch: "batch",
    broker_name: "brokerName",
};

const SEND_V2: SendNames = SendNames {
    producer_group: "a",
    topic: "b",
    default_topic: "c",
    default_topic_queue_nums: "d",
    queue_id: "e",
    sys_flag: "f",
    born_timestamp: "g",
    flag: "h",
    properties: "i",
    reconsume_times: "j",
    unit_mode: "k",
    max_reconsume_times: "l",
    batch: "m",
    broker_name: "n",
};

impl<'a> SendMessageHeader<'a> {
    /// Parses the header of any send code: letter names for 310/320/325, long names otherwise. Code 320 is
    /// always a batch.
    pub fn parse_for_code(code: i32, ext: &'a ExtFields) -> Result<Self, HeaderError> {
        use super::codes::request::{SEND_BATCH_MESSAGE, SEND_MESSAGE_V2, SEND_REPLY_MESSAGE_V2};
        let mut h = match code {
            SEND_MESSAGE_V2 | SEND_BATCH_MESSAGE | SEND_REPLY_MESSAGE_V2 => Self::parse_v2(ext)?,
            _ => Self::parse(ext)?,
        };
        if code == SEND_BATCH_MESSAGE {
            h.batch = true;
        }
        Ok(h)
    }

    /// Long field names (code 10 / 324).
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Self::parse_with(ext, &SEND_V1)
    }

    /// Letter field names a..n (codes 310 / 320 / 325).
    pub fn parse_v2(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Self::parse_with(ext, &SEND_V2)
    }

    fn parse_with(ext: &'a ExtFields, n: &SendNames) -> Result<Self, HeaderError> {
        Ok(Self {
            producer_group: ext.require(n.producer_group)?,
            topic: ext.require(n.topic)?,
            default_topic: ext.get(n.default_topic).unwrap_or("TBW102"),
            default_topic_queue_nums: ext.get_i32(n.default_topic_queue_nums)?.unwrap_or(4),
            queue_id: ext.require_i32(n.queue_id)?,
            sys_flag: ext.get_i32(n.sys_flag)?.unwrap_or(0),
            born_timestamp: ext.get_i64(n.born_timestamp)?.unwrap_or(0),
            flag: ext.get_i32(n.flag)?.unwrap_or(0),
            properties: ext.get(n.properties).unwrap_or(""),
            reconsume_times: ext.get_i32(n.reconsume_times)?.unwrap_or(0),
            unit_mode: ext.get_bool(n.unit_mode)?.unwrap_or(false),
            batch: ext.get_bool(n.batch)?.unwrap_or(false),
            max_reconsume_times: ext.get_i32(n.max_reconsume_times)?,
            broker_name: ext.get(n.broker_name),
        })
    }
}

/// PULL_MESSAGE (11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullMessageHeader<'a> {
    pub consumer_group: &'a str,
    pub topic: &'a str,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub max_msg_nums: i32,
    /// `PullSysFlag` bits, see [`pull_sys_flag`].
    pub sys_flag: i32,
    pub commit_offset: i64,
    pub suspend_timeout_millis: i64,
    pub subscription: Option<&'a str>,
    pub sub_version: i64,
    pub expression_type: Option<&'a str>,
    pub max_msg_bytes: Option<i32>,
}

/// `PullSysFlag` bits.
pub mod pull_sys_flag {
    pub const COMMIT_OFFSET: i32 = 0x1;
    pub const SUSPEND: i32 = 0x2;
    pub const SUBSCRIPTION: i32 = 0x4;
    pub const CLASS_FILTER: i32 = 0x8;
    pub const LITE_PULL: i32 = 0x10;
}

impl<'a> PullMessageHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Ok(Self {
            consumer_group: ext.require("consumerGroup")?,
            topic: ext.require("topic")?,
            queue_id: ext.require_i32("queueId")?,
            queue_offset: ext.require_i64("queueOffset")?,
            max_msg_nums: ext.get_i32("maxMsgNums")?.unwrap_or(32),
            sys_flag: ext.get_i32("sysFlag")?.unwrap_or(0),
            commit_offset: ext.get_i64("commitOffset")?.unwrap_or(0),
            suspend_timeout_millis: ext.get_i64("suspendTimeoutMillis")?.unwrap_or(0),
            subscription: ext.get("subscription"),
            sub_version: ext.get_i64("subVersion")?.unwrap_or(0),
            expression_type: ext.get("expressionType").filter(|s| !s.is_empty()),
            max_msg_bytes: ext.get_i32("maxMsgBytes")?,
        })
    }

    pub fn has_flag(&self, bit: i32) -> bool {
        self.sys_flag & bit != 0
    }
}

/// QUERY_CONSUMER_OFFSET (14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryConsumerOffsetHeader<'a> {
    pub consumer_group: &'a str,
    pub topic: &'a str,
    pub queue_id: i32,
    pub set_zero_if_not_found: Option<bool>,
}

impl<'a> QueryConsumerOffsetHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Ok(Self {
            consumer_group: ext.require("consumerGroup")?,
            topic: ext.require("topic")?,
            queue_id: ext.require_i32("queueId")?,
            set_zero_if_not_found: ext.get_bool("setZeroIfNotFound")?,
        })
    }
}

/// UPDATE_CONSUMER_OFFSET (15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateConsumerOffsetHeader<'a> {
    pub consumer_group: &'a str,
    pub topic: &'a str,
    pub queue_id: i32,
    pub commit_offset: i64,
}

impl<'a> UpdateConsumerOffsetHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Ok(Self {
            consumer_group: ext.require("consumerGroup")?,
            topic: ext.require("topic")?,
            queue_id: ext.require_i32("queueId")?,
            commit_offset: ext.require_i64("commitOffset")?,
        })
    }
}

/// GET_CONSUMER_LIST_BY_GROUP (38); also NOTIFY_CONSUMER_IDS_CHANGED (40) carries just `consumerGroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetConsumerListHeader<'a> {
    pub consumer_group: &'a str,
}

impl<'a> GetConsumerListHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Ok(Self {
            consumer_group: ext.require("consumerGroup")?,
        })
    }
}

/// CONSUMER_SEND_MSG_BACK (36).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSendMsgBackHeader<'a> {
    /// Commit-log offset of the original message.
    pub offset: i64,
    pub group: &'a str,
    pub delay_level: i32,
    pub origin_msg_id: Option<&'a str>,
    pub origin_topic: Option<&'a str>,
    pub unit_mode: bool,
    pub max_reconsume_times: Option<i32>,
}

impl<'a> ConsumerSendMsgBackHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Ok(Self {
            offset: ext.require_i64("offset")?,
            group: ext.require("group")?,
            delay_level: ext.get_i32("delayLevel")?.unwrap_or(0),
            origin_msg_id: ext.get("originMsgId"),
            origin_topic: ext.get("originTopic"),
            unit_mode: ext.get_bool("unitMode")?.unwrap_or(false),
            max_reconsume_times: ext.get_i32("maxReconsumeTimes")?,
        })
    }
}

/// END_TRANSACTION (37).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTransactionHeader<'a> {
    pub producer_group: &'a str,
    pub tran_state_table_offset: i64,
    pub commit_log_offset: i64,
    /// Transaction type bits: 0 unknown, 8 commit, 12 rollback (see [`transaction_type`]).
    pub commit_or_rollback: i32,
    pub from_transaction_check: bool,
    pub msg_id: &'a str,
    pub transaction_id: Option<&'a str>,
    pub topic: Option<&'a str>,
}

/// `MessageSysFlag` transaction type values used by END_TRANSACTION.
pub mod transaction_type {
    pub const NOT_TYPE: i32 = 0x0;
    pub const PREPARED: i32 = 0x4;
    pub const COMMIT: i32 = 0x8;
    pub const ROLLBACK: i32 = 0xC;
}

impl<'a> EndTransactionHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Ok(Self {
            producer_group: ext.require("producerGroup")?,
            tran_state_table_offset: ext.get_i64("tranStateTableOffset")?.unwrap_or(0),
            commit_log_offset: ext.require_i64("commitLogOffset")?,
            commit_or_rollback: ext.require_i32("commitOrRollback")?,
            from_transaction_check: ext.get_bool("fromTransactionCheck")?.unwrap_or(false),
            msg_id: ext.get("msgId").unwrap_or(""),
            transaction_id: ext.get("transactionId"),
            topic: ext.get("topic"),
        })
    }
}

/// QUERY_MESSAGE (12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMessageHeader<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub max_num: i32,
    pub begin_timestamp: i64,
    pub end_timestamp: i64,
    /// `_UNIQUE_KEY_QUERY=true`: match `key` against UNIQ_KEY instead of KEYS.
    pub unique_key_query: bool,
}

impl<'a> QueryMessageHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Ok(Self {
            topic: ext.require("topic")?,
            key: ext.require("key")?,
            max_num: ext.get_i32("maxNum")?.unwrap_or(32),
            begin_timestamp: ext.get_i64("beginTimestamp")?.unwrap_or(0),
            end_timestamp: ext.get_i64("endTimestamp")?.unwrap_or(i64::MAX),
            unique_key_query: ext.get_bool("_UNIQUE_KEY_QUERY")?.unwrap_or(false),
        })
    }
}

/// VIEW_MESSAGE_BY_ID (33).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewMessageByIdHeader<'a> {
    /// Commit-log offset.
    pub offset: i64,
    pub topic: Option<&'a str>,
}

impl<'a> ViewMessageByIdHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Ok(Self {
            offset: ext.require_i64("offset")?,
            topic: ext.get("topic"),
        })
    }
}

/// `boundaryType` of SEARCH_OFFSET_BY_TIMESTAMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BoundaryType {
    /// First offset whose store time is >= the timestamp (default).
    #[default]
    Lower,
    /// Last offset whose store time is <= the timestamp.
    Upper,
}

/// SEARCH_OFFSET_BY_TIMESTAMP (29).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchOffsetHeader<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub timestamp: i64,
    pub boundary_type: BoundaryType,
}

impl<'a> SearchOffsetHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        let boundary_type = match ext.get("boundaryType").map(str::trim) {
            None | Some("") => BoundaryType::Lower,
            Some(v) if v.eq_ignore_ascii_case("LOWER") => BoundaryType::Lower,
            Some(v) if v.eq_ignore_ascii_case("UPPER") => BoundaryType::Upper,
            Some(v) => {
                return Err(HeaderError::Invalid {
                    field: "boundaryType",
                    value: v.chars().take(64).collect(),
                    expected: "LOWER or UPPER",
                })
            }
        };
        Ok(Self {
            topic: ext.require("topic")?,
            queue_id: ext.require_i32("queueId")?,
            timestamp: ext.require_i64("timestamp")?,
            boundary_type,
        })
    }
}

/// A topic + queue id header: GET_MIN_OFFSET (31), GET_EARLIEST_MSG_STORETIME (32) and the base of
/// GET_MAX_OFFSET (30).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueHeader<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
}

impl<'a> QueueHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Ok(Self {
            topic: ext.require("topic")?,
            queue_id: ext.require_i32("queueId")?,
        })
    }
}

pub type GetMinOffsetHeader<'a> = QueueHeader<'a>;
pub type GetEarliestMsgStoretimeHeader<'a> = QueueHeader<'a>;

/// GET_MAX_OFFSET (30).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetMaxOffsetHeader<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    /// 5.x: only count committed (dispatched) messages. Default true.
    pub committed: bool,
}

impl<'a> GetMaxOffsetHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        let q = QueueHeader::parse(ext)?;
        Ok(Self {
            topic: q.topic,
            queue_id: q.queue_id,
            committed: ext.get_bool("committed")?.unwrap_or(true),
        })
    }
}

/// UNREGISTER_CLIENT (35).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnregisterClientHeader<'a> {
    pub client_id: &'a str,
    pub producer_group: Option<&'a str>,
    pub consumer_group: Option<&'a str>,
}

impl<'a> UnregisterClientHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Ok(Self {
            client_id: ext.require("clientID")?,
            producer_group: ext.get("producerGroup").filter(|s| !s.is_empty()),
            consumer_group: ext.get("consumerGroup").filter(|s| !s.is_empty()),
        })
    }
}

/// UPDATE_AND_CREATE_TOPIC (17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicHeader<'a> {
    pub topic: &'a str,
    pub default_topic: Option<&'a str>,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
    pub topic_filter_type: Option<&'a str>,
    pub topic_sys_flag: i32,
    pub order: bool,
}

impl<'a> CreateTopicHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Ok(Self {
            topic: ext.require("topic")?,
            default_topic: ext.get("defaultTopic"),
            read_queue_nums: ext.get_i32("readQueueNums")?.unwrap_or(4),
            write_queue_nums: ext.get_i32("writeQueueNums")?.unwrap_or(4),
            perm: ext.get_i32("perm")?.unwrap_or(6),
            topic_filter_type: ext.get("topicFilterType"),
            topic_sys_flag: ext.get_i32("topicSysFlag")?.unwrap_or(0),
            order: ext.get_bool("order")?.unwrap_or(false),
        })
    }
}

/// GET_ROUTEINFO_BY_TOPIC (105).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRouteInfoHeader<'a> {
    pub topic: &'a str,
    pub accept_standard_json_only: bool,
}

impl<'a> GetRouteInfoHeader<'a> {
    pub fn parse(ext: &'a ExtFields) -> Result<Self, HeaderError> {
        Ok(Self {
            topic: ext.require("topic")?,
            accept_standard_json_only: ext.get_bool("acceptStandardJsonOnly")?.unwrap_or(false),
        })
    }
}

// ---------------------------------------------------------------- response headers and outbound requests

/// SUCCESS header of a send. Writes every value as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessageResponseHeader<'a> {
    /// Offset message id(s), comma-joined for batches.
    pub msg_id: &'a str,
    pub queue_id: i32,
    /// Queue offset of the first message.
    pub queue_offset: i64,
    pub transaction_id: Option<&'a str>,
    /// `MSG_REGION`, e.g. "DefaultRegion".
    pub region: Option<&'a str>,
    /// `TRACE_ON`.
    pub trace_on: Option<bool>,
}

impl SendMessageResponseHeader<'_> {
    pub fn write_to(&self, ext: &mut ExtFields) {
        ext.insert("msgId", self.msg_id);
        ext.insert_display("queueId", self.queue_id);
        ext.insert_display("queueOffset", self.queue_offset);
        if let Some(t) = self.transaction_id {
            ext.insert("transactionId", t);
        }
        if let Some(r) = self.region {
            ext.insert("MSG_REGION", r);
        }
        if let Some(t) = self.trace_on {
            ext.insert_display("TRACE_ON", t);
        }
    }

    pub fn to_ext_fields(&self) -> ExtFields {
        let mut ext = ExtFields::with_capacity(6);
        self.write_to(&mut ext);
        ext
    }
}

/// Header of every pull response (SUCCESS, PULL_NOT_FOUND, PULL_RETRY_IMMEDIATELY, PULL_OFFSET_MOVED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullMessageResponseHeader {
    pub suggest_which_broker_id: i64,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
}

impl PullMessageResponseHeader {
    pub fn write_to(&self, ext: &mut ExtFields) {
        ext.insert_display("suggestWhichBrokerId", self.suggest_which_broker_id);
        ext.insert_display("nextBeginOffset", self.next_begin_offset);
        ext.insert_display("minOffset", self.min_offset);
        ext.insert_display("maxOffset", self.max_offset);
    }

    pub fn to_ext_fields(&self) -> ExtFields {
        let mut ext = ExtFields::with_capacity(4);
        self.write_to(&mut ext);
        ext
    }
}

/// Header of CHECK_TRANSACTION_STATE (39), broker -> producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTransactionStateHeader<'a> {
    pub topic: &'a str,
    pub tran_state_table_offset: i64,
    pub commit_log_offset: i64,
    /// UNIQ_KEY of the half message.
    pub msg_id: &'a str,
    pub transaction_id: &'a str,
    pub offset_msg_id: &'a str,
}

impl CheckTransactionStateHeader<'_> {
    pub fn to_ext_fields(&self) -> ExtFields {
        let mut ext = ExtFields::with_capacity(6);
        ext.insert("topic", self.topic);
        ext.insert_display("tranStateTableOffset", self.tran_state_table_offset);
        ext.insert_display("commitLogOffset", self.commit_log_offset);
        ext.insert("msgId", self.msg_id);
        ext.insert("transactionId", self.transaction_id);
        ext.insert("offsetMsgId", self.offset_msg_id);
        ext
    }
}

/// Header of NOTIFY_CONSUMER_IDS_CHANGED (40), broker -> consumer.
pub fn notify_consumer_ids_changed(consumer_group: &str) -> ExtFields {
    let mut ext = ExtFields::with_capacity(1);
    ext.insert("consumerGroup", consumer_group);
    ext
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codes::request;

    fn ext(json: &str) -> ExtFields {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn send_v1_rust_client() {
        let e = ext(
            r#"{"batch":"false","bname":"broker-a","bornTimestamp":"1795480110217","defaultTopic":"TBW102",
            "defaultTopicQueueNums":"4","flag":"0","producerGroup":"PG_Q","properties":"KEYS\u0001k\u0002",
            "queueId":"2","sysFlag":"0","topic":"T","reconsumeTimes":"0","unitMode":"false","maxReconsumeTimes":"16"}"#,
        );
        let h = SendMessageHeader::parse_for_code(request::SEND_MESSAGE, &e).unwrap();
        assert_eq!(h.producer_group, "PG_Q");
        assert_eq!(h.topic, "T");
        assert_eq!(h.queue_id, 2);
        assert_eq!(h.born_timestamp, 1795480110217);
        assert_eq!(h.properties, "KEYS\u{1}k\u{2}");
        assert!(!h.batch);
        assert_eq!(h.max_reconsume_times, Some(16));
    }

    #[test]
    fn send_v2_cpp_batch() {
        let e = ext(
            r#"{"a":"PG_X","b":"TopicX","c":"TBW102","d":4,"e":0,"f":0,"g":"1795480110217","h":0,
            "i":"WAIT\u0001true\u0002","j":"0","k":"0","l":16,"m":"1"}"#,
        );
        let h = SendMessageHeader::parse_for_code(request::SEND_MESSAGE_V2, &e).unwrap();
        assert_eq!(
            (h.producer_group, h.topic, h.queue_id),
            ("PG_X", "TopicX", 0)
        );
        assert!(h.batch);
        assert!(!h.unit_mode);
        let mut e2 = e.clone();
        e2.remove("m");
        assert!(
            SendMessageHeader::parse_for_code(request::SEND_BATCH_MESSAGE, &e2)
                .unwrap()
                .batch
        );
        assert!(
            !SendMessageHeader::parse_for_code(request::SEND_REPLY_MESSAGE_V2, &e2)
                .unwrap()
                .batch
        );
        e2.remove("b");
        assert_eq!(
            SendMessageHeader::parse_v2(&e2).unwrap_err(),
            HeaderError::Missing("b")
        );
        // Long names do not satisfy the V2 parser and vice versa.
        assert!(SendMessageHeader::parse(&e).is_err());
    }

    #[test]
    fn pull_headers_of_three_clients() {
        let java = ext(
            r#"{"consumerGroup":"CG_TAG","topic":"T","queueId":0,"queueOffset":0,"maxMsgNums":32,"sysFlag":6,
            "commitOffset":0,"suspendTimeoutMillis":15000,"subscription":"TagA","subVersion":1795480276210}"#,
        );
        let h = PullMessageHeader::parse(&java).unwrap();
        assert!(h.has_flag(pull_sys_flag::SUSPEND) && h.has_flag(pull_sys_flag::SUBSCRIPTION));
        assert_eq!(h.subscription, Some("TagA"));
        assert_eq!(h.expression_type, None);
        let rust = ext(
            r#"{"bname":"broker-a","commitOffset":"0","consumerGroup":"CG","expressionType":"TAG","maxMsgBytes":"262144",
            "maxMsgNums":"32","queueId":"3","queueOffset":"0","subVersion":"1795480196640","subscription":"",
            "suspendTimeoutMillis":"15000","sysFlag":"2","topic":"%RETRY%CG"}"#,
        );
        let h = PullMessageHeader::parse(&rust).unwrap();
        assert_eq!(h.queue_id, 3);
        assert_eq!(h.max_msg_bytes, Some(262144));
        assert_eq!(h.suspend_timeout_millis, 15000);
        let mut bad = rust.clone();
        bad.insert("queueOffset", "zero");
        assert!(matches!(
            PullMessageHeader::parse(&bad),
            Err(HeaderError::Invalid {
                field: "queueOffset",
                ..
            })
        ));
    }

    #[test]
    fn small_headers() {
        let e = ext(
            r#"{"consumerGroup":"G","topic":"T","queueId":"1","commitOffset":"5","setZeroIfNotFound":"false"}"#,
        );
        assert_eq!(
            UpdateConsumerOffsetHeader::parse(&e).unwrap().commit_offset,
            5
        );
        assert_eq!(
            QueryConsumerOffsetHeader::parse(&e)
                .unwrap()
                .set_zero_if_not_found,
            Some(false)
        );
        assert_eq!(
            GetConsumerListHeader::parse(&e).unwrap().consumer_group,
            "G"
        );
        assert_eq!(QueueHeader::parse(&e).unwrap().queue_id, 1);
        assert!(GetMaxOffsetHeader::parse(&e).unwrap().committed);

        let e = ext(
            r#"{"producerGroup":"P","tranStateTableOffset":"0","commitLogOffset":"5000",
            "commitOrRollback":"8","fromTransactionCheck":"1","msgId":"M","transactionId":"X"}"#,
        );
        let h = EndTransactionHeader::parse(&e).unwrap();
        assert_eq!(h.commit_or_rollback, transaction_type::COMMIT);
        assert!(h.from_transaction_check);

        let e = ext(
            r#"{"offset":"77","group":"G","delayLevel":"0","originMsgId":"O","unitMode":false,"maxReconsumeTimes":16}"#,
        );
        let h = ConsumerSendMsgBackHeader::parse(&e).unwrap();
        assert_eq!((h.offset, h.max_reconsume_times), (77, Some(16)));
        assert_eq!(ViewMessageByIdHeader::parse(&e).unwrap().offset, 77);

        let e = ext(
            r#"{"topic":"T","key":"k","maxNum":32,"beginTimestamp":0,"endTimestamp":9,"_UNIQUE_KEY_QUERY":"true"}"#,
        );
        assert!(QueryMessageHeader::parse(&e).unwrap().unique_key_query);

        let e = ext(r#"{"topic":"T","queueId":0,"timestamp":5,"boundaryType":"UPPER"}"#);
        assert_eq!(
            SearchOffsetHeader::parse(&e).unwrap().boundary_type,
            BoundaryType::Upper
        );

        let e = ext(r#"{"clientID":"c@1","producerGroup":"","consumerGroup":"G"}"#);
        let h = UnregisterClientHeader::parse(&e).unwrap();
        assert_eq!((h.producer_group, h.consumer_group), (None, Some("G")));

        let e = ext(r#"{"topic":"T","readQueueNums":8,"writeQueueNums":8,"perm":6,"order":false}"#);
        assert_eq!(CreateTopicHeader::parse(&e).unwrap().read_queue_nums, 8);
        assert_eq!(GetRouteInfoHeader::parse(&e).unwrap().topic, "T");
        assert_eq!(
            GetRouteInfoHeader::parse(&ExtFields::new()).unwrap_err(),
            HeaderError::Missing("topic")
        );
    }

    #[test]
    fn response_headers_are_strings() {
        let ext = SendMessageResponseHeader {
            msg_id: "7F00000100002A9F0000000000000000",
            queue_id: 1,
            queue_offset: 42,
            transaction_id: None,
            region: Some("DefaultRegion"),
            trace_on: Some(true),
        }
        .to_ext_fields();
        assert_eq!(ext.get("queueOffset"), Some("42"));
        assert_eq!(ext.get("TRACE_ON"), Some("true"));
        assert_eq!(ext.get("transactionId"), None);
        let p = PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: 10,
            min_offset: 0,
            max_offset: 10,
        }
        .to_ext_fields();
        assert_eq!(p.get("nextBeginOffset"), Some("10"));
        assert_eq!(p.len(), 4);
    }
}
