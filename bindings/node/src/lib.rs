//! `hitsave.node`: the Node SDK's native addon.
//!
//! Like the Python module it translates and nothing more: JavaScript values
//! into the value stream ([`walk`]), portable results both ways
//! ([`portable`]), module sources into dependency graphs ([`analyze`]), and
//! host errors into `HitSaveError`s with stable codes. `memo()` itself is in
//! `index.js`.
//!
//! Memoized functions are registered once ([`register_function`]) and called
//! by handle, so a call crosses into Rust once on a hit: walk the arguments,
//! derive the key, read the store, rebuild the result. Asynchronous calls do
//! the hashing, the key and the store read on a libuv worker
//! ([`lookup_call_async`]), so the event loop keeps running.

use hitsave_js_analysis as analyze;
mod context;
mod js;
mod portable;
mod walk;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use hitsave_core::Digest;
use hitsave_core::graph::{Node, NodeKind};
use hitsave_core::keys::FunctionIdentity;
use hitsave_host::function::{Computed, Finish};
use hitsave_host::payload::{Part, Span, span_slices};
use hitsave_host::store::{Graph, Hit, ResultData};
use hitsave_host::{Cache, Config, Core, HitSaveError};
use napi::bindgen_prelude::{AsyncTask, Either3, FromNapiValue, Unknown};
use napi::{Env, Error, Result, Task, sys};
use napi_derive::napi;

use crate::js::{Js, Raw, V};
use crate::walk::{Deferred, Hashing, Walker};

/// A host error as a JavaScript `HitSaveError` with `.code` and `.path`.
pub(crate) fn to_napi(js: Js, error: HitSaveError) -> Error {
    let code = error.code();
    let message = error.to_string();
    let made = (|| -> Result<Error> {
        let class = js.deref(context::get()?.error_class)?;
        let path = match error.path() {
            Some(path) => js.str(path)?,
            None => js.null()?,
        };
        let instance = js.new_instance(class, &[js.str(&message)?, js.str(code)?, path])?;
        Ok(Error::from_unknown_without_coercion(unsafe { Unknown::from_napi_value(js.0, instance)? }))
    })();
    made.unwrap_or_else(|_| Error::from_reason(format!("[{code}] {message}")))
}

fn core(js: Js) -> Result<&'static Core> {
    Core::shared().map_err(|err| to_napi(js, err))
}

/// Receives the classes the native side builds and recognises (once per thread).
#[napi]
pub fn init(env: Env, options: Raw) -> Result<()> {
    context::init(Js(env.raw()), options.0)
}

fn walk_value(js: Js, value: V, hashing: Hashing) -> Result<(Vec<u8>, Vec<Deferred>)> {
    let ctx = context::get()?;
    let mut walker = Walker::new(js, ctx, hashing);
    if let Err(error) = walker.walk(value) {
        walker.abandon();
        return Err(error);
    }
    Ok((walker.out.into_bytes(), walker.deferred))
}

/// The value stream of a value (for tests against the vectors).
#[napi]
pub fn value_stream(env: Env, value: Raw) -> Result<Raw> {
    let js = Js(env.raw());
    let (stream, _) = walk_value(js, value.0, Hashing::Inline)?;
    Ok(Raw(js.buffer(&stream)?))
}

/// The `val2` digest of a value.
#[napi]
pub fn value_digest(env: Env, value: Raw) -> Result<String> {
    let js = Js(env.raw());
    let (stream, _) = walk_value(js, value.0, Hashing::Inline)?;
    Ok(core(js)?.value_digest(&stream).map_err(|err| to_napi(js, err))?.to_string())
}

/// Canonical bytes of a value (for tests and debugging).
#[napi]
pub fn canonical_bytes(env: Env, value: Raw) -> Result<Raw> {
    let js = Js(env.raw());
    let (stream, _) = walk_value(js, value.0, Hashing::Inline)?;
    let (canonical, _) = core(js)?.encode(&stream).map_err(|err| to_napi(js, err))?;
    Ok(Raw(js.buffer(&canonical)?))
}

fn parse_digest(js: Js, text: &str) -> Result<Digest> {
    Digest::parse(text).map_err(|err| to_napi(js, err.into()))
}

fn identity_of(
    js: Js,
    fingerprint: Option<String>,
    name: Option<String>,
    version: Option<String>,
) -> Result<FunctionIdentity> {
    hitsave_host::function::identity(fingerprint.as_deref(), name, version).map_err(|err| to_napi(js, err))
}

/// The `key2` key of an argument digest under a fingerprint or a name and version.
#[napi]
pub fn derive_key(
    env: Env,
    arguments: String,
    fingerprint: Option<String>,
    name: Option<String>,
    version: Option<String>,
) -> Result<String> {
    let js = Js(env.raw());
    let identity = identity_of(js, fingerprint, name, version)?;
    let key = core(js)?.derive_key(&identity, &parse_digest(js, &arguments)?).map_err(|err| to_napi(js, err))?;
    Ok(key.to_string())
}

/// The portable encoding of a result: a Buffer, or an array of parts when
/// large array or Buffer data is kept where it lies (Buffers of the stream's
/// own bytes and the TypedArrays holding the data: `put` writes them in
/// order, never joined); `null` when it has no exact portable form.
#[napi]
pub fn encode_portable(env: Env, value: Raw) -> Result<Raw> {
    let js = Js(env.raw());
    let mut out = portable::ResultWriter::default();
    if !portable::encode(js, context::get()?, value.0, &mut out, 0)? {
        return Ok(Raw(js.null()?));
    }
    let mut parts = out.finish();
    if let [Part::Bytes(bytes)] = &parts[..] {
        return Ok(Raw(js.buffer(bytes)?));
    }
    let values = parts
        .drain(..)
        .map(|part| match part {
            Part::Bytes(bytes) => js.buffer(&bytes),
            Part::View(view) => Ok(view),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Raw(js.array_of(&values)?))
}

/// Rebuilds a result stored with the portable codec.
#[napi]
pub fn decode_portable(env: Env, data: Raw) -> Result<Raw> {
    let js = Js(env.raw());
    let (address, len) = js.buffer_info(data.0)?;
    let bytes = if len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(address, len) } };
    Ok(Raw(portable::decode_value(js, context::get()?, bytes)?))
}

/// BLAKE3 (`blob1`) of a Buffer or TypedArray, on all cores.
#[napi]
pub fn blob_digest(env: Env, data: Raw) -> Result<String> {
    let js = Js(env.raw());
    let (address, len) = js.buffer_info(data.0)?;
    let bytes = if len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(address, len) } };
    Ok(hitsave_host::hash::blob_digest(bytes).to_string())
}

