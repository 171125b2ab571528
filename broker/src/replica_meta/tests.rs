use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::apply::{apply_plugins, local_bindings, local_plugins};
use super::*;
use crate::config::{BrokerConfig, BrokerRole};
use crate::context::replication::MasterAddrs;
use crate::context::Broker;
use crate::meta::TopicConfig;
use crate::net::{NetConfig, RemotingClient};
use crate::plugin::{shipped, PluginKind};
use crate::processor::replica_meta::{BindingMeta, PluginMeta};
use crate::processor::BrokerHandler;
use crate::protocol::{request, response, ExtFields, RemotingCommand};
use crate::store::StoreConfig;

fn offsets(rows: &[(&str, i32, i64)]) -> BTreeMap<String, BTreeMap<i32, i64>> {
    let mut m: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    for (k, q, o) in rows {
        m.entry(k.to_string()).or_default().insert(*q, *o);
    }
    m
}

#[test]
fn offsets_merge_to_the_larger_per_queue_and_never_move_back() {
    let slave = offsets(&[
        ("T@g", 0, 15), // committed on the slave while the master was down
        ("T@g", 1, 7),
        ("T@g", 2, 3), // a queue only the slave knows
        ("U@only-slave", 0, 4),
    ]);
    let master = offsets(&[
        ("T@g", 0, 10),
        ("T@g", 1, 20),
        ("T@g", 3, 1),
        ("T@g@x", 0, 5), // a group name with '@'
        ("V@g", 0, 0),
    ]);
    let up = merge_offsets(&slave, &master);
    let got: Vec<(&str, &str, i32, i64)> = up
        .iter()
        .map(|u| (u.group.as_str(), u.topic.as_str(), u.queue_id, u.offset))
        .collect();
    assert_eq!(
        got,
        vec![
            ("g", "T", 1, 20),
            ("g", "T", 3, 1),
            ("g@x", "T", 0, 5),
            ("g", "V", 0, 0),
        ]
    );
    // Applying the updates and merging again changes nothing.
    let mut merged = slave.clone();
    for u in up {
        merged
            .entry(format!("{}@{}", u.topic, u.group))
            .or_default()
            .insert(u.queue_id, u.offset);
    }
    assert!(merge_offsets(&merged, &master).is_empty());
    assert_eq!(merged["T@g"][&0], 15, "the slave's newer offset stays");
    assert_eq!(merged["U@only-slave"][&0], 4);
}

#[test]
fn only_local_commits_ahead_of_the_master_are_pushed() {
    let c = |g: &str, t: &str, q| (g.to_string(), t.to_string(), q);
    // The slave after the round's merge (never below the master).
    let slave = offsets(&[
        ("T@g", 0, 15),
        ("T@g", 1, 20),
        ("T@g", 2, 9),
        ("U@g@x", 0, 8),
    ]);
    let master = offsets(&[
        ("T@g", 0, 10),
        ("T@g", 1, 20),
        // An operator reset queue 2 on the master (9 -> 3); no client committed it here since.
        ("T@g", 2, 3),
    ]);
    let commits = vec![
        c("g", "T", 0),   // ahead: sent
        c("g", "T", 1),   // level with the master: dropped
        c("g@x", "U", 0), // the master has no offset: sent
        c("g", "V", 0),   // no offset here (cannot happen; skipped)
    ];
    let push = offsets_to_push(&commits, &slave, &master);
    let got: Vec<(&str, &str, i32, i64)> = push
        .iter()
        .map(|u| (u.group.as_str(), u.topic.as_str(), u.queue_id, u.offset))
        .collect();
    assert_eq!(got, vec![("g", "T", 0, 15), ("g@x", "U", 0, 8)]);
    assert!(
        !push.iter().any(|u| u.queue_id == 2),
        "the reset on the master stands"
    );
    assert!(offsets_to_push(&[], &slave, &master).is_empty());
}

