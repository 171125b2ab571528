//! Request and response codes of the RocketMQ remoting protocol, and the client language enum.
//!
//! Requests and responses share one numbering space on the wire (`code` in the header); which table applies
//! depends on the RESPONSE flag bit. Names follow RocketMQ's `RequestCode` / `ResponseCode` so that people
//! grepping for the Java names find them here.

/// Request codes (`RequestCode`).
pub mod request {
    pub const SEND_MESSAGE: i32 = 10;
    pub const PULL_MESSAGE: i32 = 11;
    pub const QUERY_MESSAGE: i32 = 12;
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    pub const UPDATE_CONSUMER_OFFSET: i32 = 15;
    pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    pub const GET_ALL_TOPIC_CONFIG: i32 = 21;
    pub const DELETE_TOPIC_IN_BROKER: i32 = 215;
    pub const DELETE_TOPIC_IN_NAMESRV: i32 = 216;
    pub const SEARCH_OFFSET_BY_TIMESTAMP: i32 = 29;
    pub const GET_MAX_OFFSET: i32 = 30;
    pub const GET_MIN_OFFSET: i32 = 31;
    pub const GET_EARLIEST_MSG_STORETIME: i32 = 32;
    pub const VIEW_MESSAGE_BY_ID: i32 = 33;
    pub const HEART_BEAT: i32 = 34;
    pub const UNREGISTER_CLIENT: i32 = 35;
    pub const CONSUMER_SEND_MSG_BACK: i32 = 36;
    pub const END_TRANSACTION: i32 = 37;
    pub const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    pub const CHECK_TRANSACTION_STATE: i32 = 39;
    pub const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
    pub const LOCK_BATCH_MQ: i32 = 41;
    pub const UNLOCK_BATCH_MQ: i32 = 42;
    pub const CHECK_CLIENT_CONFIG: i32 = 46;
    pub const GET_KV_CONFIG: i32 = 101;
    pub const REGISTER_BROKER: i32 = 103;
    pub const UNREGISTER_BROKER: i32 = 104;
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    pub const GET_ALL_TOPIC_LIST_FROM_NAMESERVER: i32 = 206;
    pub const GET_KV_CONFIG_BY_VALUE: i32 = 217;
    pub const RESET_CONSUMER_CLIENT_OFFSET: i32 = 220;
    pub const INVOKE_BROKER_TO_RESET_OFFSET: i32 = 222;
    pub const GET_CONSUMER_RUNNING_INFO: i32 = 307;
    pub const CONSUME_MESSAGE_DIRECTLY: i32 = 309;
    pub const SEND_MESSAGE_V2: i32 = 310;
    pub const SEND_BATCH_MESSAGE: i32 = 320;
    pub const SEND_REPLY_MESSAGE: i32 = 324;
    pub const SEND_REPLY_MESSAGE_V2: i32 = 325;
    pub const QUERY_ASSIGNMENT: i32 = 400;
    pub const SET_MESSAGE_REQUEST_MODE: i32 = 401;
    pub const POP_MESSAGE: i32 = 200050;
    pub const ACK_MESSAGE: i32 = 200051;
    pub const CHANGE_MESSAGE_INVISIBLETIME: i32 = 200053;
    pub const BATCH_ACK_MESSAGE: i32 = 200151;