/// Graph nodes from a JavaScript array of `[kind, name, content digest, [dep indices]]`.
fn nodes_of_js(js: Js, items: V) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    for index in 0..js.array_len(items)? {
        let item = js.element(items, index)?;
        let deps_value = js.element(item, 3)?;
        let mut deps = Vec::new();
        for dep in 0..js.array_len(deps_value)? {
            deps.push(js.f64_value(js.element(deps_value, dep)?)? as u32);
        }
        nodes.push(analyze::GraphNode {
            kind: js.string(js.element(item, 0)?)?,
            name: js.string(js.element(item, 1)?)?,
            content: js.string(js.element(item, 2)?)?,
            deps,
        });
    }
    analyze::core_nodes(&nodes).map_err(|err| to_napi(js, err))
}

/// A function's analysed dependency graph, the fingerprint of its root and
/// its nodes as the core takes them.
type Analysis = (analyze::AnalyzedGraph, Digest, Vec<hitsave_core::graph::Node>);

/// Reads and parses the module sources and fingerprints the graph: file
/// reads, oxc and the core component, so async functions run it on a worker.
fn analysis(
    file: &str,
    line: u32,
    column: u32,
    source: &str,
    script: Option<&str>,
    others: &[String],
    argv: &[String],
) -> std::result::Result<Analysis, HitSaveError> {
    let core = Core::shared()?;
    let program = analyze::Program {
        files: others.iter().map(PathBuf::from).collect(),
        argv: argv.to_vec(),
        summaries: summaries_dir(),
    };
    let (file, source, script) = (PathBuf::from(file), source.to_owned(), script.map(str::to_owned));
    let graph =
        on_analysis_thread(move || analyze::analyze(core, &file, line, column, &source, script.as_deref(), &program))?;
    let nodes = analyze::core_nodes(&graph.nodes)?;
    let fingerprint = root_fingerprint_of(core, &graph, &nodes)?;
    Ok((graph, fingerprint, nodes))
}

/// Where module summaries are kept across processes: the process's store's
/// analysis directory (none when the configuration cannot be read).
fn summaries_dir() -> Option<PathBuf> {
    process_config().as_ref().ok().map(|config| config.cache_dir.join("analysis"))
}

/// Runs an analysis on a thread whose stack a dependency chain of tens of
/// thousands of functions cannot overflow (reserved, not committed; the JS
/// thread's and libuv's stacks are far smaller: the traversal recurses).
fn on_analysis_thread<T: Send + 'static>(
    run: impl FnOnce() -> std::result::Result<T, HitSaveError> + Send + 'static,
) -> std::result::Result<T, HitSaveError> {
    std::thread::Builder::new()
        .name("hitsave-analyze".into())
        .stack_size(ANALYSIS_STACK)
        .spawn(run)
        .map_err(|err| HitSaveError::CodeUnavailable(format!("cannot start the analysis: {err}")))?
        .join()
        .map_err(|_| HitSaveError::CodeUnavailable("the analysis of the function's code failed".into()))?
}

fn root_fingerprint(core: &Core, graph: &analyze::AnalyzedGraph) -> std::result::Result<Digest, HitSaveError> {
    root_fingerprint_of(core, graph, &analyze::core_nodes(&graph.nodes)?)
}

/// [`root_fingerprint`] of the graph's nodes as the core takes them.
fn root_fingerprint_of(
    core: &Core,
    graph: &analyze::AnalyzedGraph,
    nodes: &[hitsave_core::graph::Node],
) -> std::result::Result<Digest, HitSaveError> {
    let fingerprints = core.fingerprints(nodes)?;
    let root = graph.nodes.iter().position(|node| node.name == graph.root).unwrap_or(0);
    Ok(fingerprints[root])
}

/// The code fingerprints of the project class (or constructor function)
/// named `name` whose text is `source`, for an instance passed as an
/// argument: its graph, found in the project modules `files` import
/// (`analyze::analyze_class`; by name when transpiled code runs a text no
/// file holds, every class of that name); empty when the project does not
/// define it (a package's class).
#[napi]
pub fn class_fingerprints(
    env: Env,
    source: String,
    name: String,
    files: Vec<String>,
    argv: Vec<String>,
) -> Result<Vec<String>> {
    let js = Js(env.raw());
    let found = (|| -> std::result::Result<Vec<String>, HitSaveError> {
        let core = Core::shared()?;
        let program =
            analyze::Program { files: files.iter().map(PathBuf::from).collect(), argv, summaries: summaries_dir() };
        let graphs = on_analysis_thread(move || analyze::analyze_class(core, &source, &name, &program))?;
        graphs.iter().map(|graph| Ok(root_fingerprint(core, graph)?.to_string())).collect()
    })();
    found.map_err(|err| to_napi(js, err))
}

/// Whether the class named `name` whose text is `source` is the project's
/// (`analyze::project_class`: what [`class_fingerprints`] would find, without
/// analysing it), not a package's.
#[napi]
pub fn project_class(env: Env, source: String, name: String, files: Vec<String>) -> Result<bool> {
    let js = Js(env.raw());
    let found = (|| -> std::result::Result<bool, HitSaveError> {
        let core = Core::shared()?;
        let program = analyze::Program {
            files: files.iter().map(PathBuf::from).collect(),
            argv: Vec::new(),
            summaries: summaries_dir(),
        };
        on_analysis_thread(move || analyze::project_class(core, &source, &name, &program))
    })();
    found.map_err(|err| to_napi(js, err))
}

/// Whether a function whose text is `source` is written in the project
/// modules `files` import ([`project_class`] without a name), not a package's.
#[napi]
pub fn project_function(env: Env, source: String, files: Vec<String>) -> Result<bool> {
    project_class(env, source, String::new(), files)
}

/// The files, directories and glob patterns text arguments name, by
/// contents, as `[[text, digest]]`, for a function whose code reads files at
/// paths known only when it runs or writes files, or that has an explicit
/// identity (`hitsave_host::files::argument_files`; `unhashable_value` when
/// one names too many files to count).
#[napi]
pub fn argument_files(env: Env, texts: Vec<String>) -> Result<Vec<Vec<String>>> {
    let found = hitsave_host::files::argument_files(&texts).map_err(|err| to_napi(Js(env.raw()), err))?;
    Ok(found.into_iter().map(|(text, digest)| vec![text, digest]).collect())
}

/// Stack of the analysis thread: 1 GiB of address space, touched only as deep as a chain goes.
const ANALYSIS_STACK: usize = 1 << 30;

/// What analyses of this process keep for JavaScript, each under the id
/// (from 1) JavaScript holds for it; kept for the process.
struct Kept<T>(Mutex<Vec<Arc<T>>>);

impl<T> Kept<T> {
    const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    /// Keeps `value`; its id.
    fn keep(&self, value: T) -> usize {
        let mut kept = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        kept.push(Arc::new(value));
        kept.len()
    }