#[test]
fn topics_follow_the_master() {
    let t = |n: &str, q: u32| (n.to_string(), TopicConfig::new(n, q));
    let slave = BTreeMap::from([t("A", 4), t("B", 4), t("Gone", 1)]);
    let master = BTreeMap::from([t("A", 4), t("B", 8), t("New", 2)]);
    let d = diff_topics(&slave, &master);
    assert_eq!(
        d.upsert
            .iter()
            .map(|t| t.topic_name.as_str())
            .collect::<Vec<_>>(),
        vec!["B", "New"]
    );
    assert_eq!(d.remove, vec!["Gone".to_string()]);
    assert_eq!(diff_topics(&master, &master), TopicDiff::default());
}

fn meta(name: &str, version: u64, sha: &str, kind: PluginKind) -> PluginMeta {
    PluginMeta {
        name: name.into(),
        version,
        sha256: sha.into(),
        kind,
        config: Vec::new(),
    }
}

#[test]
fn plugin_plan_unloads_then_upgrades_then_loads() {
    use PluginKind::*;
    let same = meta("same", 2, "s", Filter);
    let slave = vec![
        same.clone(),
        meta("behind", 1, "a", Filter),
        meta("gone", 1, "g", Filter),
        meta("other-kind", 1, "k", Filter),
        meta("reloaded", 5, "r", Router),
        meta("diverged", 2, "d", Filter),
    ];
    let mut cfg = meta("behind", 4, "b", Filter);
    cfg.config = vec![("k".into(), "v".into())];
    let master = vec![
        same,
        cfg.clone(),
        meta("other-kind", 1, "k2", TxnChecker),
        meta("reloaded", 1, "r", Router),
        meta("diverged", 2, "d2", Filter),
        meta("new", 3, "n", Filter),
    ];
    let plan = plan_plugins(&slave, &master);
    let unload = |n: &str| PluginStep::Unload { name: n.into() };
    let load = |m: &PluginMeta| PluginStep::Load { target: m.clone() };
    assert_eq!(
        plan,
        vec![
            unload("gone"),
            unload("other-kind"),
            unload("reloaded"),
            unload("diverged"),
            PluginStep::Upgrade {
                target: cfg,
                times: 3
            },
            load(&master[2]),
            load(&master[3]),
            load(&master[4]),
            load(&master[5]),
        ]
    );
    assert!(plan_plugins(&master, &master).is_empty());
}

#[test]
fn bindings_follow_the_master() {
    let bm = |kind, topic: &str, plugin: &str| BindingMeta {
        kind,
        topic: topic.into(),
        plugin: plugin.into(),
    };
    let slave = vec![
        bm(PluginKind::TxnChecker, "*", "old"),
        bm(PluginKind::Router, "A", "hr"),
        bm(PluginKind::Router, "B", "hr"),
    ];
    let master = vec![
        bm(PluginKind::TxnChecker, "*", "new"),
        bm(PluginKind::Router, "A", "hr"),
        bm(PluginKind::Router, "C", "hr"),
    ];
    let d = diff_bindings(&slave, &master);
    assert_eq!(d.unbind, vec![(PluginKind::Router, "B".to_string())]);
    assert_eq!(d.bind, vec![master[0].clone(), master[2].clone()]);
    assert_eq!(diff_bindings(&master, &master), BindingDiff::default());
}

#[test]
fn the_remoting_address_is_learned_or_one_below_the_ha_port() {
    let m = |addr: Option<&str>, ha: &str| MasterAddrs {
        addr: addr.map(str::to_string),
        ha_addr: ha.into(),
    };
    assert_eq!(
        remoting_addr(&m(Some("10.0.0.1:10911"), "10.0.0.1:20000")).unwrap(),
        "10.0.0.1:10911"
    );
    assert_eq!(
        remoting_addr(&m(None, "10.0.0.1:10912")).unwrap(),
        "10.0.0.1:10911"
    );
    assert_eq!(
        remoting_addr(&m(None, "master.local:10912")).unwrap(),
        "master.local:10911"
    );
    for bad in ["10.0.0.1", "10.0.0.1:x", ":10912", "h:1"] {
        assert!(
            matches!(remoting_addr(&m(None, bad)), Err(BadAddress(_))),
            "{bad}"
        );
    }
}

