//! Runs the core component in wasmtime.
//!
//! The component is embedded in this crate (`core/component/hitsave_core.wasm`,
//! the same bytes in every binding). Compiling it with cranelift takes tens of
//! milliseconds, so the compiled form is cached on disk, keyed by the
//! component's digest and wasmtime's compatibility hash (wasmtime version,
//! settings and CPU features), and verified with BLAKE3 before it is loaded.
//! Instances are pooled: a call takes one, uses it and puts it back, so
//! threads never share a `Store`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use hitsave_core::graph::{Change, ChangeKind, Node, NodeKind};
use hitsave_core::keys::FunctionIdentity;
use hitsave_core::policy::{Decline, Entry, EvictionParams, FunctionStats, StoreParams};
use hitsave_core::{CoreError, Digest, DigestKind, ErrorCode};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};

use crate::error::{HitSaveError, Result};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "core",
    });
}

use bindings::exports::hitsave::core::{
    fingerprint as wit_fingerprint, keys as wit_keys, policy as wit_policy, types as wit_types,
};

/// The core component, byte for byte what `cargo run -p hitsave-xtask -- component` builds.
pub static COMPONENT: &[u8] = include_bytes!("../../core/component/hitsave_core.wasm");

/// Instances whose last input was larger than this are dropped rather than
/// pooled: guest memory never shrinks, and one huge value should not keep
/// the process large for ever.
pub const RECYCLE_LIMIT: usize = 16 << 20;

/// Guest linear memory may not grow past this.
pub const MEMORY_LIMIT: usize = 2 << 30;

/// Where the compiled component came from when the core was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadSource {
    /// Loaded from the on-disk compile cache.
    Cached,
    /// Compiled now and written to the compile cache.
    CompiledAndCached,
    /// Compiled now; no cache was configured or it could not be written.
    Compiled,
}

/// How to load the core.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Directory for compiled components; `None` compiles in memory every time.
    pub compiled_dir: Option<PathBuf>,
}

impl LoadOptions {
    /// The default: compiled components under `<cache dir>/compiled`, the
    /// cache dir resolved like the store's (environment, then `hitsave.toml`).
    /// An invalid configuration is reported by whoever opens the store; the
    /// component still loads, with the default directory.
    pub fn from_env() -> Self {
        let dir = crate::config::Config::load().map(|config| config.cache_dir).ok().or_else(crate::paths::cache_dir);
        Self { compiled_dir: dir.map(|dir| dir.join("compiled")) }
    }
}

struct Instance {
    store: Store<StoreLimits>,
    core: bindings::Core,
}

/// The loaded core component: a shared engine, a pre-instantiated component
/// and a pool of instances. `Send + Sync`; share one per process ([`Core::shared`]).
pub struct Core {
    pre: bindings::CorePre<StoreLimits>,
    pool: Mutex<Vec<Instance>>,
    source: LoadSource,
}

static SHARED: OnceLock<std::result::Result<Core, String>> = OnceLock::new();