    /// The value kept under `id`.
    fn get(&self, id: u32) -> Option<Arc<T>> {
        let kept = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        id.checked_sub(1).and_then(|index| kept.get(index as usize)).cloned()
    }
}

/// What analyses of this process read besides code, by the id JavaScript
/// keeps (`watch` of an analysis; 0 when it read only code).
static WATCHES: Kept<analyze::Watched> = Kept::new();

/// Analysed graphs' nodes, by the id JavaScript keeps (`nodesId`): as the
/// analysis named them, and as the core takes them.
static NODES: Kept<(Vec<analyze::GraphNode>, Vec<hitsave_core::graph::Node>)> = Kept::new();

fn kept_nodes(js: Js, id: u32) -> Result<Arc<(Vec<analyze::GraphNode>, Vec<hitsave_core::graph::Node>)>> {
    NODES.get(id).ok_or_else(|| to_napi(js, HitSaveError::CodeUnavailable(format!("no analysed graph {id}"))))
}

/// An analysed graph's nodes as `[kind, name, content, [deps]]` (for
/// JavaScript to add the module state it reads).
#[napi]
pub fn graph_nodes(env: Env, id: u32) -> Result<Raw> {
    let js = Js(env.raw());
    let kept = kept_nodes(js, id)?;
    let mut items = Vec::new();
    for node in &kept.0 {
        let deps: Vec<V> = node.deps.iter().map(|&dep| js.number(dep as f64)).collect::<Result<_>>()?;
        items.push(js.array_of(&[
            js.str(&node.kind)?,
            js.str(&node.name)?,
            js.str(&node.content)?,
            js.array_of(&deps)?,
        ])?);
    }
    Ok(Raw(js.array_of(&items)?))
}

/// Keeps what an analysis read besides code under an id for `watchCurrent`
/// (0: it read only code).
fn keep_watch(watched: analyze::Watched) -> usize {
    if watched.is_empty() {
        return 0;
    }
    WATCHES.keep(watched)
}

/// Whether nothing an analysis read besides code changed since (the files
/// and directory listings by size, time and inode, the environment
/// variables by value): when something did, JavaScript analyses again.
#[napi]
pub fn watch_current(id: u32) -> bool {
    WATCHES.get(id).is_none_or(|watched| watched.current())
}

/// `{ root, fingerprint, nodes, watch }` for JavaScript.
fn analysis_to_js(js: Js, (mut graph, fingerprint, nodes): Analysis) -> Result<Raw> {
    let out = js.object()?;
    js.set_named(out, "root", js.str(&graph.root)?)?;
    js.set_named(out, "fingerprint", js.str(&fingerprint.to_string())?)?;
    // The nodes stay here (JavaScript reads them only to add module state:
    // `graph_nodes`); `registerFunction` takes them by this id.
    let id = NODES.keep((std::mem::take(&mut graph.nodes), nodes));
    js.set_named(out, "nodesId", js.number(id as f64)?)?;
    // `[[file, [binding names], [[node, name, reassigned], …]], …]`: the
    // module-level variables JavaScript reads in the running program.
    let mut state = Vec::new();
    for module in &graph.state {
        let bindings: Vec<V> = module.bindings.iter().map(|name| js.str(name)).collect::<Result<_>>()?;
        let variables: Vec<V> = module
            .variables
            .iter()
            .map(|(node, name, reassigned)| {
                js.array_of(&[js.number(f64::from(*node))?, js.str(name)?, js.boolean(*reassigned)?])
            })
            .collect::<Result<_>>()?;
        state.push(js.array_of(&[
            js.str(&module.file.display().to_string())?,
            js.array_of(&bindings)?,
            js.array_of(&variables)?,
        ])?);
    }
    js.set_named(out, "state", js.array_of(&state)?)?;
    let names: Vec<V> = graph.state_names.iter().map(|name| js.str(name)).collect::<Result<_>>()?;
    js.set_named(out, "stateNames", js.array_of(&names)?)?;
    let globals: Vec<V> = graph.state_globals.iter().map(|name| js.str(name)).collect::<Result<_>>()?;
    js.set_named(out, "stateGlobals", js.array_of(&globals)?)?;
    js.set_named(out, "readsUnknown", js.boolean(graph.reads_unknown)?)?;
    js.set_named(out, "filesInKey", js.boolean(graph.files_in_key)?)?;
    // `[[name, reassigned], …]`: the variables of the code around the
    // function it uses, read from its closure in the running program.
    let captures: Vec<V> = graph
        .captures
        .iter()
        .map(|(name, reassigned)| js.array_of(&[js.str(name)?, js.boolean(*reassigned)?]))
        .collect::<Result<_>>()?;
    js.set_named(out, "captures", js.array_of(&captures)?)?;
    let watch = keep_watch(graph.watched);
    js.set_named(out, "watch", js.number(watch as f64)?)?;
    Ok(Raw(out))
}

/// A function's dependency graph, found from the `memo()` call at `file:line:column`
/// (or, failing that, from the function's source text): `{ root, fingerprint, nodes }`.
/// `script`: the program's text when it has no file (`node -e`, stdin);
/// `others`: the files of the calls that led to `memo()`.
#[napi]
#[allow(clippy::too_many_arguments)] // the JavaScript call spreads one array (`where` in index.js)
pub fn analyze(
    env: Env,
    file: String,
    line: u32,
    column: u32,
    source: String,
    script: Option<String>,
    others: Option<Vec<String>>,
    argv: Option<Vec<String>>,
) -> Result<Raw> {
    let js = Js(env.raw());
    let others = others.unwrap_or_default();
    let argv = argv.unwrap_or_default();
    let found =
        analysis(&file, line, column, &source, script.as_deref(), &others, &argv).map_err(|err| to_napi(js, err))?;
    analysis_to_js(js, found)
}

/// [`analyze`] on a libuv worker, for the first call of an async function.
pub struct Analyze {
    file: String,
    line: u32,
    column: u32,
    source: String,
    script: Option<String>,
    others: Vec<String>,
    argv: Vec<String>,
}

impl Task for Analyze {
    type Output = std::result::Result<Analysis, HitSaveError>;
    type JsValue = Raw;