fn open(dir: &std::path::Path, role: BrokerRole, name: &str) -> Arc<Broker> {
    Broker::open(open_config(dir, role, name), None).unwrap()
}

fn open_config(dir: &std::path::Path, role: BrokerRole, name: &str) -> BrokerConfig {
    BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        namesrv_listen: None,
        broker_name: name.into(),
        broker_role: role,
        broker_id: if role.is_slave() { 1 } else { 0 },
        store: StoreConfig {
            max_message_size: 64 << 10,
            ..StoreConfig::for_tests(dir)
        },
        ..BrokerConfig::default()
    }
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(shipped::path(name)).unwrap()
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// Two filters that swapped modules on the master (each expression type moves to the
/// other plugin): neither upgrade can go first, so one plugin is reloaded.
#[test]
fn plugins_that_swapped_expression_types_are_reloaded() {
    let d = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        load_shipped_plugins: false,
        ..open_config(d.path(), BrokerRole::Slave, "broker-a")
    };
    let b = Broker::open(config, None).unwrap();
    let (json, modulo) = (wasm("json-filter"), wasm("modulo"));
    b.plugins.load("a", &json, vec![]).unwrap();
    b.plugins
        .load("b", &modulo, vec![kv("divisor", "2")])
        .unwrap();
    let sha = crate::plugin::engine::sha256_hex;
    let mut target = vec![
        meta("a", 2, &sha(&modulo), PluginKind::Filter),
        meta("b", 2, &sha(&json), PluginKind::Filter),
    ];
    target[0].config = vec![kv("divisor", "3")];
    let modules = HashMap::from([(sha(&json), json), (sha(&modulo), modulo)]);
    let (mut r, mut failures) = (SyncReport::default(), Vec::new());
    apply_plugins(&b, &target, &modules, &mut r, &mut failures);
    assert!(failures.is_empty(), "{}", join(&failures));
    assert_eq!(local_plugins(&b), target);
    assert_eq!(b.plugins.for_type("JSON").unwrap().name, "b");
    assert_eq!(b.plugins.for_type("MOD").unwrap().name, "a");
    assert_eq!(
        (r.plugins_unloaded, r.plugins_loaded, r.plugins_upgraded),
        (1, 1, 1)
    );
}

