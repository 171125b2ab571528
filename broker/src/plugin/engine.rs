//! The wasmtime engine shared by all plugins: component model, cranelift, epoch interruption
//! (a ticker thread advances the epoch so a call's deadline is a number of ticks), a stack cap,
//! and a cache of compiled artifacts keyed by (content sha256, engine compatibility hash) so a
//! restart or a reload of the same module does not compile again.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::error::PluginError;

/// How often the epoch advances; deadlines are rounded up to whole ticks.
pub const TICK: Duration = Duration::from_millis(2);

/// Largest wasm stack a call may use.
pub const MAX_WASM_STACK: usize = 512 << 10;

pub struct PluginEngine {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
}

impl PluginEngine {
    /// `cache_dir`: where compiled artifacts are kept (`None`: compile every time).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<PluginEngine, PluginError> {
        let mut c = Config::new();
        c.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK);
        let engine =
            Engine::new(&c).map_err(|e| PluginError::Invalid(format!("wasmtime engine: {e}")))?;
        if let Some(d) = &cache_dir {
            std::fs::create_dir_all(d).map_err(|source| PluginError::Io {
                path: d.clone(),
                source,
            })?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    e.increment_epoch();
                }
            })
            .map_err(|source| PluginError::Io {
                path: PathBuf::from("<epoch thread>"),
                source,
            })?;
        Ok(PluginEngine {
            engine,
            cache_dir,
            stop,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Ticks for a deadline in milliseconds (at least 1, plus one for the partial tick).
    pub fn ticks(deadline_ms: u64) -> u64 {
        deadline_ms.div_ceil(TICK.as_millis() as u64).max(1) + 1
    }

    /// Compiles a component, or loads its compiled artifact from the cache.
    pub fn compile(&self, sha256: &str, wasm: &[u8]) -> Result<Component, PluginError> {
        let cached = self.cache_path(sha256);
        if let Some(p) = &cached {
            if p.exists() {
                // SAFETY: the file was written by `Component::serialize` of this same engine
                // configuration (the file name carries the compatibility hash) into the
                // broker's own store directory.
                match unsafe { Component::deserialize_file(&self.engine, p) } {
                    Ok(c) => return Ok(c),
                    Err(e) => {
                        tracing::warn!(path = %p.display(), error = %e, "compiled plugin cache unusable; compiling again")
                    }
                }
            }
        }
        let c = Component::new(&self.engine, wasm)
            .map_err(|e| PluginError::Invalid(format!("not a loadable component: {e:#}")))?;
        if let Some(p) = cached {
            match c.serialize() {
                Ok(bytes) => {
                    if let Err(e) = crate::store::checkpoint::write_atomically(&p, &bytes) {
                        tracing::warn!(path = %p.display(), error = %e, "cannot cache compiled plugin");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialize compiled plugin"),
            }
        }
        Ok(c)
    }

    fn cache_path(&self, sha256: &str) -> Option<PathBuf> {
        let dir: &Path = self.cache_dir.as_deref()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        Some(dir.join(format!("{sha256}-{:016x}.cwasm", h.finish())))
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Hex sha256 of a module.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks the wasm header before handing bytes to the compiler, for a precise error.
pub fn check_header(wasm: &[u8]) -> Result<(), PluginError> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(PluginError::Invalid(
            "not a WebAssembly file (no \\0asm header)".into(),
        ));
    }
    // Bytes 4..8: version u16 + layer u16; a component has layer 1.
    let layer = u16::from_le_bytes([wasm[6], wasm[7]]);
    if layer != 1 {
        return Err(PluginError::Invalid(
            "a core wasm module, not a component: build the plugin for wasm32-wasip2 with the wasmq plugin SDK".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert!(check_header(b"hello world")
            .unwrap_err()
            .to_string()
            .contains("not a WebAssembly file"));
        assert!(check_header(b"\0asm\x01\0\0\0")
            .unwrap_err()
            .to_string()
            .contains("core wasm module"));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn deadline_ticks() {
        assert_eq!(PluginEngine::ticks(0), 2);
        assert_eq!(PluginEngine::ticks(200), 101);
    }
}