    fn compute(&mut self) -> Result<Self::Output> {
        Ok(analysis(&self.file, self.line, self.column, &self.source, self.script.as_deref(), &self.others, &self.argv))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<Raw> {
        let js = Js(env.raw());
        analysis_to_js(js, output.map_err(|err| to_napi(js, err))?)
    }
}

/// `analyze` for async functions: the sources are read and parsed, and the
/// graph fingerprinted, on a worker, so the first call does not hold the event loop.
#[napi(ts_return_type = "Promise<unknown>")]
pub fn analyze_async(
    file: String,
    line: u32,
    column: u32,
    source: String,
    script: Option<String>,
    others: Option<Vec<String>>,
    argv: Option<Vec<String>>,
) -> AsyncTask<Analyze> {
    let (others, argv) = (others.unwrap_or_default(), argv.unwrap_or_default());
    AsyncTask::new(Analyze { file, line, column, source, script, others, argv })
}

/// `[nodes, watch]`: graph nodes for the existing files the path-like `texts` name, by
/// contents (`file:<path>` relative to the project root of `anchor`), and
/// the id `watchCurrent` checks them by: the files module state names
/// (`cfg.data` read from a configuration file), for a graph whose code reads
/// files at paths known only when it runs.
#[napi]
pub fn file_nodes(env: Env, anchor: String, texts: Vec<String>) -> Result<Raw> {
    let js = Js(env.raw());
    let found = (|| -> std::result::Result<_, HitSaveError> {
        analyze::file_nodes(Core::shared()?, Path::new(&anchor), &texts)
    })();
    let (nodes, watched) = found.map_err(|err| to_napi(js, err))?;
    let mut items = Vec::new();
    for node in &nodes {
        items.push(js.array_of(&[
            js.str(&node.kind)?,
            js.str(&node.name)?,
            js.str(&node.content)?,
            js.array_of(&[])?,
        ])?);
    }
    let watch = keep_watch(watched);
    Ok(Raw(js.array_of(&[js.array_of(&items)?, js.number(watch as f64)?])?))
}

/// The names a function's source reads without declaring them (see
/// `analyze::free_names`); `null` when it does not parse alone.
#[napi]
pub fn free_names(source: String) -> Option<Vec<String>> {
    analyze::free_names(&source)
}

/// For a function the live checks read (its source, V8's 0-based line and
/// column of it, the names of the scopes it captures, innermost first): per
/// scope, `[name, text, name, text, …]` of the function declarations of it
/// that nothing reassigns (see `analyze::declared_functions`); `null` when
/// the function or its scopes cannot be placed in a file this process read.
#[napi]
pub fn declared_functions(
    source: String,
    line: u32,
    column: u32,
    scopes: Vec<Vec<String>>,
) -> Option<Vec<Vec<String>>> {
    let found = analyze::declared_functions(&source, line, column, &scopes)?;
    Some(found.into_iter().map(|scope| scope.into_iter().flat_map(|(name, text)| [name, text]).collect()).collect())
}

/// The `code2` fingerprint of a function value that is not memoized: its
/// own normalised source (its dependencies are not followed: see docs/node.md).
#[napi]
pub fn source_fingerprint(env: Env, source: String, name: String) -> Result<String> {
    let js = Js(env.raw());
    let core = core(js)?;
    let content = analyze::normalized_function(core, &source).map_err(|err| to_napi(js, err))?;
    let node = Node { kind: NodeKind::Function, name: format!("<argument>:{name}"), content, deps: Vec::new() };
    Ok(core.fingerprints(&[node]).map_err(|err| to_napi(js, err))?[0].to_string())
}

// -- the store and registered functions ------------------------------------

static CONFIG: OnceLock<std::result::Result<Config, String>> = OnceLock::new();
static STORES: Mutex<Option<HashMap<PathBuf, Arc<Cache>>>> = Mutex::new(None);

fn process_config() -> &'static std::result::Result<Config, String> {
    CONFIG.get_or_init(|| {
        Config::load().map_err(|err| match err {
            HitSaveError::ConfigInvalid(message) => message,
            other => other.to_string(),
        })
    })
}

fn config(js: Js) -> Result<&'static Config> {
    match process_config() {
        Ok(config) => Ok(config),
        Err(message) => Err(to_napi(js, HitSaveError::ConfigInvalid(message.clone()))),
    }
}

/// The store for a directory, opened once per process.
fn store_for(dir: &std::path::Path) -> std::result::Result<Arc<Cache>, HitSaveError> {
    let mut stores = STORES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let stores = stores.get_or_insert_with(HashMap::new);
    if let Some(store) = stores.get(dir) {
        return Ok(store.clone());
    }
    let mut config = Config::load()?;
    config.cache_dir = dir.to_path_buf();
    let store = Arc::new(Cache::open(&config)?);
    stores.insert(dir.to_path_buf(), store.clone());
    Ok(store)
}

/// A memoized function as the native side knows it.
/// A registered function: the host's [`hitsave_host::function::Function`]
/// (identity, keys remembered by argument stream, what storing did) and the
/// store directory it uses.
struct Function {
    host: hitsave_host::function::Function,
    cache_dir: PathBuf,
}

impl Function {
    fn store(&self) -> std::result::Result<Arc<Cache>, HitSaveError> {
        store_for(&self.cache_dir)
    }

    fn get(&self, key: &Digest) -> std::result::Result<Option<Hit>, HitSaveError> {
        self.host.get(&*self.store()?, key)
    }

    fn key_of(&self, stream: &[u8]) -> std::result::Result<(Digest, Digest), HitSaveError> {
        self.host.key_of(Core::shared()?, stream)
    }
}

static FUNCTIONS: RwLock<Vec<Arc<Function>>> = RwLock::new(Vec::new());

fn function(handle: u32) -> Result<Arc<Function>> {
    let functions = FUNCTIONS.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    functions.get(handle as usize).cloned().ok_or_else(|| Error::from_reason("hitsave: unknown function handle"))
}

fn optional_string(js: Js, object: V, name: &str) -> Result<Option<String>> {
    let value = js.get_named(object, name)?;
    match js.typeof_(value)? {
        sys::ValueType::napi_undefined | sys::ValueType::napi_null => Ok(None),
        _ => Ok(Some(js.string(value)?)),
    }
}

