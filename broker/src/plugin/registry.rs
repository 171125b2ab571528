//! The plugin registry: plugin names and expression types to their active version, and the
//! operations that change it while the broker runs. Load validates and activates; upgrade
//! swaps the version atomically (a batch in flight finishes on the version it started with,
//! the next one uses the new one); unload is refused while subscriptions use the plugin unless
//! forced. Everything is persisted under `<store>/plugins/` (`registry.json` plus the modules
//! by content hash, and a cache of compiled artifacts) and restored on restart.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::bindings::Bindings;
use super::engine::PluginEngine;
use super::error::PluginError;
use super::filter::LoadedFilter;
use super::guest::Stats;
use super::limits::{FailurePolicy, PluginLimits};
use super::module::{Module, PluginKind};
use super::router::LoadedRouter;
use super::txn_checker::LoadedChecker;

/// One active plugin version of any kind.
#[derive(Clone)]
pub enum Loaded {
    Filter(Arc<LoadedFilter>),
    TxnChecker(Arc<LoadedChecker>),
    Router(Arc<LoadedRouter>),
}

impl Loaded {
    fn activate(
        engine: &PluginEngine,
        name: &str,
        version: u64,
        wasm: &[u8],
        config: Vec<(String, String)>,
    ) -> Result<Loaded, PluginError> {
        let m = Module::compile(engine, wasm)?;
        Ok(match m.kind()? {
            PluginKind::Filter => Loaded::Filter(LoadedFilter::from_module(
                engine, name, version, &m, config,
            )?),
            PluginKind::TxnChecker => Loaded::TxnChecker(LoadedChecker::from_module(
                engine, name, version, &m, config,
            )?),
            PluginKind::Router => Loaded::Router(LoadedRouter::from_module(
                engine, name, version, &m, config,
            )?),
        })
    }

    pub fn kind(&self) -> PluginKind {
        match self {
            Loaded::Filter(_) => PluginKind::Filter,
            Loaded::TxnChecker(_) => PluginKind::TxnChecker,
            Loaded::Router(_) => PluginKind::Router,
        }
    }

    fn name(&self) -> &str {
        match self {
            Loaded::Filter(f) => &f.name,
            Loaded::TxnChecker(c) => &c.name,
            Loaded::Router(r) => &r.name,
        }
    }

    fn version(&self) -> u64 {
        match self {
            Loaded::Filter(f) => f.version,
            Loaded::TxnChecker(c) => c.version,
            Loaded::Router(r) => r.version,
        }
    }

    fn sha256(&self) -> &str {
        match self {
            Loaded::Filter(f) => &f.sha256,
            Loaded::TxnChecker(c) => &c.sha256,
            Loaded::Router(r) => &r.sha256,
        }
    }

    fn config(&self) -> &[(String, String)] {
        match self {
            Loaded::Filter(f) => &f.config,
            Loaded::TxnChecker(c) => &c.config,
            Loaded::Router(r) => &r.config,
        }
    }

    fn expression_types(&self) -> &[String] {
        match self {
            Loaded::Filter(f) => &f.expression_types,
            Loaded::TxnChecker(_) | Loaded::Router(_) => &[],
        }
    }

    fn retire(&self) {
        match self {
            Loaded::Filter(f) => f.retire(),
            Loaded::TxnChecker(c) => c.retire(),
            Loaded::Router(r) => r.retire(),
        }
    }
}

/// Largest module accepted by default.
pub const DEFAULT_MAX_MODULE_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    name: String,
    version: u64,
    sha256: String,
    config: Vec<(String, String)>,
    /// Types a forced upgrade stopped serving while subscriptions used them (see
    /// `State::stranded`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    stranded_types: Vec<String>,
}

/// What `wasmq plugin list` shows of one plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    pub name: String,
    pub version: u64,
    pub sha256: String,
    pub size: usize,
    pub kind: String,
    pub expression_types: Vec<String>,
    pub config: Vec<(String, String)>,
    pub on_failure: String,
    pub calls: u64,
    pub messages: u64,
    pub failures: u64,
    pub mean_ns_per_message: u64,
    pub quarantined: bool,
    pub last_error: Option<String>,
}

