//! `wasmq plugin`: load, upgrade, unload, list and dry-run filter plugins on every broker of
//! the cluster, and `plugin new` to start a plugin crate from the SDK's template.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use wasmq::protocol::{request, RemotingCommand};

use crate::args::parse_kv;
use crate::rpc::{ext, Cluster};
use crate::sdk;

#[derive(Subcommand, Debug)]
pub enum PluginCmd {
    /// Validate and activate a new plugin (a wasm32-wasip2 component built with the SDK).
    Load {
        #[arg(long)]
        name: String,
        #[arg(long)]
        file: PathBuf,
        /// key=value (repeatable); `wasmq.*` keys set host limits: wasmq.deadline_ms,
        /// wasmq.memory_mb, wasmq.on_failure=deliver|skip|hold, wasmq.quarantine_after.
        #[arg(long = "config", value_parser = parse_kv)]
        config: Vec<(String, String)>,
    },
    /// Replace a plugin's version atomically (keeps its config unless --config is given).
    /// Refused when the new version stops serving an expression type that subscriptions use,
    /// unless --force.
    Upgrade {
        #[arg(long)]
        name: String,
        #[arg(long)]
        file: PathBuf,
        #[arg(long = "config", value_parser = parse_kv)]
        config: Vec<(String, String)>,
        /// Upgrade even if subscriptions use an expression type the new version drops (their
        /// consumers then get a parse error).
        #[arg(long)]
        force: bool,
    },
    /// Remove a plugin (refused while subscriptions use it, unless --force).
    Unload {
        #[arg(long)]
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// Name, version, hash, kind, expression types, calls, failures, mean ns/message.
    List {
        /// Print the brokers' JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate an expression over sample messages (a JSON file: [{topic, tags, keys,
    /// properties: {..}, body}]) or over the last --count messages of each queue of --topic.
    /// Expression types match case-insensitively.
    Test {
        /// Plugin name (or give --type).
        #[arg(long)]
        name: Option<String>,
        /// Expression type (default: the plugin's first).
        #[arg(long = "type")]
        expr_type: Option<String>,
        #[arg(long)]
        expr: String,
        #[arg(long, conflicts_with = "topic")]
        samples: Option<PathBuf>,
        #[arg(long)]
        topic: Option<String>,
        /// With --topic: how many of the latest messages of EACH queue to evaluate (so up to
        /// count x queues messages in all).
        #[arg(long, default_value_t = 10)]
        count: u64,
        /// Print every property of each message (user and system: what the filter saw).
        #[arg(long)]
        show_properties: bool,
    },
    /// Write a new plugin crate (buildable with `cargo build --release --target wasm32-wasip2`).
    New {
        name: String,
        /// What the plugin is: a message filter, a router of sends, or a transaction checker.
        #[arg(long, value_enum, default_value_t = Kind::Filter)]
        kind: Kind,
        /// Parent directory (default: the current one).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path of a wasmq plugin SDK checkout, for working on the SDK (default: the SDK this
        /// binary carries, written into the crate's vendor/ directory).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

pub async fn run(c: &mut Cluster, cmd: PluginCmd) -> Result<()> {
    match cmd {
        PluginCmd::New {
            name,
            kind,
            dir,
            sdk,
        } => new_crate(&name, kind, &dir, sdk.as_deref()),
        PluginCmd::Load { name, file, config } => {
            send_module(c, request::PLUGIN_LOAD, &name, &file, Some(config), false).await
        }
        PluginCmd::Upgrade {
            name,
            file,
            config,
            force,
        } => {
            let cfg = (!config.is_empty()).then_some(config);
            send_module(c, request::PLUGIN_UPGRADE, &name, &file, cfg, force).await
        }
        PluginCmd::Unload { name, force } => {
            for b in c.brokers().await? {
                let force = force.to_string();
                let req = RemotingCommand::new_request(
                    request::PLUGIN_UNLOAD,
                    ext(&[("name", &name), ("force", &force)]),
                );
                c.call_ok(&b, req).await?;
                println!("unloaded {name} on {b}");
            }
            Ok(())
        }
        PluginCmd::List { json } => {
            for b in c.brokers().await? {
                let r = c
                    .call_ok(
                        &b,
                        RemotingCommand::new_request(request::PLUGIN_LIST, ext(&[])),
                    )
                    .await?;
                let v: serde_json::Value = serde_json::from_slice(&r.body)?;
                if json {
                    println!("{}", serde_json::json!({ "broker": b, "plugins": v }));
                    continue;
                }
                println!("broker {b}");
                println!(
                    "{:<16} {:>3} {:<12} {:<11} {:<14} {:>10} {:>8} {:>9}  state",
                    "NAME", "VER", "SHA256", "KIND", "TYPES", "CALLS", "FAILURES", "NS/MSG"
                );
                for p in v.as_array().into_iter().flatten() {
                    let types: Vec<&str> = p["expressionTypes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str())
                        .collect();
                    let state = if p["quarantined"].as_bool() == Some(true) {
                        format!(
                            "QUARANTINED ({})",
                            p["lastError"].as_str().unwrap_or("repeated failures")
                        )
                    } else {
                        "active".to_string()
                    };
                    println!(
                        "{:<16} {:>3} {:<12} {:<11} {:<14} {:>10} {:>8} {:>9}  {state}",
                        p["name"].as_str().unwrap_or(""),
                        p["version"].to_string(),
                        &p["sha256"].as_str().unwrap_or("")
                            [..12.min(p["sha256"].as_str().unwrap_or("").len())],
                        p["kind"].as_str().unwrap_or(""),
                        types.join(","),
                        // Numbers as strings: `Value`'s Display ignores widths.
                        p["calls"].to_string(),
                        p["failures"].to_string(),
                        p["meanNsPerMessage"].to_string(),
                    );
                }
            }
            Ok(())
        }
        PluginCmd::Test {
            name,
            expr_type,
            expr,
            samples,
            topic,
            count,
            show_properties,
        } => {
            let mut fields: Vec<(&str, String)> = vec![("expression", expr)];
            if let Some(n) = name {
                fields.push(("name", n));
            }
            if let Some(t) = expr_type {
                fields.push(("type", t));
            }
            let body = match (&samples, &topic) {
                (Some(p), _) => {
                    std::fs::read(p).with_context(|| format!("reading {}", p.display()))?
                }
                (None, Some(t)) => {
                    fields.push(("topic", t.clone()));
                    fields.push(("count", count.to_string()));
                    Vec::new()
                }
                (None, None) => bail!("give --samples FILE or --topic T"),
            };
            if !fields.iter().any(|(k, _)| *k == "name" || *k == "type") {
                bail!("give --name or --type");
            }
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let brokers = c.brokers().await?;
            let b = &brokers[0];
            let req =
                RemotingCommand::new_request(request::PLUGIN_TEST, ext(&pairs)).with_body(body);
            let r = c.call_ok(b, req).await?;
            let v: serde_json::Value = serde_json::from_slice(&r.body)?;
            println!(
                "plugin {} v{}, expression type {}",
                v["plugin"].as_str().unwrap_or(""),
                v["version"],
                v["expressionType"].as_str().unwrap_or(""),
            );
            println!("prefilter: {}", v["prefilter"].as_str().unwrap_or("-"));
            if let Some(e) = v["error"].as_str() {
                println!("expression does not compile: {e}");
                std::process::exit(2);
            }
            let msgs = v["messages"].as_array().cloned().unwrap_or_default();
            for m in &msgs {
                let at = match m["sample"].as_u64() {
                    Some(i) => format!("sample {i}"),
                    None => format!("queue {} offset {}", m["queueId"], m["queueOffset"]),
                };
                let mut line = format!(
                    "{} {at} tags {} keys {}",
                    if m["matched"].as_bool() == Some(true) {
                        "MATCH"
                    } else {
                        "no   "
                    },
                    m["tags"].as_str().unwrap_or("-"),
                    m["keys"].as_str().unwrap_or("-"),
                );
                if show_properties {
                    let props: Vec<String> = m["properties"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|kv| {
                            format!(
                                "{}={}",
                                kv[0].as_str().unwrap_or(""),
                                kv[1].as_str().unwrap_or("")
                            )
                        })
                        .collect();
                    line.push_str(&format!(" properties={{{}}}", props.join(",")));
                }
                println!("{line}");
            }
            let matched = msgs.iter().filter(|m| m["matched"] == true).count();
            let scope = match (&samples, &topic) {
                (Some(p), _) => format!("samples in {}", p.display()),
                (None, Some(t)) => format!("the last {count} of each queue of {t}"),
                _ => String::new(),
            };
            println!("{matched} of {} matched ({scope})", msgs.len());
            Ok(())
        }
    }
}

/// Room a request's header takes in a frame besides the module (name, config, codes).
const HEADER_ROOM: u64 = 64 * 1024;

/// Refuses, before reading or sending it, a file too large for one remoting frame: the broker
/// would close the connection and the reason would only be in its log.
fn check_module_size(file: &Path) -> Result<()> {
    let len = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    let max = wasmq::protocol::frame::DEFAULT_MAX_FRAME_LEN as u64 - HEADER_ROOM;
    if len > max {
        bail!(
            "{} is {len} bytes; a plugin module can be at most {max} bytes (one request frame is limited to {} bytes, and brokers take modules up to plugin_max_module_bytes, 16 MiB by default)",
            file.display(),
            wasmq::protocol::frame::DEFAULT_MAX_FRAME_LEN
        );
    }
    Ok(())
}

async fn send_module(
    c: &mut Cluster,
    code: i32,
    name: &str,
    file: &Path,
    config: Option<Vec<(String, String)>>,
    force: bool,
) -> Result<()> {
    check_module_size(file)?;
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let cfg = config.map(|c| serde_json::to_string(&c)).transpose()?;
    let upgrade = code == request::PLUGIN_UPGRADE;
    for b in c.brokers().await? {
        let mut pairs = vec![("name", name)];
        if let Some(cfg) = &cfg {
            pairs.push(("config", cfg.as_str()));
        }
        if upgrade {
            pairs.push(("force", if force { "true" } else { "false" }));
        }
        let req = RemotingCommand::new_request(code, ext(&pairs)).with_body(wasm.clone());
        let r = c.call_ok(&b, req).await?;
        let v: serde_json::Value = serde_json::from_slice(&r.body)?;
        let types = type_list(&v["expressionTypes"]);
        // A broker that does not answer the previous types: just the new ones.
        let types = match v.get("previousExpressionTypes") {
            Some(prev) if upgrade => format!("{} -> {types}", type_list(prev)),
            _ => types,
        };
        println!(
            "{} {name} version {} ({} bytes, sha256 {}) on {b}; types: {types}",
            if upgrade { "upgraded" } else { "loaded" },
            v["version"],
            v["size"],
            v["sha256"].as_str().unwrap_or(""),
        );
    }
    Ok(())
}

/// `A, B` from a JSON array of strings (`-` when empty: routers and checkers serve none).
fn type_list(v: &serde_json::Value) -> String {
    let types: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str())
        .collect();
    if types.is_empty() {
        "-".to_string()
    } else {
        types.join(", ")
    }
}

const TEMPLATE_CARGO: &str = include_str!("../../plugin-sdk/template/Cargo.toml.tmpl");
const TEMPLATE_README: &str = include_str!("../../plugin-sdk/template/README.md.tmpl");

/// The kinds of plugin `plugin new` writes: one WIT world each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Filter,
    Router,
    TxnChecker,
}

/// What differs between the kinds' crates.
struct KindTemplate {
    lib: &'static str,
    title: &'static str,
    interface: &'static str,
    /// How an operator puts a loaded plugin to work (after "loads it with ...").
    activate: &'static str,
    what_to_edit: &'static str,
}

impl Kind {
    fn template(self) -> KindTemplate {
        match self {
            Kind::Filter => KindTemplate {
                lib: include_str!("../../plugin-sdk/template/src/filter.rs.tmpl"),
                title: "message filter",
                interface: "filter",
                activate: "; consumers then subscribe with its expression type",
                what_to_edit: "`src/lib.rs`: `EXPRESSION_TYPE` (the name consumers subscribe with), `compile` (parse the\nexpression once, report errors with a byte position) and `matches` (called per message; read\n`message.tags()`, `message.property(name)`, `message.keys()`, `message.body()`). If `matches`\nreads `message.body()`, drop `.without_body()` in `compile`, or bodies arrive empty.",
            },
            Kind::Router => KindTemplate {
                lib: include_str!("../../plugin-sdk/template/src/router.rs.tmpl"),
                title: "router",
                interface: "router",
                activate: " and binds it to topics with `wasmq route bind --topic T --plugin {{name}}`",
                what_to_edit: "`src/lib.rs`: `route` (called per message of a send request, before it is stored) returns a\n`Verdict`: `keep()`, `queue(q)` (q below `write_queues`), `redirect(topic, queue)`, `reject(reason)`\n(the producer gets the reason and nothing of the request is stored), plus `.with_extra(target)`\nfor extra dispatch targets (stored once, readable from each). Override `needs_body` to read\n`message.body()`, and `configure` to take settings.",
            },
            Kind::TxnChecker => KindTemplate {
                lib: include_str!("../../plugin-sdk/template/src/txn_checker.rs.tmpl"),
                title: "transaction checker",
                interface: "txn-checker",
                activate: " and binds it to topics with `wasmq txn bind --topic T --plugin {{name}}`",
                what_to_edit: "`src/lib.rs`: `check` (called per half message due for a check) returns `Commit`, `Rollback`\nor `Unknown` (the broker then asks the producer group); `meta` has the message's age and the\nchecks made so far (plugins have no clock). `configure` takes the operator's settings.",
            },
        }
    }
}

fn new_crate(name: &str, kind: Kind, dir: &Path, sdk: Option<&Path>) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!("plugin name {name:?}: use lower-case letters, digits, '-' and '_', starting with a letter");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    // The filter's default expression type: the name upper-cased, `-` as `_` (price-filter ->
    // PRICE_FILTER), as the template's comment promises.
    let expression_type = name.to_ascii_uppercase().replace('-', "_");
    // The SDK: by default the copy this binary carries, written into the crate; `--sdk PATH`
    // (working on the SDK itself) points the crate at a checkout instead.
    let (sdk_path, sdk_version, lock, sdk_note, sdk_where) = match sdk {
        None => {
            let vendor = sdk::vendor_dir();
            let note = format!(
                "The SDK as wasmq {} carries it, written here by `wasmq plugin new`.",
                env!("CARGO_PKG_VERSION")
            );
            let place = format!(
                "`{vendor}/` is that SDK, as this wasmq carries it; `Cargo.lock` pins the versions of\nits dependencies the SDK is tested with."
            );
            let lock = sdk::lockfile_for(name);
            (vendor, sdk::version().to_string(), lock, note, place)
        }
        Some(p) => {
            let p = p
                .canonicalize()
                .with_context(|| format!("plugin SDK not found at {}", p.display()))?;
            let Some(version) = sdk::version_at(&p) else {
                bail!(
                    "{} is not the wasmq plugin SDK (no Cargo.toml of package {}); leave out --sdk to use the SDK this wasmq carries",
                    p.display(),
                    sdk::NAME
                );
            };
            let lock = std::fs::read_to_string(p.join("Cargo.lock"))
                .ok()
                .and_then(|l| sdk::lockfile_from(&l, name));
            let place = format!("It uses the SDK at `{}` (`--sdk`).", p.display());
            let note = "The SDK checkout given with `wasmq plugin new --sdk`.".to_string();
            (p.display().to_string(), version, lock, note, place)
        }
    };
    let k = kind.template();
    let fill = |t: &str| {
        t.replace("{{what_to_edit}}", k.what_to_edit)
            .replace("{{kind_title}}", k.title)
            .replace("{{interface}}", k.interface)
            .replace("{{activate}}", k.activate)
            .replace(
                "{{expression_type_lower}}",
                &expression_type.to_ascii_lowercase(),
            )
            .replace("{{expression_type}}", &expression_type)
            .replace("{{name}}", name)
            .replace("{{sdk_path}}", &sdk_path)
            .replace("{{sdk_version}}", &sdk_version)
            .replace("{{sdk_note}}", &sdk_note)
            .replace("{{sdk_where}}", &sdk_where)
            .replace("{{wasmq_version}}", env!("CARGO_PKG_VERSION"))
            .replace("{{abi}}", sdk::abi())
    };
    std::fs::create_dir_all(root.join("src"))?;
    if sdk.is_none() {
        sdk::write_to(&root.join(&sdk_path))?;
    }
    std::fs::write(root.join("Cargo.toml"), fill(TEMPLATE_CARGO))?;
    std::fs::write(root.join("src/lib.rs"), fill(k.lib))?;
    std::fs::write(root.join("README.md"), fill(TEMPLATE_README))?;
    if let Some(lock) = lock {
        std::fs::write(root.join("Cargo.lock"), lock)?;
    }
    println!(
        "created {}; build it with: cd {} && cargo build --release --target wasm32-wasip2",
        root.display(),
        root.display()
    );
    Ok(())
}