/// Registers a memoized function: `{ functionName, fingerprint | name + version,
/// graph?: { root, nodes }, cacheDir? }`. Returns `[handle, mode, store path]`.
#[napi]
pub fn register_function(env: Env, spec: Raw) -> Result<Raw> {
    let js = Js(env.raw());
    let spec = spec.0;
    let config = config(js)?;
    let identity = identity_of(
        js,
        optional_string(js, spec, "fingerprint")?,
        optional_string(js, spec, "name")?,
        optional_string(js, spec, "version")?,
    )?;
    let graph = {
        let graph = js.get_named(spec, "graph")?;
        if js.typeof_(graph)? == sys::ValueType::napi_object {
            let root = js.string(js.get_named(graph, "root")?)?;
            let id = js.get_named(graph, "nodesId")?;
            if js.typeof_(id)? == sys::ValueType::napi_number {
                // The analysis's own nodes, as it kept them.
                let kept = kept_nodes(js, js.f64_value(id)? as u32)?;
                Some(Graph::from_nodes(&root, &kept.1))
            } else {
                let nodes = nodes_of_js(js, js.get_named(graph, "nodes")?)?;
                Some(Graph::from_nodes(&root, &nodes))
            }
        } else {
            None
        }
    };
    let cache_dir = optional_string(js, spec, "cacheDir")?.map(PathBuf::from).unwrap_or(config.cache_dir.clone());
    let cloud = {
        let value = js.get_named(spec, "cloud")?;
        js.typeof_(value)? != sys::ValueType::napi_boolean || js.bool_value(value)?
    };
    let function_name = js.string(js.get_named(spec, "functionName")?)?;
    let function = Function {
        host: hitsave_host::function::Function::new(identity, function_name, "node", graph, cloud),
        cache_dir: cache_dir.clone(),
    };
    let mut functions = FUNCTIONS.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    // memo() run again for the same function (inside a request handler, a
    // loop) shares the registration instead of growing the table forever.
    let same = |other: &Arc<Function>| {
        other.host.function_id() == function.host.function_id()
            && other.host.function_name() == function.host.function_name()
            && other.cache_dir == function.cache_dir
            && other.host.cloud() == function.host.cloud()
    };
    let handle = match functions.iter().position(same) {
        Some(existing) => existing as f64,
        None => {
            functions.push(Arc::new(function));
            (functions.len() - 1) as f64
        }
    };
    Ok(Raw(js.array_of(&[
        js.number(handle)?,
        js.str(config.mode.as_str())?,
        js.str(&cache_dir.display().to_string())?,
        js.number(config.lock_wait.as_secs_f64() * 1000.0)?,
    ])?))
}

/// The module files this process parsed for analyses, rather than reading
/// a summary kept in the store (`js-analysis/src/kept.rs`), in order (what
/// the tests and the benchmark count).
#[napi]
pub fn summarized_files() -> Vec<String> {
    analyze::summarized_files().iter().map(|path| path.display().to_string()).collect()
}

/// How many distinct functions this process registered (for tests: memo()
/// run again for one function shares its registration).
#[napi]
pub fn registered_functions() -> u32 {
    FUNCTIONS.read().unwrap_or_else(|poisoned| poisoned.into_inner()).len() as u32
}

/// Status of a lookup, as JavaScript sees it.
const MISS: f64 = 0.0;
const HIT_VALUE: f64 = 1.0;
const HIT_DATA: f64 = 2.0;
const STORE_ERROR: f64 = 3.0;

/// `[status, payload]`: a miss, a decoded portable value, `[codec, language, Buffer]`
/// for another codec, or the store's error (to warn about and compute).
fn hit_to_js(js: Js, found: std::result::Result<Option<Hit>, HitSaveError>) -> Result<(f64, V)> {
    Ok(match found {
        Ok(None) => (MISS, js.null()?),
        Ok(Some(hit)) if hit.codec == hitsave_host::portable::CODEC => match hit.data {
            ResultData::Mapped(map) => (HIT_VALUE, portable::decode_mapped(js, context::get()?, map)?),
            ResultData::Inline(bytes) => (HIT_VALUE, portable::decode_value(js, context::get()?, &bytes)?),
        },
        Ok(Some(hit)) => {
            (HIT_DATA, js.array_of(&[js.str(&hit.codec)?, js.str(&hit.language)?, js.buffer(hit.data.bytes())?])?)
        }
        Err(error) => {
            let error = to_napi(js, error);
            (STORE_ERROR, error_value(js, error)?)
        }
    })
}

/// The JavaScript value of an error made by [`to_napi`].
fn error_value(js: Js, error: Error) -> Result<V> {
    let message = error.reason.clone();
    let env = Env::from_raw(js.0);
    match env.create_error(error) {
        Ok(object) => Ok(napi::JsValue::raw(&object)),
        Err(_) => js.str(&message),
    }
}

/// `[key, argument digest, status, payload]`: what a call's lookup found.
fn call_lookup_to_js(
    js: Js,
    key: &Digest,
    digest: &Digest,
    found: std::result::Result<Option<Hit>, HitSaveError>,
) -> Result<Raw> {
    let (status, payload) = hit_to_js(js, found)?;
    Ok(Raw(js.array_of(&[js.str(&key.to_string())?, js.str(&digest.to_string())?, js.number(status)?, payload])?))
}

/// The synchronous call path's first step: `[key, argument digest, status, payload]`.
#[napi]
pub fn lookup_call(env: Env, handle: u32, args: Raw) -> Result<Raw> {
    let js = Js(env.raw());
    let function = function(handle)?;
    let (stream, _) = walk_value(js, args.0, Hashing::Inline)?;
    let (key, digest) = function.key_of(&stream).map_err(|err| to_napi(js, err))?;
    call_lookup_to_js(js, &key, &digest, function.get(&key))
}

/// The key and argument digest of arguments, without reading the store: `[key, digest]`.
#[napi]
pub fn arguments_key(env: Env, handle: u32, args: Raw) -> Result<Raw> {
    let js = Js(env.raw());
    let function = function(handle)?;
    let (stream, _) = walk_value(js, args.0, Hashing::Inline)?;
    let (key, digest) = function.key_of(&stream).map_err(|err| to_napi(js, err))?;
    Ok(Raw(js.array_of(&[js.str(&key.to_string())?, js.str(&digest.to_string())?])?))
}

/// Reads one key: `[status, payload]`.
#[napi]
pub fn lookup_key(env: Env, handle: u32, key: String) -> Result<Raw> {
    let js = Js(env.raw());
    let function = function(handle)?;
    let key = parse_digest(js, &key)?;
    let (status, payload) = hit_to_js(js, function.get(&key))?;
    Ok(Raw(js.array_of(&[js.number(status)?, payload])?))
}

/// The asynchronous lookup: big buffers hashed, key derived and store read on a worker.
pub struct Lookup {
    function: Arc<Function>,
    stream: Vec<u8>,
    deferred: Vec<Deferred>,
}

type LookupOutput = (Digest, Digest, std::result::Result<Option<Hit>, HitSaveError>);

impl Task for Lookup {
    type Output = std::result::Result<LookupOutput, HitSaveError>;
    type JsValue = Raw;