impl PluginInfo {
    fn of(p: &Loaded) -> PluginInfo {
        let (s, size, limits): (&Stats, usize, &PluginLimits) = match p {
            Loaded::Filter(f) => (&f.stats, f.size, &f.limits),
            Loaded::TxnChecker(c) => (&c.stats, c.size, &c.limits),
            Loaded::Router(r) => (&r.stats, r.size, &r.limits),
        };
        let messages = s.messages.load(Ordering::Relaxed);
        let on_failure = match (p.kind(), limits.on_failure) {
            (PluginKind::TxnChecker, FailurePolicy::Deliver) => "commit".to_string(),
            (PluginKind::TxnChecker, FailurePolicy::Skip) => "rollback".to_string(),
            (PluginKind::TxnChecker, FailurePolicy::Hold) => "unknown".to_string(),
            (PluginKind::Router, FailurePolicy::Deliver) => "keep".to_string(),
            (PluginKind::Router, _) => "reject".to_string(),
            (_, policy) => format!("{policy:?}").to_lowercase(),
        };
        PluginInfo {
            name: p.name().to_string(),
            version: p.version(),
            sha256: p.sha256().to_string(),
            size,
            kind: p.kind().as_str().into(),
            expression_types: p.expression_types().to_vec(),
            config: p.config().to_vec(),
            on_failure,
            calls: s.calls.load(Ordering::Relaxed),
            messages,
            failures: s.failures.load(Ordering::Relaxed),
            mean_ns_per_message: s.nanos.load(Ordering::Relaxed) / messages.max(1),
            quarantined: s.quarantined(),
            last_error: s.last_error(),
        }
    }
}

/// What an upgrade answers: the new version, and the expression types the replaced one served.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Upgraded {
    #[serde(flatten)]
    pub info: PluginInfo,
    pub previous_expression_types: Vec<String>,
}

#[derive(Default)]
struct State {
    by_name: BTreeMap<String, Loaded>,
    by_type: HashMap<String, Arc<LoadedFilter>>,
    /// Per plugin: expression types a forced upgrade dropped while subscriptions used them.
    /// Those subscriptions still count as users of the plugin (an unload without `--force`
    /// stays refused) until some plugin serves the type again or the plugin is unloaded, so
    /// a forced upgrade is no detour around unload's in-use check.
    stranded: HashMap<String, Vec<String>>,
}

impl State {
    fn insert(&mut self, p: Loaded) -> Option<Loaded> {
        self.by_type.retain(|_, v| v.name != p.name());
        if let Loaded::Filter(f) = &p {
            for t in &f.expression_types {
                self.by_type.insert(t.clone(), f.clone());
            }
        }
        self.by_name.insert(p.name().to_string(), p)
    }

    fn conflict(&self, name: &str, types: &[String]) -> Result<(), PluginError> {
        for t in types {
            if let Some(other) = self.by_type.get(t).filter(|o| o.name != name) {
                return Err(PluginError::TypeTaken {
                    ty: t.clone(),
                    name: other.name.clone(),
                });
            }
        }
        Ok(())
    }
}

pub struct Registry {
    engine: PluginEngine,
    dir: Option<PathBuf>,
    max_module_bytes: usize,
    state: RwLock<State>,
    /// Which plugin serves which topic, for the kinds bound per topic.
    bindings: Bindings,
    /// Serialises load / upgrade / unload / bind and the registry files.
    admin: Mutex<()>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PluginError + '_ {
    move |source| PluginError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn check_name(name: &str) -> Result<(), PluginError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PluginError::BadName(name.to_string()))
    }
}