    /// First code of the private range reserved for wasmq's own admin requests (plugins, metrics, ...).
    /// RocketMQ does not use `10000..20000`; wasmq codes are `WASMQ_ADMIN_BASE + n`.
    pub const WASMQ_ADMIN_BASE: i32 = 10000;
    /// Plugin administration (body = the module; `name`, `config` = JSON `[[k, v], ...]`).
    pub const PLUGIN_LOAD: i32 = WASMQ_ADMIN_BASE + 1;
    /// As PLUGIN_LOAD; without `config` the current config is kept.
    pub const PLUGIN_UPGRADE: i32 = WASMQ_ADMIN_BASE + 2;
    /// `name`, `force`.
    pub const PLUGIN_UNLOAD: i32 = WASMQ_ADMIN_BASE + 3;
    /// Response body: JSON array of the plugins.
    pub const PLUGIN_LIST: i32 = WASMQ_ADMIN_BASE + 4;
    /// Dry run of an expression: `name` or `type`, `expression`, and `topic` + `count` (the last
    /// stored messages) or a body of sample messages (JSON).
    pub const PLUGIN_TEST: i32 = WASMQ_ADMIN_BASE + 5;
    /// Binds a plugin to a topic: `kind` (`txn-checker`), `topic` (or `*`), `name`.
    pub const PLUGIN_BIND: i32 = WASMQ_ADMIN_BASE + 6;
    /// Removes a binding: `kind`, `topic`.
    pub const PLUGIN_UNBIND: i32 = WASMQ_ADMIN_BASE + 7;
    /// Response body: JSON array of `{kind, topic, plugin}`.
    pub const PLUGIN_BINDINGS: i32 = WASMQ_ADMIN_BASE + 8;
    /// Pending half messages; optional `topic`. Response body: JSON array.
    pub const TXN_LIST: i32 = WASMQ_ADMIN_BASE + 9;
    /// An operator's decision on a pending half message: `offset` (commit log offset of the
    /// half message), `action` = `commit` | `rollback`.
    pub const TXN_RESOLVE: i32 = WASMQ_ADMIN_BASE + 10;
    /// A broker's replication state (role, slaves and their lag, or its master). Response body:
    /// JSON (`context::replication::ReplicationStatus`).
    pub const HA_STATUS: i32 = WASMQ_ADMIN_BASE + 11;
    /// A master's metadata for its slaves (topics, offsets, delay and timer progress,
    /// subscription groups, plugin registry and bindings). Response body: JSON.
    pub const HA_METADATA: i32 = WASMQ_ADMIN_BASE + 12;
    /// One plugin module by `sha256` (a slave copying the registry). Response body: the module.
    pub const HA_PLUGIN_MODULE: i32 = WASMQ_ADMIN_BASE + 13;
    /// Offsets clients committed on a slave while its master was away, sent to the master: body
    /// JSON `{"offsetTable": {"topic@group": {"queueId": offset}}}`; the master commits each one
    /// only where it is larger than its own (never lowers). Response body: JSON `{"moved": n}`.
    /// A slave refuses it (SERVICE_NOT_AVAILABLE).
    pub const HA_MERGE_OFFSETS: i32 = WASMQ_ADMIN_BASE + 14;
    /// Sets (replaces) the runtime quota of a `topic` or a consumer `group` (exactly one):
    /// `msgsPerSec` and/or `bytesPerSec`, each a whole number in `1..=10^9` / `1..=10^12`;
    /// `dryRun=true` only checks. Persisted in `config/quotas.json`. A slave refuses it.
    pub const QUOTA_SET: i32 = WASMQ_ADMIN_BASE + 15;
    /// The quotas in force with their source, current rates and the flow-control rejection
    /// counters. Response body: JSON `{"quotas": [...], "rejections": [...]}`.
    pub const QUOTA_LIST: i32 = WASMQ_ADMIN_BASE + 16;
    /// Removes the runtime quota of a `topic` or `group` (a configured one of that name applies
    /// again; one set only by the config file is refused); `dryRun=true` only checks. A slave
    /// refuses it.
    pub const QUOTA_REMOVE: i32 = WASMQ_ADMIN_BASE + 17;
    /// End (exclusive) of the wasmq admin range.
    pub const WASMQ_ADMIN_END: i32 = 20000;

    /// True when `code` is in wasmq's private admin range.
    pub fn is_wasmq_admin(code: i32) -> bool {
        (WASMQ_ADMIN_BASE..WASMQ_ADMIN_END).contains(&code)
    }
}

/// Response codes (`RemotingSysResponseCode` + `ResponseCode`).
pub mod response {
    pub const SUCCESS: i32 = 0;
    pub const SYSTEM_ERROR: i32 = 1;
    pub const SYSTEM_BUSY: i32 = 2;
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    pub const TRANSACTION_FAILED: i32 = 4;
    pub const FLUSH_DISK_TIMEOUT: i32 = 10;
    pub const SLAVE_NOT_AVAILABLE: i32 = 11;
    pub const FLUSH_SLAVE_TIMEOUT: i32 = 12;
    pub const MESSAGE_ILLEGAL: i32 = 13;
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    pub const VERSION_NOT_SUPPORTED: i32 = 15;
    pub const NO_PERMISSION: i32 = 16;
    pub const TOPIC_NOT_EXIST: i32 = 17;
    pub const TOPIC_EXIST_ALREADY: i32 = 18;
    pub const PULL_NOT_FOUND: i32 = 19;
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    pub const PULL_OFFSET_MOVED: i32 = 21;
    pub const QUERY_NOT_FOUND: i32 = 22;
    pub const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
    pub const SUBSCRIPTION_NOT_EXIST: i32 = 24;
    pub const SUBSCRIPTION_NOT_LATEST: i32 = 25;
    pub const SUBSCRIPTION_GROUP_NOT_EXIST: i32 = 26;
    pub const FILTER_DATA_NOT_EXIST: i32 = 27;
    pub const FILTER_DATA_NOT_LATEST: i32 = 28;
    pub const INVALID_PARAMETER: i32 = 29;
    pub const TRANSACTION_SHOULD_COMMIT: i32 = 200;
    pub const TRANSACTION_SHOULD_ROLLBACK: i32 = 201;
    pub const TRANSACTION_STATE_UNKNOW: i32 = 202;
    pub const CONSUMER_NOT_ONLINE: i32 = 206;
    pub const CONSUME_MSG_TIMEOUT: i32 = 207;
    pub const NO_MESSAGE: i32 = 208;
    pub const POLLING_FULL: i32 = 209;
    pub const POLLING_TIMEOUT: i32 = 210;
    pub const FLOW_CONTROL: i32 = 215;
    pub const GO_AWAY: i32 = 1500;
}