    fn compute(&mut self) -> Result<Self::Output> {
        // SAFETY: every holder stays referenced until `finally` runs on the JS thread.
        if let Err(error) = unsafe { Deferred::fill(&self.deferred, &mut self.stream) } {
            return Ok(Err(error));
        }
        Ok(self.function.key_of(&self.stream).map(|(key, digest)| (key, digest, self.function.get(&key))))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<Raw> {
        let js = Js(env.raw());
        let (key, digest, found) = output.map_err(|err| to_napi(js, err))?;
        call_lookup_to_js(js, &key, &digest, found)
    }

    fn finally(self, env: Env) -> Result<()> {
        Deferred::release(Js(env.raw()), &self.deferred);
        Ok(())
    }
}

/// How long an async call's argument walk holds the JavaScript thread at a
/// time: a longer walk pauses and goes on after the event loop has turned.
const WALK_SLICE: std::time::Duration = std::time::Duration::from_millis(8);

/// Paused argument walks of one JavaScript thread, by the id JavaScript holds
/// (and the last id given).
type PausedWalks = (u32, HashMap<u32, (Arc<Function>, walk::Paused)>);

thread_local! {
    static PAUSED: std::cell::RefCell<PausedWalks> = std::cell::RefCell::new((0, HashMap::new()));
}

/// What `lookupCallAsync` and `lookupCallResume` give JavaScript.
type AsyncLookup = Either3<Raw, AsyncTask<Lookup>, u32>;

/// `lookupCall` for async functions: resolves to `[key, argument digest, status, payload]`.
///
/// The arguments are read on the JavaScript thread (they are JavaScript
/// values) in slices of [`WALK_SLICE`]: an argument that takes longer to
/// read gives back a number, the id of the paused walk, and JavaScript
/// calls `lookupCallResume(id)` after a turn of the event loop, until the
/// walk is done.
///
/// A repeated hit is answered at once, as that array itself rather than a
/// promise: when every argument byte is at hand (no large buffer or file to
/// hash), the key was derived before in this process ([`KeyMemo`]) and the
/// result is in the store's memory of verified hits ([`hitsave_host::Store::get_recent`]),
/// nothing is left that could block. Everything else (hashing, the core
/// component, SQLite, files, the network) runs on a libuv worker.
#[napi(ts_return_type = "[string, string, number, unknown] | Promise<[string, string, number, unknown]> | number")]
pub fn lookup_call_async(env: Env, handle: u32, args: Raw) -> Result<AsyncLookup> {
    let js = Js(env.raw());
    let function = function(handle)?;
    let mut walker = Walker::new(js, context::get()?, Hashing::Defer);
    let done = walker.walk_until(args.0, std::time::Instant::now() + WALK_SLICE);
    walked(function, walker, done)
}

/// Goes on with a paused argument walk of `lookupCallAsync` (same answers).
#[napi(ts_return_type = "[string, string, number, unknown] | Promise<[string, string, number, unknown]> | number")]
pub fn lookup_call_resume(env: Env, id: u32) -> Result<AsyncLookup> {
    let js = Js(env.raw());
    let ctx = context::get()?;
    let Some((function, paused)) = PAUSED.with(|paused| paused.borrow_mut().1.remove(&id)) else {
        return Err(Error::from_reason(format!("hitsave: no paused argument walk {id}")));
    };
    let mut walker = Walker::resume(js, ctx, paused)?;
    let done = walker.run(Some(std::time::Instant::now() + WALK_SLICE));
    walked(function, walker, done)
}

/// After a slice of an argument walk: paused (its id), or done (the lookup).
fn walked(function: Arc<Function>, mut walker: Walker, done: Result<bool>) -> Result<AsyncLookup> {
    let js = walker.js;
    match done {
        Err(error) => {
            walker.abandon();
            Err(error)
        }
        Ok(false) => {
            let paused = walker.pause()?;
            Ok(Either3::C(PAUSED.with(|cell| {
                let mut cell = cell.borrow_mut();
                let (next, walks) = &mut *cell;
                *next = next.wrapping_add(1);
                walks.insert(*next, (function, paused));
                *next
            })))
        }
        Ok(true) => {
            let (stream, deferred) =
                (std::mem::take(&mut walker.out).into_bytes(), std::mem::take(&mut walker.deferred));
            if deferred.is_empty()
                && let Some((key, digest)) = function.host.known_key(&stream)
                && let Some(hit) = function.store().ok().and_then(|store| store.get_recent(&key))
            {
                return Ok(Either3::A(call_lookup_to_js(js, &key, &digest, Ok(Some(hit)))?));
            }
            Ok(Either3::B(AsyncTask::new(Lookup { function, stream, deferred })))
        }
    }
}

/// Compute locks this process holds, by the id JavaScript keeps (`lockCompute`).
static LOCKS: std::sync::Mutex<(u32, Vec<(u32, hitsave_host::store::ComputeLock)>)> =
    std::sync::Mutex::new((0, Vec::new()));

/// Takes the key's compute lock (waiting while another process or thread
/// computes it) and, holding it, looks the key up again in the local store
/// ([`hitsave_host::Store::lock_and_reread`]).
fn lock_and_look(function: &Function, key: &Digest) -> (Option<u32>, std::result::Result<Option<Hit>, HitSaveError>) {
    let store = match function.store() {
        Ok(store) => store,
        Err(error) => return (None, Err(error)),
    };
    let (lock, found) = store.lock_and_reread(key);
    (lock.map(keep_lock), found)
}

/// Keeps a held lock in this process's table; JavaScript gets its id.
fn keep_lock(lock: hitsave_host::store::ComputeLock) -> u32 {
    let mut locks = LOCKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    locks.0 = locks.0.wrapping_add(1);
    let id = locks.0;
    locks.1.push((id, lock));
    id
}

/// `[lock id or null, status, payload]` of a lock attempt and its re-read.
fn lock_to_js(js: Js, id: Option<u32>, found: std::result::Result<Option<Hit>, HitSaveError>) -> Result<[V; 3]> {
    let id = match id {
        Some(id) => js.number(id as f64)?,
        None => js.null()?,
    };
    let (status, payload) = hit_to_js(js, found)?;
    Ok([id, js.number(status)?, payload])
}

/// Before computing after a miss: `[lock id or null, status, payload]`. Waits
/// (up to `lock_wait`) while another process or thread computes the key, then
/// reads the local store again: a hit means someone else stored it meanwhile.
/// Release the lock with `releaseLock` once the result is stored.
#[napi]
pub fn lock_compute(env: Env, handle: u32, key: String) -> Result<Raw> {
    let js = Js(env.raw());
    let function = function(handle)?;
    let key = parse_digest(js, &key)?;
    let (id, found) = lock_and_look(&function, &key);
    Ok(Raw(js.array_of(&lock_to_js(js, id, found)?)?))
}

/// One attempt at the compute lock on a worker, never waiting there: async
/// functions poll it with timers, so waiting for another process holds
/// neither the JS thread nor a libuv worker.
pub struct TryLockCompute {
    function: Arc<Function>,
    key: Digest,
}

/// What a lock attempt found, as JavaScript sees it.
const LOCK_HELD: f64 = 0.0;
const LOCK_BUSY: f64 = 1.0;
const LOCK_NONE: f64 = 2.0;

impl Task for TryLockCompute {
    type Output = (f64, Option<u32>, std::result::Result<Option<Hit>, HitSaveError>);
    type JsValue = Raw;

