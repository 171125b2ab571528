//! Which plugin serves which topic, for the kinds of plugin that are bound per topic rather
//! than chosen by a consumer's expression type (transaction checkers now, routers next).
//! A binding names a topic or `*`, the default for every topic without its own. Persisted in
//! `<store>/plugins/bindings.json` (write-temp + fsync + rename) with the registry.

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::sync::atomic::{AtomicU8, Ordering};

use parking_lot::RwLock;

use super::error::PluginError;
use super::module::PluginKind;

/// The topic of the default binding.
pub const ANY_TOPIC: &str = "*";

type Map = BTreeMap<PluginKind, BTreeMap<String, String>>;

pub struct Bindings {
    path: Option<PathBuf>,
    map: RwLock<Map>,
    /// Bit per kind with at least one binding: the send path's check when none exists.
    kinds: AtomicU8,
}

fn kind_bits(map: &Map) -> u8 {
    map.iter()
        .filter(|(_, t)| !t.is_empty())
        .fold(0, |b, (k, _)| b | 1 << (*k as u8))
}

impl Bindings {
    /// Opens the bindings file (`None`: in memory only). A missing file is no bindings.
    pub fn open(path: Option<PathBuf>) -> Result<Bindings, PluginError> {
        let map = match &path {
            None => Map::new(),
            Some(p) => match std::fs::read(p) {
                Ok(b) => serde_json::from_slice(&b)
                    .map_err(|e| PluginError::Invalid(format!("{}: {e}", p.display())))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
                Err(source) => {
                    return Err(PluginError::Io {
                        path: p.clone(),
                        source,
                    })
                }
            },
        };
        Ok(Bindings {
            path,
            kinds: AtomicU8::new(kind_bits(&map)),
            map: RwLock::new(map),
        })
    }

    fn persist(&self, map: &Map) -> Result<(), PluginError> {
        let Some(p) = &self.path else { return Ok(()) };
        let bytes = serde_json::to_vec_pretty(map).unwrap_or_default();
        crate::store::checkpoint::write_atomically(p, &bytes)
            .map_err(|e| PluginError::Invalid(format!("cannot write {}: {e}", p.display())))
    }

    /// Changes the map and persists it; on a write error the change is undone.
    fn change<R>(&self, f: impl FnOnce(&mut Map) -> R) -> Result<R, PluginError> {
        let mut map = self.map.write();
        let before = map.clone();
        let r = f(&mut map);
        if let Err(e) = self.persist(&map) {
            *map = before;
            return Err(e);
        }
        self.kinds.store(kind_bits(&map), Ordering::Release);
        Ok(r)
    }

    pub fn bind(&self, kind: PluginKind, topic: &str, plugin: &str) -> Result<(), PluginError> {
        if topic != ANY_TOPIC {
            crate::meta::topics::validate_topic_name(topic)
                .map_err(|e| PluginError::Invalid(e.to_string()))?;
        }
        self.change(|m| {
            m.entry(kind)
                .or_default()
                .insert(topic.to_string(), plugin.to_string());
        })
    }

    pub fn unbind(&self, kind: PluginKind, topic: &str) -> Result<bool, PluginError> {
        if !self
            .map
            .read()
            .get(&kind)
            .is_some_and(|t| t.contains_key(topic))
        {
            return Ok(false);
        }
        self.change(|m| {
            let removed = m.get_mut(&kind).and_then(|t| t.remove(topic)).is_some();
            m.retain(|_, t| !t.is_empty());
            removed
        })
    }

    /// Drops every binding of `plugin` (it is being unloaded).
    pub fn unbind_plugin(&self, plugin: &str) -> Result<(), PluginError> {
        if self.bound_to(plugin).is_empty() {
            return Ok(());
        }
        self.change(|m| {
            for t in m.values_mut() {
                t.retain(|_, p| p != plugin);
            }
            m.retain(|_, t| !t.is_empty());
        })
    }

    /// Whether any topic has a binding of `kind`.
    pub fn any(&self, kind: PluginKind) -> bool {
        self.kinds.load(Ordering::Acquire) & (1 << (kind as u8)) != 0
    }

    /// The plugin bound to `topic`, else the default binding.
    pub fn resolve(&self, kind: PluginKind, topic: &str) -> Option<String> {
        self.resolve_with(kind, topic, str::to_string)
    }

    /// `f` of the name of the plugin bound to `topic` (else of the default binding), without
    /// allocating.
    pub fn resolve_with<R>(
        &self,
        kind: PluginKind,
        topic: &str,
        f: impl FnOnce(&str) -> R,
    ) -> Option<R> {
        let m = self.map.read();
        let t = m.get(&kind)?;
        t.get(topic).or_else(|| t.get(ANY_TOPIC)).map(|p| f(p))
    }

    /// The (kind, topic) bindings naming `plugin`.
    pub fn bound_to(&self, plugin: &str) -> Vec<(PluginKind, String)> {
        self.map
            .read()
            .iter()
            .flat_map(|(k, t)| {
                t.iter()
                    .filter(|(_, p)| *p == plugin)
                    .map(move |(topic, _)| (*k, topic.clone()))
            })
            .collect()
    }

    pub fn list(&self) -> Vec<(PluginKind, String, String)> {
        self.map
            .read()
            .iter()
            .flat_map(|(k, t)| t.iter().map(move |(tp, p)| (*k, tp.clone(), p.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_resolve_with_default_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bindings.json");
        let b = Bindings::open(Some(path.clone())).unwrap();
        assert_eq!(b.resolve(PluginKind::TxnChecker, "Orders"), None);
        b.bind(PluginKind::TxnChecker, ANY_TOPIC, "fallback")
            .unwrap();
        b.bind(PluginKind::TxnChecker, "Orders", "deadline")
            .unwrap();
        assert!(b.bind(PluginKind::TxnChecker, "bad topic!", "x").is_err());
        assert_eq!(
            b.resolve(PluginKind::TxnChecker, "Orders").as_deref(),
            Some("deadline")
        );
        assert_eq!(
            b.resolve(PluginKind::TxnChecker, "Other").as_deref(),
            Some("fallback")
        );
        let again = Bindings::open(Some(path.clone())).unwrap();
        assert_eq!(again.list().len(), 2);
        assert!(again.unbind(PluginKind::TxnChecker, "Orders").unwrap());
        assert!(!again.unbind(PluginKind::TxnChecker, "Orders").unwrap());
        assert_eq!(
            again.resolve(PluginKind::TxnChecker, "Orders").as_deref(),
            Some("fallback")
        );
        again.unbind_plugin("fallback").unwrap();
        assert!(Bindings::open(Some(path)).unwrap().list().is_empty());
    }
}