impl Core {
    /// The process-wide core, loaded on first use with [`LoadOptions::from_env`].
    pub fn shared() -> Result<&'static Core> {
        SHARED
            .get_or_init(|| Core::load(&LoadOptions::from_env()).map_err(|err| err.to_string()))
            .as_ref()
            .map_err(|message| HitSaveError::ComponentLoad(message.clone()))
    }

    /// Loads the embedded component, using the compile cache when configured.
    pub fn load(options: &LoadOptions) -> Result<Self> {
        let engine = engine()?;
        let (component, source) = match &options.compiled_dir {
            Some(dir) => load_cached(&engine, dir)?,
            None => (compile(&engine)?, LoadSource::Compiled),
        };
        let linker: Linker<StoreLimits> = Linker::new(&engine);
        let instance_pre = linker.instantiate_pre(&component).map_err(load_error)?;
        let pre = bindings::CorePre::new(instance_pre).map_err(load_error)?;
        Ok(Self { pre, pool: Mutex::new(Vec::new()), source })
    }

    /// Where the compiled component came from.
    pub fn source(&self) -> LoadSource {
        self.source
    }

    fn instantiate(&self) -> Result<Instance> {
        let limits = StoreLimitsBuilder::new().memory_size(MEMORY_LIMIT).build();
        let mut store = Store::new(self.pre.engine(), limits);
        store.limiter(|limits| limits);
        let core = self.pre.instantiate(&mut store).map_err(load_error)?;
        Ok(Instance { store, core })
    }

    /// Runs `call` on a pooled instance. A trapped instance is dropped (its
    /// state is undefined); so is one that took a very large input.
    fn with<R>(&self, input_size: usize, call: impl FnOnce(&mut Instance) -> wasmtime::Result<R>) -> Result<R> {
        // A fork waits for calls in flight (wasmtime's own registries included).
        let _entered = crate::fork::enter();
        let pooled = crate::fork::lock(&self.pool).pop();
        let mut instance = match pooled {
            Some(instance) => instance,
            None => self.instantiate()?,
        };
        match call(&mut instance) {
            Ok(result) => {
                if input_size <= RECYCLE_LIMIT {
                    crate::fork::lock(&self.pool).push(instance);
                }
                Ok(result)
            }
            Err(trap) => Err(HitSaveError::CoreTrap(format!("{trap:#}"))),
        }
    }

    /// Canonical bytes and `val2` digest of a value stream.
    pub fn encode(&self, stream: &[u8]) -> Result<(Vec<u8>, Digest)> {
        let encoded = self.with(stream.len(), |instance| {
            instance.core.hitsave_core_canonical().call_encode(&mut instance.store, stream)
        })?;
        let encoded = encoded.map_err(error_from)?;
        Ok((encoded.canonical, digest_from(encoded.digest)?))
    }

    /// The `val2` digest of a value stream.
    pub fn value_digest(&self, stream: &[u8]) -> Result<Digest> {
        let digest = self.with(stream.len(), |instance| {
            instance.core.hitsave_core_canonical().call_value_digest(&mut instance.store, stream)
        })?;
        digest_from(digest.map_err(error_from)?)
    }

    /// The `key2` eval key of a function identity and an argument digest.
    pub fn derive_key(&self, identity: &FunctionIdentity, arguments: &Digest) -> Result<Digest> {
        let identity = match identity {
            FunctionIdentity::Fingerprint(digest) => wit_keys::FunctionIdentity::Fingerprint(digest_to(digest)),
            FunctionIdentity::Explicit { name, version } => {
                wit_keys::FunctionIdentity::Explicit(wit_keys::ExplicitIdentity {
                    name: name.clone(),
                    version: version.clone(),
                })
            }
        };
        let arguments = digest_to(arguments);
        let key = self.with(0, |instance| {
            instance.core.hitsave_core_keys().call_derive_key(&mut instance.store, &identity, &arguments)
        })?;
        digest_from(key.map_err(error_from)?)
    }

    /// The `code2` fingerprint of every node, in input order.
    pub fn fingerprints(&self, nodes: &[Node]) -> Result<Vec<Digest>> {
        let nodes: Vec<wit_fingerprint::Node> = nodes.iter().map(node_to).collect();
        let digests = self.with(0, |instance| {
            instance.core.hitsave_core_fingerprint().call_fingerprints(&mut instance.store, &nodes)
        })?;
        digests.map_err(error_from)?.into_iter().map(digest_from).collect()
    }

    /// What changed between two graphs among the nodes reachable from `root`.
    pub fn diff(&self, old: &[Node], new: &[Node], root: &str) -> Result<Vec<Change>> {
        let old: Vec<wit_fingerprint::Node> = old.iter().map(node_to).collect();
        let new: Vec<wit_fingerprint::Node> = new.iter().map(node_to).collect();
        let changes = self.with(0, |instance| {
            instance.core.hitsave_core_fingerprint().call_diff(&mut instance.store, &old, &new, root)
        })?;
        Ok(changes
            .map_err(error_from)?
            .into_iter()
            .map(|change| Change {
                name: change.name,
                change: match change.change {
                    wit_fingerprint::ChangeKind::Added => ChangeKind::Added,
                    wit_fingerprint::ChangeKind::Removed => ChangeKind::Removed,
                    wit_fingerprint::ChangeKind::Modified => ChangeKind::Modified,
                    wit_fingerprint::ChangeKind::KindChanged => ChangeKind::KindChanged,
                },
            })
            .collect())
    }

    /// Indices of the entries to evict so the rest fits the budget.
    pub fn evict(&self, entries: &[Entry], params: &EvictionParams) -> Result<Vec<u32>> {
        let entries: Vec<wit_policy::Entry> = entries
            .iter()
            .map(|entry| wit_policy::Entry {
                size: entry.size,
                compute_micros: entry.compute_micros,
                last_access: entry.last_access,
                hits: entry.hits,
            })
            .collect();
        let params = wit_policy::EvictionParams { budget: params.budget, now: params.now, half_life: params.half_life };
        self.with(0, |instance| instance.core.hitsave_core_policy().call_evict(&mut instance.store, &entries, params))
    }

    /// Whether a fresh result is worth storing: `None` stores it, otherwise
    /// the policy's reason not to.
    pub fn store_decision(&self, size: u64, compute_micros: u64, params: &StoreParams) -> Result<Option<Decline>> {
        let params = wit_policy::StoreParams {
            budget: params.budget,
            min_compute_micros: params.min_compute_micros,
            read_bytes_per_second: params.read_bytes_per_second,
        };
        let decided = self.with(0, |instance| {
            instance.core.hitsave_core_policy().call_store_decision(&mut instance.store, size, compute_micros, params)
        })?;
        Ok(decided.map(|decline| match decline {
            wit_policy::Decline::OverBudget => Decline::OverBudget,
            wit_policy::Decline::TooQuick => Decline::TooQuick,
            wit_policy::Decline::CheaperToRecompute => Decline::CheaperToRecompute,
        }))
    }

    /// Whether to fetch a function's cloud results in bulk.
    pub fn should_prefetch(&self, stats: &FunctionStats) -> Result<bool> {
        let stats = wit_policy::FunctionStats {
            calls: stats.calls,
            remote_hits: stats.remote_hits,
            misses: stats.misses,
            remote_entries: stats.remote_entries,
            remote_bytes: stats.remote_bytes,
            free_bytes: stats.free_bytes,
        };
        self.with(0, |instance| instance.core.hitsave_core_policy().call_should_prefetch(&mut instance.store, stats))
    }
}