    fn compute(&mut self) -> Result<Self::Output> {
        let store = match self.function.store() {
            Ok(store) => store,
            Err(error) => return Ok((LOCK_NONE, None, Err(error))),
        };
        Ok(match store.try_lock_compute(&self.key) {
            hitsave_host::store::TryLock::Acquired(lock) => {
                (LOCK_HELD, Some(keep_lock(lock)), store.get_local(&self.key))
            }
            hitsave_host::store::TryLock::Busy => (LOCK_BUSY, None, Ok(None)),
            hitsave_host::store::TryLock::Unavailable => (LOCK_NONE, None, Ok(None)),
        })
    }

    fn resolve(&mut self, env: Env, (state, id, found): Self::Output) -> Result<Raw> {
        let js = Js(env.raw());
        let [id, status, payload] = lock_to_js(js, id, found)?;
        Ok(Raw(js.array_of(&[js.number(state)?, id, status, payload])?))
    }
}

/// For async functions: `[state, lock id or null, status, payload]` where
/// state is 0 (held: the local store was read again), 1 (busy: try again
/// later, up to `lockWait`) or 2 (no lock: compute without one).
#[napi(ts_return_type = "Promise<[number, number | null, number, unknown]>")]
pub fn try_lock_compute_async(env: Env, handle: u32, key: String) -> Result<AsyncTask<TryLockCompute>> {
    let js = Js(env.raw());
    let function = function(handle)?;
    let key = parse_digest(js, &key)?;
    Ok(AsyncTask::new(TryLockCompute { function, key }))
}

/// The pause in ms before the next attempt at a busy compute lock, or null
/// once `waitedMs` reached `lockWaitMs` (compute without the lock): the
/// host's schedule (`hitsave_host::function::lock_pause`).
#[napi]
pub fn lock_pause(attempt: u32, waited_ms: f64, lock_wait_ms: f64) -> Option<f64> {
    let millis = |value: f64| std::time::Duration::from_secs_f64(value.max(0.0) / 1000.0);
    hitsave_host::function::lock_pause(attempt, millis(waited_ms), millis(lock_wait_ms))
        .map(|pause| pause.as_secs_f64() * 1000.0)
}

/// Throws the `foreign_codec` error for a stored result only `language` reads.
#[napi]
pub fn throw_foreign_codec(env: Env, function_name: String, language: String, codec: String) -> Result<()> {
    let js = Js(env.raw());
    Err(to_napi(js, hitsave_host::function::foreign_codec(&function_name, &language, &codec)))
}

/// Lets the next caller of a locked key in (an unknown id is ignored).
#[napi]
pub fn release_lock(id: u32) {
    let released = {
        let mut locks = LOCKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.1.iter().position(|(held, _)| *held == id).map(|at| locks.1.swap_remove(at))
    };
    drop(released);
}

/// A result to store, its bytes kept alive by references to the Buffers
/// and TypedArrays holding its parts.
pub struct Put {
    function: Arc<Function>,
    key: Digest,
    arguments: Digest,
    codec: String,
    micros: u64,
    /// The call changed its arguments (`hitsave_host::function::Computed`).
    changed_arguments: bool,
    /// Where each part lies.
    spans: Vec<Span>,
    holders: Vec<usize>,
}

/// `(pointer, length in bytes)` of a TypedArray's view (a Buffer is one).
fn view_bytes(js: Js, value: V) -> Result<(*const u8, usize)> {
    if !js.is(value, sys::napi_is_typedarray)? {
        return Err(napi::Error::new(napi::Status::InvalidArg, "a result part must be a Buffer or a TypedArray"));
    }
    let (kind, len, address) = js.typedarray_info(value)?;
    let size = walk::dtype_of(kind).and_then(hitsave_core::stream::dtype_size).unwrap_or(1) as usize;
    Ok((address, len * size))
}

impl Put {
    /// `data`: a Buffer, or an array of parts (`encode_portable`).
    #[allow(clippy::too_many_arguments)]
    fn new(
        js: Js,
        handle: u32,
        key: &str,
        arguments: &str,
        codec: String,
        data: V,
        micros: f64,
        changed_arguments: bool,
    ) -> Result<Self> {
        let function = function(handle)?;
        let parts = if js.is_array(data)? {
            (0..js.array_len(data)?).map(|index| js.element(data, index)).collect::<Result<Vec<_>>>()?
        } else {
            vec![data]
        };
        let mut spans = Vec::with_capacity(parts.len());
        for &part in &parts {
            let (address, len) = view_bytes(js, part)?;
            spans.push((address as usize, len));
        }
        let mut put = Self {
            function,
            key: parse_digest(js, key)?,
            arguments: parse_digest(js, arguments)?,
            codec,
            micros: micros.max(0.0) as u64,
            changed_arguments,
            spans,
            holders: Vec::with_capacity(parts.len()),
        };
        for part in parts {
            match js.reference(part) {
                Ok(holder) => put.holders.push(holder as usize),
                Err(error) => {
                    put.release(js);
                    return Err(error);
                }
            }
        }
        Ok(put)
    }

    /// Lets the parts go (on the JS thread, once the store is done with them).
    fn release(&self, js: Js) {
        for &holder in &self.holders {
            js.drop_reference(holder as sys::napi_ref);
        }
    }

    /// What the host's `finish` did: a store that cannot be opened is
    /// warned about like one that cannot be written.
    fn run(&self) -> Finish {
        let (store, core) = match (self.function.store(), Core::shared()) {
            (Ok(store), Ok(core)) => (store, core),
            (Err(error), _) | (_, Err(error)) => {
                hitsave_host::warn::error(&error);
                return Finish { outcome: None, warning: None };
            }
        };
        // SAFETY: `holders` keep the parts alive until `finally` (or the end of the sync call).
        let parts = unsafe { span_slices(&self.spans) };
        let computed = Computed {
            key: self.key,
            arguments: self.arguments,
            codec: &self.codec,
            data: hitsave_host::Payload::Parts(&parts),
            compute_micros: self.micros,
            changed_arguments: self.changed_arguments,
        };
        self.function.host.finish(&store, core, computed)
    }
}

/// `[outcome, warning]`: `stored`, `already_present`, `skipped` (read-only),
/// `declined` (the policy) or `failed` (warned already); and the "not
/// stored" warning to emit, or null.
fn finish_to_js(js: Js, finish: Finish) -> Result<Raw> {
    let outcome = finish.outcome_name();
    let warning = match finish.warning {
        Some(text) => js.str(&text)?,
        None => js.null()?,
    };
    Ok(Raw(js.array_of(&[js.str(outcome)?, warning])?))
}

impl Task for Put {
    type Output = Finish;
    type JsValue = Raw;