/// The client implementation language (`LanguageCode`), sent as a name in JSON headers and as an ordinal in
/// binary headers. Anything unrecognised becomes [`LanguageCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LanguageCode {
    Java = 0,
    Cpp = 1,
    Dotnet = 2,
    Python = 3,
    Delphi = 4,
    Erlang = 5,
    Ruby = 6,
    #[default]
    Other = 7,
    Http = 8,
    Go = 9,
    Php = 10,
    Oms = 11,
    Rust = 12,
    NodeJs = 13,
}

impl LanguageCode {
    const ALL: [LanguageCode; 14] = [
        Self::Java,
        Self::Cpp,
        Self::Dotnet,
        Self::Python,
        Self::Delphi,
        Self::Erlang,
        Self::Ruby,
        Self::Other,
        Self::Http,
        Self::Go,
        Self::Php,
        Self::Oms,
        Self::Rust,
        Self::NodeJs,
    ];

    /// The Java enum name, as sent in JSON headers.
    pub fn name(self) -> &'static str {
        match self {
            Self::Java => "JAVA",
            Self::Cpp => "CPP",
            Self::Dotnet => "DOTNET",
            Self::Python => "PYTHON",
            Self::Delphi => "DELPHI",
            Self::Erlang => "ERLANG",
            Self::Ruby => "RUBY",
            Self::Other => "OTHER",
            Self::Http => "HTTP",
            Self::Go => "GO",
            Self::Php => "PHP",
            Self::Oms => "OMS",
            Self::Rust => "RUST",
            Self::NodeJs => "NODE_JS",
        }
    }

    /// The Java ordinal, as sent in binary headers.
    pub fn ordinal(self) -> u8 {
        self as u8
    }

    /// From an ordinal; unknown ordinals map to `Other`.
    pub fn from_ordinal(n: i64) -> Self {
        usize::try_from(n)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
            .unwrap_or(Self::Other)
    }

    /// From a name (case-insensitive) or a decimal ordinal; anything else maps to `Other`.
    pub fn parse(s: &str) -> Self {
        if let Ok(n) = s.trim().parse::<i64>() {
            return Self::from_ordinal(n);
        }
        Self::ALL
            .iter()
            .copied()
            .find(|l| l.name().eq_ignore_ascii_case(s))
            .unwrap_or(Self::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_names_and_ordinals_round_trip() {
        for (i, l) in LanguageCode::ALL.iter().enumerate() {
            assert_eq!(l.ordinal() as usize, i);
            assert_eq!(LanguageCode::parse(l.name()), *l);
            assert_eq!(LanguageCode::from_ordinal(i as i64), *l);
        }
        assert_eq!(LanguageCode::parse("NODE_JS"), LanguageCode::NodeJs);
        assert_eq!(LanguageCode::parse("rust"), LanguageCode::Rust);
        assert_eq!(LanguageCode::parse("12"), LanguageCode::Rust);
        assert_eq!(LanguageCode::parse("COBOL"), LanguageCode::Other);
        assert_eq!(LanguageCode::from_ordinal(99), LanguageCode::Other);
        assert_eq!(LanguageCode::from_ordinal(-1), LanguageCode::Other);
    }

    #[test]
    fn admin_range() {
        assert!(request::is_wasmq_admin(request::WASMQ_ADMIN_BASE));
        assert!(!request::is_wasmq_admin(request::SEND_MESSAGE));
        assert!(!request::is_wasmq_admin(request::POP_MESSAGE));
    }
}