impl Registry {
    /// Opens the registry kept in `dir` (created if missing) and activates what it lists. A
    /// module that no longer loads is logged and left out (its entry is kept on disk).
    pub fn open(dir: Option<&Path>, max_module_bytes: usize) -> Result<Registry, PluginError> {
        if let Some(d) = dir {
            std::fs::create_dir_all(d.join("modules")).map_err(io(d))?;
        }
        let engine = PluginEngine::new(dir.map(|d| d.join("cache")))?;
        let r = Registry {
            engine,
            dir: dir.map(Path::to_path_buf),
            max_module_bytes,
            state: RwLock::new(State::default()),
            bindings: Bindings::open(dir.map(|d| d.join("bindings.json")))?,
            admin: Mutex::new(()),
        };
        for e in r.read_entries()? {
            let path = r.module_path(&e.sha256).unwrap_or_default();
            let loaded = std::fs::read(&path).map_err(io(&path)).and_then(|wasm| {
                if super::engine::sha256_hex(&wasm) != e.sha256 {
                    return Err(PluginError::Invalid(format!(
                        "{} does not match its sha256",
                        path.display()
                    )));
                }
                Loaded::activate(&r.engine, &e.name, e.version, &wasm, e.config.clone())
            });
            match loaded {
                Ok(p) => {
                    tracing::info!(plugin = %e.name, version = e.version, kind = p.kind().as_str(), types = ?p.expression_types(), "plugin restored");
                    let mut s = r.state.write();
                    s.insert(p);
                    if !e.stranded_types.is_empty() {
                        s.stranded.insert(e.name.clone(), e.stranded_types.clone());
                    }
                }
                Err(err) => {
                    tracing::error!(plugin = %e.name, version = e.version, error = %err, "plugin from the registry cannot be restored; it stays listed on disk")
                }
            }
        }
        Ok(r)
    }