    fn compute(&mut self) -> Result<Self::Output> {
        Ok(self.run())
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<Raw> {
        finish_to_js(Js(env.raw()), output)
    }

    fn finally(self, env: Env) -> Result<()> {
        self.release(Js(env.raw()));
        Ok(())
    }
}

/// Stores a result (the host's `finish`): `[outcome, warning]`, never throws
/// for the store (a store error is a warning: the caller has its value).
#[napi]
#[allow(clippy::too_many_arguments)]
pub fn put(
    env: Env,
    handle: u32,
    key: String,
    arguments: String,
    codec: String,
    data: Raw,
    compute_micros: f64,
    changed_arguments: Option<bool>,
) -> Result<Raw> {
    let js = Js(env.raw());
    let changed = changed_arguments.unwrap_or(false);
    let put = Put::new(js, handle, &key, &arguments, codec, data.0, compute_micros, changed)?;
    let finish = put.run();
    put.release(js);
    finish_to_js(js, finish)
}

/// `put` on a worker thread.
#[napi(ts_return_type = "Promise<[string, string | null]>")]
#[allow(clippy::too_many_arguments)]
pub fn put_async(
    env: Env,
    handle: u32,
    key: String,
    arguments: String,
    codec: String,
    data: Raw,
    compute_micros: f64,
    changed_arguments: Option<bool>,
) -> Result<AsyncTask<Put>> {
    let js = Js(env.raw());
    let changed = changed_arguments.unwrap_or(false);
    Ok(AsyncTask::new(Put::new(js, handle, &key, &arguments, codec, data.0, compute_micros, changed)?))
}

/// Removes one function's results; returns how many.
#[napi]
pub fn clear(env: Env, handle: u32) -> Result<f64> {
    let js = Js(env.raw());
    let function = function(handle)?;
    let store = function.store().map_err(|err| to_napi(js, err))?;
    Ok(store.clear(Some(function.host.function_name())).map_err(|err| to_napi(js, err))? as f64)
}

/// Why a call misses (`hitsave_host::function::Function::why`): the sentence `f.why(x)` returns.
#[napi]
pub fn why_miss(env: Env, handle: u32, key: String, arguments: String) -> Result<String> {
    let js = Js(env.raw());
    let function = function(handle)?;
    let core = core(js)?;
    let store = function.store().map_err(|err| to_napi(js, err))?;
    if let Some(graph) = function.host.graph() {
        store.record_function(core, function.host.function_name(), "node", graph).map_err(|err| to_napi(js, err))?;
    }
    let parse = |text: &str| Digest::parse(text).map_err(|err| to_napi(js, err.into()));
    let (key, arguments) = (parse(&key)?, parse(&arguments)?);
    let why = function.host.why(&store, core, &key, &arguments).map_err(|err| to_napi(js, err))?;
    Ok(why.to_string())
}

/// Bulk download of a function's cloud results, on a worker.
pub struct Download {
    function: Arc<Function>,
}

impl Task for Download {
    type Output = std::result::Result<u64, HitSaveError>;
    type JsValue = f64;

    fn compute(&mut self) -> Result<Self::Output> {
        Ok((|| {
            let store = self.function.store()?;
            let cloud = store.cloud().cloned().ok_or_else(|| {
                HitSaveError::CloudUnavailable(
                    "download() needs the cloud: set HITSAVE_CLOUD_URL and HITSAVE_API_KEY (or `hitsave login`)".into(),
                )
            })?;
            cloud.download_function(&store, self.function.host.function_name(), |_, _| {})
        })())
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<f64> {
        output.map(|count| count as f64).map_err(|err| to_napi(Js(env.raw()), err))
    }
}

/// Fetches a function's cloud results the local store lacks; resolves to how many.
#[napi(ts_return_type = "Promise<number>")]
pub fn download(handle: u32) -> Result<AsyncTask<Download>> {
    Ok(AsyncTask::new(Download { function: function(handle)? }))
}

/// Waits (up to `upload_wait`) for every open store's queued uploads; returns how many are left.
#[napi]
pub fn drain_uploads() -> f64 {
    let stores: Vec<Arc<Cache>> = {
        let stores = STORES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        stores.as_ref().map(|stores| stores.values().cloned().collect()).unwrap_or_default()
    };
    stores.iter().map(|store| store.drain_uploads().unwrap_or(0) as f64).sum()
}

/// Writes buffered hit counts of every open store now.
#[napi]
pub fn flush(env: Env) -> Result<()> {
    let js = Js(env.raw());
    let stores: Vec<Arc<Cache>> = {
        let stores = STORES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        stores.as_ref().map(|stores| stores.values().cloned().collect()).unwrap_or_default()
    };
    for store in stores {
        store.flush_hits().map_err(|err| to_napi(js, err))?;
    }
    Ok(())
}

/// Prints a cache warning once per code per process (the value is still returned).
#[napi]
pub fn warn_once(code: String, message: String) {
    hitsave_host::warn::once(&code, &message);
}

/// Runs the `hitsave` CLI with `argv` (program name first); returns the exit code.
#[napi]
pub fn cli_main(argv: Vec<String>) -> i32 {
    if argv.get(1).is_some_and(|command| command == "serve") {
        // `hitsave serve` stops on SIGINT or SIGTERM through the server's own
        // handlers. Node's handlers for them (reset the terminal, then raise
        // the signal again) would be chained to by those and raise it back
        // to them for ever, a busy loop that never exits: this process is
        // the server now (bin/hitsave.js), so they go.
        // SAFETY: restoring the default disposition of two signals.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
        }
    }
    hitsave_cli::run(argv)
}

/// Every stable error code, in the order of `docs/errors.md`.
#[napi]
pub fn error_codes() -> Vec<&'static str> {
    HitSaveError::all_codes()
}

/// The BLAKE3 of the embedded core component (the same in every binding).
#[napi]
pub fn component_digest() -> String {
    hitsave_host::runtime::component_digest()
}

/// The configured mode and store directory: `[mode, cacheDir]`.
#[napi]
pub fn configuration(env: Env) -> Result<Vec<String>> {
    let config = config(Js(env.raw()))?;
    Ok(vec![config.mode.as_str().to_owned(), config.cache_dir.display().to_string()])
}

/// `[parameter names (null when destructured), refers to this]` of a function's source.
#[napi]
pub fn function_info(env: Env, source: String) -> Result<Raw> {
    let js = Js(env.raw());
    let info = analyze::function_info(&source);
    let names: Vec<V> = info
        .params
        .iter()
        .map(|name| match name {
            Some(name) => js.str(name),
            None => js.null(),
        })
        .collect::<Result<_>>()?;
    Ok(Raw(js.array_of(&[js.array_of(&names)?, js.boolean(info.uses_this)?, js.boolean(info.counts_arguments)?])?))
}

/// `code2` fingerprints of `[kind, name, content digest, dep indices]` nodes (for the shared vectors).
#[napi]
pub fn fingerprints(env: Env, nodes: Raw) -> Result<Vec<String>> {
    let js = Js(env.raw());
    let nodes = nodes_of_js(js, nodes.0)?;
    Ok(core(js)?.fingerprints(&nodes).map_err(|err| to_napi(js, err))?.iter().map(Digest::to_string).collect())
}