/// A master served on loopback, a slave that copies it: topics, offsets (larger wins),
/// delay and timer progress, plugins (version, config, a module it lacks) and bindings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_copies_its_master() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path(), BrokerRole::AsyncMaster, "broker-a");
    let slave = open(sd.path(), BrokerRole::Slave, "broker-a");

    master.topics.upsert(TopicConfig::new("Orders", 8)).unwrap();
    slave.topics.upsert(TopicConfig::new("Orders", 2)).unwrap();
    slave.topics.upsert(TopicConfig::new("Gone", 1)).unwrap();
    master.offsets.commit("g", "Orders", 0, 10);
    master.offsets.commit("g", "Orders", 1, 20);
    slave.offsets.commit("g", "Orders", 0, 15);
    slave.offsets.commit("g", "Orders", 2, 3);
    master.schedule.advance(3, 42).unwrap();
    {
        let mut d = master.timer.delivered();
        for off in (0..70).chain([100]) {
            d.set(off);
        }
    }
    let p = &master.plugins;
    p.load("json", &wasm("json-filter"), vec![]).unwrap();
    p.upgrade("json", &wasm("json-filter"), Some(vec![kv("a", "1")]))
        .unwrap();
    p.load(
        "deadline",
        &wasm("txn-deadline-checker"),
        vec![kv("deadline_ms", "1000")],
    )
    .unwrap();
    p.load("hr", &wasm("hash-router"), vec![]).unwrap();
    p.bind(PluginKind::TxnChecker, "*", "deadline").unwrap();
    p.bind(PluginKind::Router, "Orders", "hr").unwrap();
    p.unload("sql92-filter", true, |_| Vec::new()).unwrap();
    // The slave has a plugin the master never had, bound to a topic.
    slave
        .plugins
        .load("local-hr", &wasm("hash-router"), vec![])
        .unwrap();
    slave
        .plugins
        .bind(PluginKind::Router, "Gone", "local-hr")
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stop_rx) = watch::channel(false);
    let server = tokio::spawn(crate::net::serve(
        listener,
        Arc::new(BrokerHandler(master.clone())),
        NetConfig::default(),
        stop_rx,
    ));

    let r = sync_once(&slave, &addr).await.unwrap();
    assert_eq!((r.topics_upserted, r.topics_removed), (1, 1), "{r:?}");
    assert_eq!(r.offsets_advanced, 1, "{r:?}");
    assert_eq!(r.delay_levels_changed, 1, "{r:?}");
    // Below the master's low-water mark (64), 64..70, and 100.
    assert_eq!(r.timer_entries_marked, 71, "{r:?}");
    assert_eq!(
        (r.plugins_loaded, r.plugins_unloaded, r.bindings_changed),
        (3, 2, 2),
        "{r:?}"
    );
    // json-filter and txn-deadline-checker; the slave holds hash-router's module already.
    assert_eq!(r.modules_fetched, 2, "{r:?}");

    let names = |b: &Broker| {
        b.topics
            .all()
            .iter()
            .map(|t| (**t).clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&slave), names(&master));
    assert_eq!(
        slave.offsets.of("g", "Orders"),
        BTreeMap::from([(0, 15), (1, 20), (2, 3)])
    );
    assert_eq!(
        master.offsets.of("g", "Orders")[&0],
        10,
        "the master is not written"
    );
    assert_eq!(slave.schedule.offset(3), 42);
    assert_eq!(slave.timer.low_water(), 64);
    assert!(slave.timer.delivered().is_set(69) && slave.timer.delivered().is_set(100));
    assert!(!slave.timer.delivered().is_set(99));
    assert_eq!(local_plugins(&slave), local_plugins(&master));
    assert_eq!(
        local_plugins(&slave)
            .iter()
            .find(|p| p.name == "json")
            .unwrap()
            .version,
        2
    );
    assert_eq!(local_bindings(&slave), local_bindings(&master));
    assert!(slave.plugins.router_for("Orders").is_some());
    assert!(slave.plugins.txn_checker_for("Any").is_some());

    // Nothing new: a second round changes nothing.
    let again = sync_once(&slave, &addr).await.unwrap();
    assert!(!again.changed(), "{again:?}");

    // Clients committed on the slave (as when the master was away): queue 1 moved to 25 there.
    // Queue 0 was reset on the master by an operator (10 -> 4); the slave keeps its 15, which
    // no client committed since, so the reset stands. Queue 3 was noted but is not ahead.
    slave.offsets.commit("g", "Orders", 1, 25);
    slave.replication.note_local_commit("g", "Orders", 1);
    master.offsets.commit("g", "Orders", 0, 4);
    master.offsets.commit("g", "Orders", 3, 7);
    slave.offsets.commit("g", "Orders", 3, 7);
    slave.replication.note_local_commit("g", "Orders", 3);
    let r = sync_once(&slave, &addr).await.unwrap();
    assert_eq!(r.offsets_pushed, 1, "{r:?}");
    assert_eq!(
        master.offsets.of("g", "Orders"),
        BTreeMap::from([(0, 4), (1, 25), (3, 7)]),
        "the slave's commit reached the master; the reset was not undone"
    );
    assert_eq!(slave.offsets.query("g", "Orders", 0), Some(15));
    assert!(slave.replication.take_local_commits().is_empty());
    let again = sync_once(&slave, &addr).await.unwrap();
    assert_eq!(again.offsets_pushed, 0, "{again:?}");
    // The master persisted what moved.
    let on_disk = crate::meta::ConsumerOffsets::open(&md.path().join("config")).unwrap();
    assert_eq!(on_disk.query("g", "Orders", 1), Some(25));

    // An upgrade on the master is an upgrade on the slave.
    p.upgrade("json", &wasm("json-filter"), Some(vec![kv("a", "2")]))
        .unwrap();
    let r = sync_once(&slave, &addr).await.unwrap();
    assert_eq!((r.plugins_upgraded, r.modules_fetched), (1, 0), "{r:?}");
    assert_eq!(local_plugins(&slave), local_plugins(&master));

    // What the registry and the topic table persisted survives a restart of the slave.
    let topics = crate::meta::TopicTable::open(&sd.path().join("config")).unwrap();
    assert!(topics.get("Gone").is_none() && topics.get("Orders").unwrap().read_queue_nums == 8);
    let reg = crate::plugin::Registry::open(
        Some(&sd.path().join("plugins")),
        crate::plugin::registry::DEFAULT_MAX_MODULE_BYTES,
    )
    .unwrap();
    assert_eq!(reg.list().len(), local_plugins(&master).len());
    assert_eq!(reg.bindings().len(), 2);

    // A module the master does not hold is refused clearly.
    let c = RemotingClient::connect(&addr).await.unwrap();
    let mut f = ExtFields::new();
    f.insert("sha256", &"0".repeat(64));
    let resp = c
        .invoke(
            RemotingCommand::new_request(request::HA_PLUGIN_MODULE, f),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert!(resp.remark.unwrap_or_default().contains("no active plugin"));

    // A slave of another broker group copies nothing.
    let od = tempfile::tempdir().unwrap();
    let other = open(od.path(), BrokerRole::Slave, "broker-b");
    let e = sync_once(&other, &addr).await.unwrap_err();
    assert!(matches!(e, ReplicaMetaError::OtherGroup { .. }), "{e}");
    assert!(other.topics.get("Orders").is_none());

    // `run` on a slave that knows only its master's HA address (the broker port + 1).
    let rd = tempfile::tempdir().unwrap();
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let config = BrokerConfig {
        ha_master_addr: Some(format!("127.0.0.1:{}", port + 1)),
        ..open_config(rd.path(), BrokerRole::Slave, "broker-a")
    };
    let runner = Broker::open(config, None).unwrap();
    let (stop_run, stop_run_rx) = watch::channel(false);
    let task = tokio::spawn(run(runner.clone(), stop_run_rx));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while local_bindings(&runner) != local_bindings(&master) {
        assert!(std::time::Instant::now() < deadline, "run copied nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(names(&runner), names(&master));
    let _ = stop_run.send(true);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();

    // A "master" that is a slave refuses HA_MERGE_OFFSETS: the commit stays noted for the next
    // round.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runner_addr = listener.local_addr().unwrap().to_string();
    let (stop_runner, stop_runner_rx) = watch::channel(false);
    let runner_server = tokio::spawn(crate::net::serve(
        listener,
        Arc::new(BrokerHandler(runner.clone())),
        NetConfig::default(),
        stop_runner_rx,
    ));
    slave.offsets.commit("g", "Orders", 1, 40);
    slave.replication.note_local_commit("g", "Orders", 1);
    let e = sync_once(&slave, &runner_addr).await.unwrap_err();
    assert!(
        matches!(
            e,
            ReplicaMetaError::Refused {
                what: "HA_MERGE_OFFSETS",
                code: response::SERVICE_NOT_AVAILABLE,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        slave.replication.take_local_commits(),
        vec![("g".to_string(), "Orders".to_string(), 1)]
    );
    let _ = stop_runner.send(true);
    runner_server.await.unwrap().unwrap();

    // An unreachable master is reported as such.
    let _ = stop.send(true);
    server.await.unwrap().unwrap();
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone_addr = gone.local_addr().unwrap().to_string();
    drop(gone);
    let e = sync_once(&slave, &gone_addr).await.unwrap_err();
    assert!(e.is_unreachable(), "{e}");
    assert!(e.to_string().contains(&gone_addr), "{e}");
}
