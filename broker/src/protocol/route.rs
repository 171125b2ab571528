//! Route JSON: GET_ROUTEINFO_BY_TOPIC (105) `TopicRouteData` in exactly the shape of REMOTING.md §6 (standard
//! JSON, quoted broker-id keys), and wasmq's own REGISTER_BROKER (103) / UNREGISTER_BROKER (104) bodies for a
//! broker registering with a separate wasmq NameServer (not Java-compatible; only wasmq speaks it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `perm` bits.
pub mod perm {
    pub const PRIORITY: i32 = 8;
    pub const READ: i32 = 4;
    pub const WRITE: i32 = 2;
    pub const INHERIT: i32 = 1;
    /// Read + write (6).
    pub const READ_WRITE: i32 = READ | WRITE;
}

/// Broker id of a master in `brokerAddrs`.
pub const MASTER_ID: i64 = 0;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    /// Always emitted (null when absent).
    #[serde(default)]
    pub order_topic_conf: Option<String>,
    #[serde(default)]
    pub queue_datas: Vec<QueueData>,
    #[serde(default)]
    pub broker_datas: Vec<BrokerData>,
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    pub broker_name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
    #[serde(default)]
    pub topic_sys_flag: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    pub cluster: String,
    pub broker_name: String,
    /// Broker id (as a decimal string, "0" = master) -> address.
    pub broker_addrs: BTreeMap<String, String>,
    #[serde(default)]
    pub enable_acting_master: bool,
}

impl BrokerData {
    /// A broker with a single master address.
    pub fn master(cluster: &str, broker_name: &str, addr: &str) -> Self {
        let mut broker_addrs = BTreeMap::new();
        broker_addrs.insert(MASTER_ID.to_string(), addr.to_string());
        Self {
            cluster: cluster.to_string(),
            broker_name: broker_name.to_string(),
            broker_addrs,
            enable_acting_master: false,
        }
    }

    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get("0").map(String::as_str)
    }
}

impl TopicRouteData {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

/// Queue layout of one topic as a broker registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigData {
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
    #[serde(default)]
    pub topic_sys_flag: i32,
}

/// REGISTER_BROKER (103) request body (wasmq-to-wasmq).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    pub cluster: String,
    pub broker_name: String,
    /// The advertised address clients dial.
    pub broker_addr: String,
    /// 0 = master.
    pub broker_id: i64,
    /// Where this broker listens for its slaves (HA); a master's is passed on to its slaves.
    #[serde(default)]
    pub ha_server_addr: Option<String>,
    #[serde(default)]
    pub topics: BTreeMap<String, TopicConfigData>,
}

/// REGISTER_BROKER (103) response body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerResult {
    /// Address of the master of this broker name, when the registrant is a slave.
    #[serde(default)]
    pub master_addr: Option<String>,
    /// The master's HA address (where the slave replicates from), with `master_addr`.
    #[serde(default)]
    pub ha_server_addr: Option<String>,
    /// How long the NameServer keeps the registration without a renewal.
    #[serde(default)]
    pub expire_millis: Option<i64>,
}

/// UNREGISTER_BROKER (104) request body (wasmq-to-wasmq).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnregisterBrokerBody {
    pub cluster: String,
    pub broker_name: String,
    pub broker_addr: String,
    pub broker_id: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_json_shape() {
        let r = TopicRouteData {
            order_topic_conf: None,
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: perm::READ_WRITE,
                topic_sys_flag: 0,
            }],
            broker_datas: vec![BrokerData::master(
                "DefaultCluster",
                "broker-a",
                "127.0.0.1:10911",
            )],
            filter_server_table: BTreeMap::new(),
        };
        let json = String::from_utf8(r.to_json()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"orderTopicConf":null,"queueDatas":[{"brokerName":"broker-a","readQueueNums":4,"writeQueueNums":4,"perm":6,"topicSysFlag":0}],"#,
                r#""brokerDatas":[{"cluster":"DefaultCluster","brokerName":"broker-a","brokerAddrs":{"0":"127.0.0.1:10911"},"enableActingMaster":false}],"#,
                r#""filterServerTable":{}}"#
            )
        );
        let back = TopicRouteData::from_json(json.as_bytes()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.broker_datas[0].master_addr(), Some("127.0.0.1:10911"));
    }

    #[test]
    fn register_body_round_trip() {
        let mut topics = BTreeMap::new();
        topics.insert(
            "T".to_string(),
            TopicConfigData {
                read_queue_nums: 8,
                write_queue_nums: 8,
                perm: 6,
                topic_sys_flag: 0,
            },
        );
        let b = RegisterBrokerBody {
            cluster: "C".into(),
            broker_name: "b".into(),
            broker_addr: "127.0.0.1:1".into(),
            broker_id: 0,
            ha_server_addr: Some("127.0.0.1:2".into()),
            topics,
        };
        let json = serde_json::to_vec(&b).unwrap();
        assert_eq!(
            serde_json::from_slice::<RegisterBrokerBody>(&json).unwrap(),
            b
        );
        // Bodies of brokers that predate the HA address still parse.
        let old = r#"{"cluster":"C","brokerName":"b","brokerAddr":"127.0.0.1:1","brokerId":1}"#;
        let old: RegisterBrokerBody = serde_json::from_str(old).unwrap();
        assert_eq!((old.broker_id, old.ha_server_addr), (1, None));
        let r: RegisterBrokerResult = serde_json::from_str("{}").unwrap();
        assert_eq!((r.master_addr, r.ha_server_addr), (None, None));
        let r: RegisterBrokerResult = serde_json::from_str(
            r#"{"masterAddr":"127.0.0.1:1","haServerAddr":"127.0.0.1:2","expireMillis":120000}"#,
        )
        .unwrap();
        assert_eq!(r.ha_server_addr.as_deref(), Some("127.0.0.1:2"));
    }
}