fn load_error(error: wasmtime::Error) -> HitSaveError {
    HitSaveError::ComponentLoad(format!("{error:#}"))
}

fn engine() -> Result<Engine> {
    let mut config = Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    Engine::new(&config).map_err(load_error)
}

fn compile(engine: &Engine) -> Result<Component> {
    Component::new(engine, COMPONENT).map_err(load_error)
}

/// BLAKE3 of the embedded component, hex.
pub fn component_digest() -> String {
    hitsave_core::Digest::blob(COMPONENT).hex()
}

/// The compile-cache file for this component, wasmtime build and CPU.
pub fn compiled_path(engine: &Engine, dir: &Path) -> PathBuf {
    struct Blake3Hasher(blake3::Hasher);
    impl std::hash::Hasher for Blake3Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            let digest = self.0.finalize();
            u64::from_le_bytes(digest.as_bytes()[..8].try_into().unwrap_or_default())
        }
    }
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    let compatibility = hasher.0.finalize().to_hex();
    dir.join(format!("core-{}-{}.cwasm", &component_digest()[..24], &compatibility[..24]))
}

/// Loads the compiled component from `dir`, or compiles it and writes it
/// there (atomically: temp file, then rename). The file ends with the BLAKE3
/// of what precedes it; a file that fails the check is replaced. Any
/// failure to use the cache falls back to compiling in memory.
fn load_cached(engine: &Engine, dir: &Path) -> Result<(Component, LoadSource)> {
    let path = compiled_path(engine, dir);
    if let Ok(bytes) = std::fs::read(&path) {
        if bytes.len() > 32 {
            let (compiled, checksum) = bytes.split_at(bytes.len() - 32);
            if blake3::hash(compiled).as_bytes() == checksum {
                // SAFETY: the bytes were produced by `precompile_component` of
                // this very wasmtime build and configuration (the file name
                // carries its compatibility hash), written atomically, and
                // verified against their BLAKE3 just above.
                if let Ok(component) = unsafe { Component::deserialize(engine, compiled) } {
                    return Ok((component, LoadSource::Cached));
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    let compiled = engine.precompile_component(COMPONENT).map_err(load_error)?;
    // SAFETY: `compiled` was produced by this engine a moment ago.
    let component = unsafe { Component::deserialize(engine, &compiled) }.map_err(load_error)?;
    let source = match write_atomically(&path, &compiled) {
        Ok(()) => LoadSource::CompiledAndCached,
        Err(_) => LoadSource::Compiled,
    };
    Ok((component, source))
}

fn write_atomically(path: &Path, compiled: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(
        ".{}.{}.{:?}.tmp",
        path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id(),
        std::thread::current().id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(compiled)?;
        file.write_all(blake3::hash(compiled).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn digest_kind_to(kind: DigestKind) -> wit_types::DigestKind {
    match kind {
        DigestKind::Value => wit_types::DigestKind::Value,
        DigestKind::Key => wit_types::DigestKind::Key,
        DigestKind::Code => wit_types::DigestKind::Code,
        DigestKind::Blob => wit_types::DigestKind::Blob,
    }
}

fn digest_to(digest: &Digest) -> wit_types::Digest {
    wit_types::Digest { kind: digest_kind_to(digest.kind), version: digest.version, bytes: digest.bytes.to_vec() }
}

fn digest_from(digest: wit_types::Digest) -> Result<Digest> {
    let kind = match digest.kind {
        wit_types::DigestKind::Value => DigestKind::Value,
        wit_types::DigestKind::Key => DigestKind::Key,
        wit_types::DigestKind::Code => DigestKind::Code,
        wit_types::DigestKind::Blob => DigestKind::Blob,
    };
    Digest::from_parts(kind, digest.version, &digest.bytes)
        .map_err(|err| HitSaveError::CoreTrap(format!("the core returned a malformed digest: {err}")))
}

fn error_from(error: wit_types::CoreError) -> HitSaveError {
    let code = match error.code {
        wit_types::ErrorCode::MalformedStream => ErrorCode::MalformedStream,
        wit_types::ErrorCode::InvalidUtf8 => ErrorCode::InvalidUtf8,
        wit_types::ErrorCode::DuplicateKey => ErrorCode::DuplicateKey,
        wit_types::ErrorCode::UnhashableValue => ErrorCode::UnhashableValue,
        wit_types::ErrorCode::InvalidArray => ErrorCode::InvalidArray,
        wit_types::ErrorCode::InvalidDigest => ErrorCode::InvalidDigest,
        wit_types::ErrorCode::InvalidGraph => ErrorCode::InvalidGraph,
        wit_types::ErrorCode::InvalidIdentity => ErrorCode::InvalidIdentity,
        wit_types::ErrorCode::TooDeep => ErrorCode::TooDeep,
    };
    HitSaveError::Core(CoreError { code, message: error.message, path: error.path })
}

fn node_to(node: &Node) -> wit_fingerprint::Node {
    wit_fingerprint::Node {
        kind: match node.kind {
            NodeKind::Function => wit_fingerprint::NodeKind::Function,
            NodeKind::Class => wit_fingerprint::NodeKind::Class,
            NodeKind::Constant => wit_fingerprint::NodeKind::Constant,
            NodeKind::Package => wit_fingerprint::NodeKind::Package,
            NodeKind::Module => wit_fingerprint::NodeKind::Module,
        },
        name: node.name.clone(),
        content: digest_to(&node.content),
        deps: node.deps.clone(),
    }
}