    fn registry_file(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("registry.json"))
    }

    fn module_path(&self, sha256: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join("modules").join(format!("{sha256}.wasm")))
    }

    fn read_entries(&self) -> Result<Vec<Entry>, PluginError> {
        let Some(p) = self.registry_file() else {
            return Ok(Vec::new());
        };
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| PluginError::Invalid(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// Writes the registry file from the active set, keeping entries that failed to restore.
    fn persist(&self) -> Result<(), PluginError> {
        let Some(p) = self.registry_file() else {
            return Ok(());
        };
        let state = self.state.read();
        let active: Vec<Entry> = state
            .by_name
            .values()
            .map(|p| Entry {
                name: p.name().to_string(),
                version: p.version(),
                sha256: p.sha256().to_string(),
                config: p.config().to_vec(),
                stranded_types: state.stranded.get(p.name()).cloned().unwrap_or_default(),
            })
            .collect();
        drop(state);
        let bytes = serde_json::to_vec_pretty(&active).unwrap_or_default();
        crate::store::checkpoint::write_atomically(&p, &bytes)
            .map_err(|e| PluginError::Invalid(format!("cannot write {}: {e}", p.display())))?;
        // Modules no entry refers to any more.
        let keep: std::collections::HashSet<String> = active
            .iter()
            .map(|e| format!("{}.wasm", e.sha256))
            .collect();
        if let Some(d) = &self.dir {
            if let Ok(rd) = std::fs::read_dir(d.join("modules")) {
                for f in rd.flatten() {
                    if !keep.contains(&*f.file_name().to_string_lossy()) {
                        let _ = std::fs::remove_file(f.path());
                    }
                }
            }
        }
        Ok(())
    }

    fn store_module(&self, sha256: &str, wasm: &[u8]) -> Result<(), PluginError> {
        if let Some(p) = self.module_path(sha256) {
            if !p.exists() {
                crate::store::checkpoint::write_atomically(&p, wasm).map_err(|e| {
                    PluginError::Invalid(format!("cannot write {}: {e}", p.display()))
                })?;
            }
        }
        Ok(())
    }

    fn check_size(&self, wasm: &[u8]) -> Result<(), PluginError> {
        if wasm.len() > self.max_module_bytes {
            return Err(PluginError::Invalid(format!(
                "module is {} bytes, the limit is {}",
                wasm.len(),
                self.max_module_bytes
            )));
        }
        Ok(())
    }

    /// Loads a new plugin.
    pub fn load(
        &self,
        name: &str,
        wasm: &[u8],
        config: Vec<(String, String)>,
    ) -> Result<PluginInfo, PluginError> {
        check_name(name)?;
        self.check_size(wasm)?;
        let _g = self.admin.lock();
        if self.state.read().by_name.contains_key(name) {
            return Err(PluginError::Exists(name.to_string()));
        }
        let p = Loaded::activate(&self.engine, name, 1, wasm, config)?;
        self.state.read().conflict(name, p.expression_types())?;
        self.store_module(p.sha256(), wasm)?;
        self.state.write().insert(p.clone());
        self.persist()?;
        tracing::info!(plugin = %name, version = 1, sha256 = %p.sha256(), kind = p.kind().as_str(), types = ?p.expression_types(), "plugin loaded");
        Ok(PluginInfo::of(&p))
    }

    /// Replaces a plugin's active version. `config: None` keeps the current config. Knows of
    /// no subscriptions: the broker's admin path uses [`Registry::upgrade_checked`].
    pub fn upgrade(
        &self,
        name: &str,
        wasm: &[u8],
        config: Option<Vec<(String, String)>>,
    ) -> Result<PluginInfo, PluginError> {
        self.upgrade_checked(name, wasm, config, false, |_| Vec::new())
            .map(|u| u.info)
    }

    /// Replaces a plugin's active version. `config: None` keeps the current config. `users`
    /// names the subscriptions using the given expression types (as for [`Registry::unload`]):
    /// a new version that stops serving a type some subscription uses is refused unless
    /// `force` (those consumers then get "no loaded plugin serves expression type").
    pub fn upgrade_checked(
        &self,
        name: &str,
        wasm: &[u8],
        config: Option<Vec<(String, String)>>,
        force: bool,
        users: impl FnOnce(&[String]) -> Vec<String>,
    ) -> Result<Upgraded, PluginError> {
        self.check_size(wasm)?;
        let _g = self.admin.lock();
        let old = self
            .state
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| PluginError::NotFound(name.to_string()))?;
        let config = config.unwrap_or_else(|| old.config().to_vec());
        let p = Loaded::activate(&self.engine, name, old.version() + 1, wasm, config)?;
        if p.kind() != old.kind() {
            return Err(PluginError::Invalid(format!(
                "plugin {name:?} is a {}, the new module is a {}: unload it and load the new one instead",
                old.kind().as_str(),
                p.kind().as_str()
            )));
        }
        self.state.read().conflict(name, p.expression_types())?;
        let dropped: Vec<String> = old
            .expression_types()
            .iter()
            .filter(|t| !p.expression_types().contains(t))
            .cloned()
            .collect();
        // Dropped types that subscriptions use: stranded (they keep counting as users).
        let mut strand = Vec::new();
        if !dropped.is_empty() {
            let using = users(&dropped);
            if !using.is_empty() {
                if !force {
                    return Err(PluginError::UpgradeDropsTypesInUse {
                        name: name.to_string(),
                        types: dropped.join(", "),
                        users: using.join(", "),
                    });
                }
                tracing::warn!(plugin = %name, dropped = ?dropped, users = %using.join(", "), "forced upgrade drops expression types in use");
                strand = dropped;
            }
        }
        self.store_module(p.sha256(), wasm)?;
        {
            let mut s = self.state.write();
            let stranded = s.stranded.entry(name.to_string()).or_default();
            stranded.extend(strand);
            stranded.retain(|t| !p.expression_types().contains(t));
            stranded.sort();
            stranded.dedup();
            if stranded.is_empty() {
                s.stranded.remove(name);
            }
            s.insert(p.clone());
        }
        old.retire();
        self.persist()?;
        tracing::info!(plugin = %name, version = p.version(), sha256 = %p.sha256(), types = ?p.expression_types(), previous_types = ?old.expression_types(), forced = force, "plugin upgraded");
        Ok(Upgraded {
            info: PluginInfo::of(&p),
            previous_expression_types: old.expression_types().to_vec(),
        })
    }

    /// Unloads a plugin. `users` names the subscriptions using the given expression types;
    /// a non-empty answer refuses the unload unless `force`.
    pub fn unload(
        &self,
        name: &str,
        force: bool,
        users: impl FnOnce(&[String]) -> Vec<String>,
    ) -> Result<(), PluginError> {
        let _g = self.admin.lock();
        let p = self
            .state
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| PluginError::NotFound(name.to_string()))?;
        // The types it serves, and those a forced upgrade stranded that nothing serves now.
        let types: Vec<String> = {
            let s = self.state.read();
            let mut t = p.expression_types().to_vec();
            t.extend(
                s.stranded
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter(|ty| !s.by_type.contains_key(*ty))
                    .cloned(),
            );
            t
        };
        let mut using = users(&types);
        using.extend(
            self.bindings
                .bound_to(name)
                .into_iter()
                .map(|(kind, topic)| format!("{} binding of topic {topic}", kind.as_str())),
        );
        if !using.is_empty() && !force {
            return Err(PluginError::InUse {
                name: name.to_string(),
                users: using.join(", "),
            });
        }
        {
            let mut s = self.state.write();
            s.by_name.remove(name);
            s.by_type.retain(|_, v| v.name != name);
            s.stranded.remove(name);
        }
        p.retire();
        self.bindings.unbind_plugin(name)?;
        self.persist()?;
        tracing::info!(plugin = %name, forced = force, "plugin unloaded");
        Ok(())
    }

    /// Loads a plugin shipped with the broker unless one of that name is registered.
    pub fn ensure(&self, name: &str, wasm: &[u8]) -> Result<(), PluginError> {
        if self.state.read().by_name.contains_key(name) {
            return Ok(());
        }
        match self.load(name, wasm, Vec::new()) {
            Ok(_) | Err(PluginError::Exists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The active filter serving an expression type (upper-case).
    pub fn for_type(&self, ty: &str) -> Option<Arc<LoadedFilter>> {
        self.state.read().by_type.get(ty).cloned()
    }

    /// The active filter of this name.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedFilter>> {
        match self.state.read().by_name.get(name) {
            Some(Loaded::Filter(f)) => Some(f.clone()),
            _ => None,
        }
    }

    /// The transaction checker bound to `topic` (or to every topic), if any.
    pub fn txn_checker_for(&self, topic: &str) -> Option<Arc<LoadedChecker>> {
        match self.bound(PluginKind::TxnChecker, topic)? {
            Loaded::TxnChecker(c) => Some(c),
            _ => None,
        }
    }

    /// The router bound to `topic` (or to every topic), if any. On the send path: without
    /// any router binding it is one atomic load.
    pub fn router_for(&self, topic: &str) -> Option<Arc<LoadedRouter>> {
        match self.bound(PluginKind::Router, topic)? {
            Loaded::Router(r) => Some(r),
            _ => None,
        }
    }

    fn bound(&self, kind: PluginKind, topic: &str) -> Option<Loaded> {
        if !self.bindings.any(kind) {
            return None;
        }
        self.bindings
            .resolve_with(kind, topic, |name| {
                self.state.read().by_name.get(name).cloned()
            })
            .flatten()
    }

    /// Binds plugin `name` (of `kind`) to `topic` (`*` for every topic without its own).
    pub fn bind(&self, kind: PluginKind, topic: &str, name: &str) -> Result<(), PluginError> {
        let _g = self.admin.lock();
        match self.state.read().by_name.get(name) {
            None => return Err(PluginError::NotFound(name.to_string())),
            Some(p) if p.kind() != kind => {
                return Err(PluginError::Invalid(format!(
                    "plugin {name:?} is a {}, not a {}",
                    p.kind().as_str(),
                    kind.as_str()
                )))
            }
            Some(_) => {}
        }
        self.bindings.bind(kind, topic, name)?;
        tracing::info!(kind = kind.as_str(), topic, plugin = name, "plugin bound");
        Ok(())
    }

    /// Removes the binding of `topic`; `false` when there was none.
    pub fn unbind(&self, kind: PluginKind, topic: &str) -> Result<bool, PluginError> {
        let _g = self.admin.lock();
        let removed = self.bindings.unbind(kind, topic)?;
        if removed {
            tracing::info!(kind = kind.as_str(), topic, "plugin unbound");
        }
        Ok(removed)
    }

    /// Every binding: (kind, topic, plugin).
    pub fn bindings(&self) -> Vec<(PluginKind, String, String)> {
        self.bindings.list()
    }

    pub fn list(&self) -> Vec<PluginInfo> {
        self.state
            .read()
            .by_name
            .values()
            .map(PluginInfo::of)
            .collect()
    }
}
