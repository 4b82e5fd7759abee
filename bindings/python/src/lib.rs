//! `hitsave._native`: the Python SDK's native module.
//!
//! It translates and nothing more: Python values into the value stream
//! ([`walk`]), calls into `hitsave-host` (which runs the core component), and
//! host errors into Python exceptions with stable `.code`s. `@memo` itself is
//! in `python/hitsave/_memo.py`: signature binding and sync/async plumbing are
//! intrinsically Python.

mod bytecode;
mod portable;
mod walk;

use std::collections::HashMap;

use hitsave_core::Digest;
use hitsave_core::graph::{Node, NodeKind};
use hitsave_core::keys::FunctionIdentity;
use hitsave_core::stream::StreamWriter;
use hitsave_host::payload::{Part, Span, span_of, span_slices};
use hitsave_host::store::{Graph, NewEval, ResultData};
use hitsave_host::{Config, Core, HitSaveError};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyTuple, PyType};

/// Python base classes per error code, besides `HitSaveError`.
fn builtin_base(code: &str) -> &'static str {
    match code {
        "unhashable_value" => "TypeError",
        "io" | "store_io" => "OSError",
        "malformed_stream" | "invalid_utf8" | "duplicate_key" | "invalid_array" | "invalid_digest"
        | "invalid_graph" | "invalid_identity" | "too_deep" | "config_invalid" => "ValueError",
        "not_found" => "LookupError",
        _ => "RuntimeError",
    }
}

/// `unhashable_value` -> `UnhashableValueError`.
pub fn class_name(code: &str) -> String {
    let mut name: String = code
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    name = name.replace("Utf8", "UTF8").replace("Io", "IO");
    name + "Error"
}

static ERROR_BASE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static ERROR_CLASSES: PyOnceLock<HashMap<&'static str, Py<PyType>>> = PyOnceLock::new();

/// `hitsave.HitSaveError`: the base of every HitSave exception.
fn error_base(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    let base = ERROR_BASE.get_or_try_init(py, || {
        let namespace = PyDict::new(py);
        namespace.set_item("__module__", "hitsave")?;
        namespace.set_item(
            "__doc__",
            "Base of every HitSave error. `.code` is a stable snake_case code (docs/errors.md); \
             `.path` is where in the arguments the error arose, when it is about one place.",
        )?;
        namespace.set_item("code", "hitsave_error")?;
        namespace.set_item("path", py.None())?;
        let bases = PyTuple::new(py, [py.get_type::<pyo3::exceptions::PyException>()])?;
        let class = py.import("builtins")?.getattr("type")?.call1(("HitSaveError", bases, namespace))?;
        Ok::<_, PyErr>(class.cast_into::<PyType>()?.unbind())
    })?;
    Ok(base.bind(py).clone())
}

fn error_classes(py: Python<'_>) -> PyResult<&HashMap<&'static str, Py<PyType>>> {
    ERROR_CLASSES.get_or_try_init(py, || {
        let builtins = py.import("builtins")?;
        let type_ = builtins.getattr("type")?;
        let base = error_base(py)?;
        let mut classes = HashMap::new();
        for code in HitSaveError::all_codes() {
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "hitsave")?;
            namespace.set_item("__doc__", format!("HitSave error `{code}` (see docs/errors.md)."))?;
            let bases = PyTuple::new(py, [base.clone().into_any(), builtins.getattr(builtin_base(code))?])?;
            let class = type_.call1((class_name(code), bases, namespace))?;
            classes.insert(code, class.cast_into::<PyType>()?.unbind());
        }
        Ok(classes)
    })
}

/// A host error as a Python exception of its code's class, with `.code` and `.path`.
pub fn to_py_err(error: HitSaveError) -> PyErr {
    Python::attach(|py| {
        let code = error.code();
        let path = error.path().map(str::to_owned);
        let made = (|| -> PyResult<PyErr> {
            let class = error_classes(py)?.get(code).map(|class| class.bind(py).clone());
            let class = match class {
                Some(class) => class,
                None => error_base(py)?,
            };
            let instance = class.call1((error.to_string(),))?;
            instance.setattr("code", code)?;
            instance.setattr("path", path.clone())?;
            Ok(PyErr::from_value(instance))
        })();
        made.unwrap_or_else(|err| err)
    })
}

fn core() -> PyResult<&'static Core> {
    Core::shared().map_err(to_py_err)
}

fn stream_of(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let mut out = StreamWriter::new();
    walk::walk(value, &mut out, 0)?;
    Ok(out.into_bytes())
}

/// The `val2` digest of a Python value.
#[pyfunction]
fn value_digest(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<String> {
    let stream = stream_of(value)?;
    let core = core()?;
    let digest = py.detach(move || core.value_digest(&stream)).map_err(to_py_err)?;
    Ok(digest.to_string())
}

/// Canonical bytes of a Python value (for tests and debugging).
#[pyfunction]
fn canonical_bytes<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let stream = stream_of(value)?;
    let (canonical, _) = core()?.encode(&stream).map_err(to_py_err)?;
    Ok(PyBytes::new(py, &canonical))
}

/// The value stream of a Python value (for tests against the vectors).
#[pyfunction]
fn value_stream<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &stream_of(value)?))
}

fn parse_digest(text: &str) -> PyResult<Digest> {
    Digest::parse(text).map_err(|err| to_py_err(err.into()))
}

/// The `key2` eval key: `fingerprint` (a `code2` digest) or `name` + `version`, and the argument digest.
#[pyfunction]
#[pyo3(signature = (arguments, *, fingerprint=None, name=None, version=None))]
fn derive_key(
    arguments: &str,
    fingerprint: Option<&str>,
    name: Option<String>,
    version: Option<String>,
) -> PyResult<String> {
    let identity = identity_of(fingerprint, name, version)?;
    let key = core()?.derive_key(&identity, &parse_digest(arguments)?).map_err(to_py_err)?;
    Ok(key.to_string())
}

fn identity_of(fingerprint: Option<&str>, name: Option<String>, version: Option<String>) -> PyResult<FunctionIdentity> {
    hitsave_host::function::identity(fingerprint, name, version).map_err(to_py_err)
}

/// `(codec, language, data)` of a hit: `bytes`, or a [`Mapped`] result.
type HitTuple<'py> = (String, String, Bound<'py, PyAny>);

fn hit_tuple<'py>(py: Python<'py>, hit: hitsave_host::store::Hit) -> PyResult<HitTuple<'py>> {
    let data = match hit.data {
        ResultData::Inline(bytes) => PyBytes::new(py, &bytes).into_any(),
        ResultData::Mapped(map) => Bound::new(py, Mapped::new(map))?.into_any(),
    };
    Ok((hit.codec, hit.language, data))
}

/// The right to compute one key (`Store.lock_compute`), held until
/// `release()` (or until the object is collected, or the process ends).
#[pyclass(frozen, module = "hitsave._native")]
struct ComputeLock {
    inner: std::sync::Mutex<Option<hitsave_host::store::ComputeLock>>,
}

impl ComputeLock {
    fn new(lock: hitsave_host::store::ComputeLock) -> Self {
        Self { inner: std::sync::Mutex::new(Some(lock)) }
    }
}

#[pymethods]
impl ComputeLock {
    /// Lets the next caller of this key in.
    fn release(&self) {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    }
}

/// A large stored result's bytes, memory-mapped copy-on-write from the store
/// (a bytes-like object: the buffer protocol, writable). Pages load on first
/// touch; writes stay private to this object and never reach the store.
#[pyclass(frozen, module = "hitsave._native")]
pub struct Mapped {
    map: memmap2::MmapMut,
    // The map's address, taken once with `&mut` so the buffer can be exported
    // writable from a shared reference.
    address: usize,
}

impl Mapped {
    fn new(mut map: memmap2::MmapMut) -> Self {
        let address = map.as_mut_ptr() as usize;
        Self { map, address }
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

#[pymethods]
impl Mapped {
    fn __len__(&self) -> usize {
        self.map.len()
    }

    fn __repr__(&self) -> String {
        format!("<hitsave._native.Mapped {} bytes>", self.map.len())
    }

    /// Exports the mapping as a writable, one-dimensional byte buffer.
    ///
    /// # Safety
    ///
    /// `view` is the `Py_buffer` Python passes to `bf_getbuffer`.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: std::ffi::c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let len = pyo3::ffi::Py_ssize_t::try_from(this.map.len())
            .map_err(|_| pyo3::exceptions::PyBufferError::new_err("result too large for a buffer"))?;
        // SAFETY: the buffer points into `this.map`, which lives as long as
        // the object; PyBuffer_FillInfo takes a reference to the object for
        // the view's lifetime. The mapping is private, so writes through the
        // buffer never reach the store's file.
        let status = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(view, slf.as_ptr(), this.address as *mut std::ffi::c_void, len, 0, flags)
        };
        if status == -1 { Err(PyErr::fetch(slf.py())) } else { Ok(()) }
    }
}

/// A result to store as consecutive parts: a stream's own bytes and large
/// buffers (numpy array data, a pickle's out-of-band buffers) where they
/// lie, so the store writes them without a second copy in memory. The
/// buffers must not change until it is stored.
#[pyclass(frozen, module = "hitsave._native")]
pub struct Payload {
    parts: Vec<Part<PyUntypedBuffer>>,
}

impl Payload {
    /// Where each part lies.
    fn spans(&self) -> Vec<Span> {
        self.parts.iter().map(portable::part_bytes).map(span_of).collect()
    }
}

#[pymethods]
impl Payload {
    /// Total length in bytes.
    fn __len__(&self) -> usize {
        self.parts.iter().map(|part| portable::part_bytes(part).len()).sum()
    }

    /// The parts joined (a copy: for tests and inspection).
    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let parts: Vec<&[u8]> = self.parts.iter().map(portable::part_bytes).collect();
        PyBytes::new(py, &parts.concat())
    }
}

/// Bytes, or a [`Payload`] when a large buffer is kept where it lies.
fn payload_or_bytes<'py>(py: Python<'py>, parts: Vec<Part<PyUntypedBuffer>>) -> PyResult<Bound<'py, PyAny>> {
    match <[Part<PyUntypedBuffer>; 1]>::try_from(parts) {
        Ok([Part::Bytes(bytes)]) => Ok(PyBytes::new(py, &bytes).into_any()),
        Ok([part]) => Ok(Bound::new(py, Payload { parts: vec![part] })?.into_any()),
        Err(parts) => Ok(Bound::new(py, Payload { parts })?.into_any()),
    }
}

/// The portable encoding of a result (bytes, or a [`Payload`] when large
/// arrays are kept where they lie), or `None` when it has no exact portable
/// form.
#[pyfunction]
fn encode_portable<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let mut out = portable::ResultWriter::default();
    if !portable::encode(value, &mut out, 0)? {
        return Ok(None);
    }
    payload_or_bytes(py, out.finish()).map(Some)
}

/// Rebuilds a result stored with the portable codec, from `bytes` or a
/// [`Mapped`] result (whose large arrays come back as views of the mapping).
#[pyfunction]
fn decode_portable<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(mapped) = data.cast::<Mapped>() {
        return portable::decode_mapped(py, mapped);
    }
    let bytes = data.cast::<PyBytes>()?;
    portable::decode_value(py, bytes.as_bytes())
}

/// The start of a pickled result with out-of-band buffers (`docs/python.md`,
/// "Results"). A plain protocol-5 pickle starts with `0x80`, never `0x00`.
const PICKLE_MAGIC: &[u8; 10] = b"\x00HSPICKLE\x01";

/// Where each part of a pickle container starts: a multiple of this.
const PICKLE_ALIGN: usize = 64;

/// Packs a protocol-5 pickle and its out-of-band buffers into one result:
/// the magic, `u32` buffer count, `u64` pickle length, a `u64` length per
/// buffer (little-endian), then each buffer starting at a multiple of 64
/// bytes, then the pickle. Loaded from a memory map, the buffers (numpy
/// arrays' data) are used in place.
#[pyfunction]
fn pack_pickle<'py>(
    py: Python<'py>,
    body: &Bound<'py, PyAny>,
    buffers: Vec<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let views = buffers
        .iter()
        .map(|buffer| portable::contiguous_buffer(buffer).map(Part::View))
        .collect::<PyResult<Vec<_>>>()?;
    let aligned = |len: usize| len.next_multiple_of(PICKLE_ALIGN);
    let count = u32::try_from(views.len()).map_err(|_| pyo3::exceptions::PyValueError::new_err("too many buffers"))?;
    let body = Part::View(portable::contiguous_buffer(body)?);
    let mut head = Vec::with_capacity(PICKLE_MAGIC.len() + 12 + 8 * views.len() + PICKLE_ALIGN);
    head.extend_from_slice(PICKLE_MAGIC);
    head.extend_from_slice(&count.to_le_bytes());
    head.extend_from_slice(&(portable::part_bytes(&body).len() as u64).to_le_bytes());
    for view in &views {
        head.extend_from_slice(&(portable::part_bytes(view).len() as u64).to_le_bytes());
    }
    head.resize(aligned(head.len()), 0);
    // The head, then each buffer where it lies followed by the zeros up to
    // the next multiple of 64, then the pickle.
    let mut parts = vec![Part::Bytes(head)];
    for view in views {
        let len = portable::part_bytes(&view).len();
        parts.push(view);
        if aligned(len) > len {
            parts.push(Part::Bytes(vec![0; aligned(len) - len]));
        }
    }
    parts.push(body);
    payload_or_bytes(py, parts)
}

type NodeTuple = (String, String, String, Vec<u32>);

fn nodes_from(nodes: Vec<NodeTuple>) -> PyResult<Vec<Node>> {
    nodes
        .into_iter()
        .map(|(kind, name, content, deps)| {
            let kind = NodeKind::ALL.into_iter().find(|k| k.as_str() == kind).ok_or_else(|| {
                to_py_err(HitSaveError::Core(hitsave_core::CoreError::new(
                    hitsave_core::ErrorCode::InvalidGraph,
                    format!("unknown node kind {kind:?}"),
                )))
            })?;
            Ok(Node { kind, name, content: parse_digest(&content)?, deps })
        })
        .collect()
}

/// `code2` fingerprints of `(kind, name, content digest, dep indices)` nodes.
#[pyfunction]
fn fingerprints(nodes: Vec<NodeTuple>) -> PyResult<Vec<String>> {
    let nodes = nodes_from(nodes)?;
    Ok(core()?.fingerprints(&nodes).map_err(to_py_err)?.iter().map(Digest::to_string).collect())
}

/// What changed between two graphs, as `(name, change)` pairs.
#[pyfunction]
fn diff(old: Vec<NodeTuple>, new: Vec<NodeTuple>, root: &str) -> PyResult<Vec<(String, String)>> {
    let changes = core()?.diff(&nodes_from(old)?, &nodes_from(new)?, root).map_err(to_py_err)?;
    Ok(changes.into_iter().map(|change| (change.name, change.change.as_str().to_owned())).collect())
}

/// BLAKE3 (`blob1`) of bytes-like data, hashed without the GIL.
#[pyfunction]
fn blob_digest(py: Python<'_>, data: &[u8]) -> String {
    let (address, len) = (data.as_ptr() as usize, data.len());
    py.detach(move || {
        // SAFETY: `data` is borrowed from a Python object the caller holds for this call.
        let data = unsafe { std::slice::from_raw_parts(address as *const u8, len) };
        hitsave_host::hash::blob_digest(data).to_string()
    })
}

/// The local store, opened from the configuration (environment, `hitsave.toml`).
#[pyclass(frozen, module = "hitsave._native")]
struct Store {
    inner: hitsave_host::Cache,
    mode: String,
}

#[pymethods]
impl Store {
    /// Opens the store; `cache_dir` overrides the configuration.
    #[new]
    #[pyo3(signature = (cache_dir=None))]
    fn new(py: Python<'_>, cache_dir: Option<std::path::PathBuf>) -> PyResult<Self> {
        py.detach(|| {
            let mut config = Config::load()?;
            if let Some(dir) = cache_dir {
                config.cache_dir = dir;
            }
            let mode = config.mode.as_str().to_owned();
            Ok(Self { inner: hitsave_host::Cache::open(&config)?, mode })
        })
        .map_err(to_py_err)
    }

    /// The configured mode: `off`, `local`, `cloud` or `read-only`.
    #[getter]
    fn mode(&self) -> &str {
        &self.mode
    }

    /// The store directory.
    #[getter]
    fn path(&self) -> String {
        self.inner.path().display().to_string()
    }

    /// `(codec, language, bytes)` for a key, or `None` on a miss. Bytes are
    /// verified. `cloud=False` reads the local store only.
    #[pyo3(signature = (key, cloud=true, function_name=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        cloud: bool,
        function_name: Option<&str>,
    ) -> PyResult<Option<HitTuple<'py>>> {
        let key = parse_digest(key)?;
        let hit = py
            .detach(|| if cloud { self.inner.get_for(&key, function_name) } else { self.inner.get_local(&key) })
            .map_err(to_py_err)?;
        hit.map(|hit| hit_tuple(py, hit)).transpose()
    }

    /// One attempt at the compute lock, never waiting: `("held", lock)`,
    /// `("busy", None)` (another caller holds it: try again later, up to
    /// `lock_wait`) or `("none", None)` (no lock: compute without one).
    fn try_lock_compute(&self, py: Python<'_>, key: &str) -> PyResult<(&'static str, Option<ComputeLock>)> {
        let key = parse_digest(key)?;
        Ok(match py.detach(|| self.inner.try_lock_compute(&key)) {
            hitsave_host::store::TryLock::Acquired(lock) => ("held", Some(ComputeLock::new(lock))),
            hitsave_host::store::TryLock::Busy => ("busy", None),
            hitsave_host::store::TryLock::Unavailable => ("none", None),
        })
    }

    /// Seconds a call waits for another computation of its key (`HITSAVE_LOCK_WAIT`).
    #[getter]
    fn lock_wait(&self) -> f64 {
        self.inner.lock_wait().as_secs_f64()
    }

    /// Waits (without the GIL, up to `lock_wait`) for the right to compute
    /// `key`; `None` means compute without it (locks off, read-only, the
    /// wait ran out).
    fn lock_compute(&self, py: Python<'_>, key: &str) -> PyResult<Option<ComputeLock>> {
        let key = parse_digest(key)?;
        Ok(py.detach(|| self.inner.lock_compute(&key)).map(ComputeLock::new))
    }

    /// Stores a result as it is (the low-level write, for tools and tests;
    /// a memoized call stores through `Function.finish`); returns `stored`,
    /// `already_present`, `skipped` (a read-only store) or `declined`.
    #[pyo3(signature = (key, *, function_id, function_name, arguments, codec, data, compute_micros, graph=None, cloud=true))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        key: &str,
        function_id: String,
        function_name: String,
        arguments: &str,
        codec: String,
        data: &[u8],
        compute_micros: u64,
        graph: Option<(String, Vec<NodeTuple>)>,
        cloud: bool,
    ) -> PyResult<&'static str> {
        let graph = match graph {
            Some((root, nodes)) => Some(Graph::from_nodes(&root, &nodes_from(nodes)?)),
            None => None,
        };
        let eval = NewEval {
            key: parse_digest(key)?,
            function_id,
            function_name,
            language: "python".to_owned(),
            arguments: parse_digest(arguments)?,
            codec,
            compute_micros,
            graph,
        };
        let core = core()?;
        let (address, len) = (data.as_ptr() as usize, data.len());
        let outcome = py
            .detach(move || {
                // SAFETY: `data` is borrowed from a bytes object held by the caller for this call.
                let data = unsafe { std::slice::from_raw_parts(address as *const u8, len) };
                if cloud { self.inner.put(core, &eval, data) } else { self.inner.put_local(core, &eval, data) }
            })
            .map_err(to_py_err)?;
        Ok(hitsave_host::function::outcome_name(Some(&outcome)))
    }

    /// Records the graph a function has now (for `hitsave why`).
    fn record_function(&self, py: Python<'_>, function_name: &str, root: &str, nodes: Vec<NodeTuple>) -> PyResult<()> {
        let graph = Graph::from_nodes(root, &nodes_from(nodes)?);
        let core = core()?;
        py.detach(|| self.inner.record_function(core, function_name, "python", &graph)).map_err(to_py_err)
    }

    /// Removes one function's results (or all); returns how many.
    #[pyo3(signature = (function_name=None))]
    fn clear(&self, py: Python<'_>, function_name: Option<&str>) -> PyResult<u64> {
        py.detach(|| self.inner.clear(function_name)).map_err(to_py_err)
    }

    /// Fetches a function's cloud results the local store lacks; returns how many.
    fn download(&self, py: Python<'_>, function_name: &str) -> PyResult<u64> {
        let cloud = self.inner.cloud().cloned().ok_or_else(|| {
            to_py_err(HitSaveError::CloudUnavailable(
                "download() needs the cloud: set HITSAVE_CLOUD_URL and HITSAVE_API_KEY (or `hitsave login`)".into(),
            ))
        })?;
        py.detach(|| cloud.download_function(&self.inner, function_name, |_, _| {})).map_err(to_py_err)
    }

    /// Waits (up to `upload_wait`) for queued cloud uploads; returns how many are left.
    fn drain_uploads(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.inner.drain_uploads()).map_err(to_py_err)
    }

    /// Writes buffered hit counts now.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.flush_hits()).map_err(to_py_err)
    }
}

/// A memoized function as the host knows it (`hitsave_host::function`):
/// keys remembered by argument stream, what storing did, why a call misses.
/// One per function identity: `_memo.py` makes a new one when the code's
/// fingerprint changes.
#[pyclass(frozen, module = "hitsave._native")]
struct Function {
    inner: hitsave_host::function::Function,
}

#[pymethods]
impl Function {
    #[new]
    #[pyo3(signature = (function_name, *, fingerprint=None, name=None, version=None, graph=None, cloud=true))]
    fn new(
        function_name: String,
        fingerprint: Option<&str>,
        name: Option<String>,
        version: Option<String>,
        graph: Option<(String, Vec<NodeTuple>)>,
        cloud: bool,
    ) -> PyResult<Self> {
        let graph = match graph {
            Some((root, nodes)) => Some(Graph::from_nodes(&root, &nodes_from(nodes)?)),
            None => None,
        };
        let identity = identity_of(fingerprint, name, version)?;
        Ok(Self { inner: hitsave_host::function::Function::new(identity, function_name, "python", graph, cloud) })
    }

    /// The fingerprint, or `name@version`.
    #[getter]
    fn function_id(&self) -> &str {
        self.inner.function_id()
    }

    /// `(key, argument digest)` of bound arguments.
    fn key<'py>(&self, py: Python<'py>, arguments: &Bound<'py, PyAny>) -> PyResult<(String, String)> {
        let (key, digest) = self.key_of(py, arguments)?;
        Ok((key.to_string(), digest.to_string()))
    }

    /// The call path's first step in one crossing: `(key, argument digest,
    /// hit or None)`. A store that cannot be read is reported as
    /// `(key, digest, error)` so the caller can warn and compute.
    /// `memory_only`: look only at hits this process already holds in memory
    /// (no SQLite, no file, no network: never blocks), for a coroutine's call
    /// on the event loop; `None` then means "ask `Store.get` off the loop".
    #[pyo3(signature = (store, arguments, *, memory_only=false))]
    fn lookup_call<'py>(
        &self,
        py: Python<'py>,
        store: &Store,
        arguments: &Bound<'py, PyAny>,
        memory_only: bool,
    ) -> PyResult<(String, String, Bound<'py, PyAny>)> {
        let (key, digest) = self.key_of(py, arguments)?;
        let found = if memory_only {
            Ok(store.inner.get_recent(&key))
        } else {
            py.detach(|| self.inner.get(&store.inner, &key))
        };
        let outcome = match found {
            Ok(Some(hit)) => hit_tuple(py, hit)?.into_pyobject(py)?.into_any(),
            Ok(None) => py.None().into_bound(py),
            Err(error) => to_py_err(error).into_value(py).into_bound(py).into_any(),
        };
        Ok((key.to_string(), digest.to_string(), outcome))
    }

    /// Stores a computed result (never raises for the store: a store error
    /// is warned about once): `(outcome, warning)`, the outcome `stored`,
    /// `already_present`, `skipped` (read-only), `declined` (the policy) or
    /// `failed`; the warning the "not stored" text to give once per
    /// function, or `None`.
    /// `changed_arguments`: the call left its arguments different (walked
    /// again after it): the result is declined, not stored.
    #[pyo3(signature = (store, key, arguments, codec, data, compute_micros, changed_arguments=false))]
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        py: Python<'_>,
        store: &Store,
        key: &str,
        arguments: &str,
        codec: &str,
        data: &Bound<'_, PyAny>,
        compute_micros: u64,
        changed_arguments: bool,
    ) -> PyResult<(&'static str, Option<String>)> {
        let (key, arguments) = (parse_digest(key)?, parse_digest(arguments)?);
        let core = core()?;
        let spans = if let Ok(bytes) = data.cast::<PyBytes>() {
            vec![span_of(bytes.as_bytes())]
        } else {
            data.cast::<Payload>()?.get().spans()
        };
        let finish = py.detach(move || {
            // SAFETY: the spans lie in a bytes object or a payload's parts held by the caller for this call.
            let parts = unsafe { span_slices(&spans) };
            let data = hitsave_host::Payload::Parts(&parts);
            let computed =
                hitsave_host::function::Computed { key, arguments, codec, data, compute_micros, changed_arguments };
            self.inner.finish(&store.inner, core, computed)
        });
        Ok((finish.outcome_name(), finish.warning))
    }

    /// Why a call misses (`hitsave_host::why`): the sentence `f.why(x)`
    /// returns; records the function's current graph first (for `hitsave why`).
    fn why(&self, py: Python<'_>, store: &Store, key: &str, arguments: &str) -> PyResult<String> {
        let core = core()?;
        let (key, arguments) = (parse_digest(key)?, parse_digest(arguments)?);
        py.detach(|| {
            if let Some(graph) = self.inner.graph() {
                store.inner.record_function(core, self.inner.function_name(), "python", graph)?;
            }
            self.inner.why(&store.inner, core, &key, &arguments)
        })
        .map(|why| why.to_string())
        .map_err(to_py_err)
    }
}

impl Function {
    fn key_of(&self, py: Python<'_>, arguments: &Bound<'_, PyAny>) -> PyResult<(Digest, Digest)> {
        let stream = stream_of(arguments)?;
        if let Some(known) = self.inner.known_key(&stream) {
            return Ok(known);
        }
        let core = core()?;
        py.detach(move || self.inner.key_of(core, &stream)).map_err(to_py_err)
    }
}

/// The `foreign_codec` error for a stored result only `language` reads (to raise).
#[pyfunction]
fn foreign_codec_error<'py>(py: Python<'py>, function_name: &str, language: &str, codec: &str) -> Bound<'py, PyAny> {
    to_py_err(hitsave_host::function::foreign_codec(function_name, language, codec))
        .into_value(py)
        .into_bound(py)
        .into_any()
}

/// The files under a data directory a function reads (sorted) and the
/// directories walked, or `code_unavailable` when there are too many to
/// count (`hitsave_host::files`).
#[pyfunction]
fn directory_files(py: Python<'_>, path: std::path::PathBuf, reader: &str) -> PyResult<(Vec<String>, Vec<String>)> {
    let text = |paths: Vec<std::path::PathBuf>| paths.into_iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let (files, dirs) = py.detach(|| hitsave_host::files::directory_files(&path, reader)).map_err(to_py_err)?;
    Ok((text(files), text(dirs)))
}

/// The files, directories and glob patterns text arguments name, by
/// contents, for a function whose code reads or writes files, or that has an
/// explicit identity (`hitsave_host::files::argument_files`;
/// `unhashable_value` when one names too many files to count).
#[pyfunction]
fn argument_files(py: Python<'_>, texts: Vec<String>) -> PyResult<Vec<(String, String)>> {
    py.detach(|| hitsave_host::files::argument_files(&texts)).map_err(to_py_err)
}

/// The `code_unavailable` error for what the analysis of a function's code
/// could not see (to raise).
#[pyfunction]
fn code_unavailable_error<'py>(py: Python<'py>, message: String) -> Bound<'py, PyAny> {
    to_py_err(HitSaveError::CodeUnavailable(message)).into_value(py).into_bound(py).into_any()
}

/// The pause in seconds before the next attempt at a busy compute lock, or
/// `None` once `waited` reached `lock_wait` (compute without the lock).
#[pyfunction]
fn lock_pause(attempt: u32, waited: f64, lock_wait: f64) -> Option<f64> {
    let seconds = |value: f64| std::time::Duration::from_secs_f64(value.max(0.0));
    hitsave_host::function::lock_pause(attempt, seconds(waited), seconds(lock_wait)).map(|pause| pause.as_secs_f64())
}

/// Prints a cache warning once per code per process (the value is still returned).
#[pyfunction]
fn warn_once(error: &Bound<'_, PyAny>) -> PyResult<()> {
    let code: String = error.getattr("code")?.extract()?;
    hitsave_host::warn::once(&code, &error.str()?.to_string());
    Ok(())
}

/// Runs the `hitsave` CLI with `argv` (program name first); returns the exit code.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| hitsave_cli::run(argv))
}

/// Every stable error code, in the order of `docs/errors.md`.
#[pyfunction]
fn error_codes() -> Vec<&'static str> {
    HitSaveError::all_codes()
}

/// The BLAKE3 of the embedded core component (the same in every binding).
#[pyfunction]
fn component_digest() -> String {
    hitsave_host::runtime::component_digest()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("HitSaveError", error_base(py)?)?;
    for (code, class) in error_classes(py)? {
        m.add(class_name(code), class.bind(py))?;
    }
    m.add_function(wrap_pyfunction!(value_digest, m)?)?;
    m.add_function(wrap_pyfunction!(canonical_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(value_stream, m)?)?;
    m.add_function(wrap_pyfunction!(derive_key, m)?)?;
    m.add_class::<Payload>()?;
    m.add_function(wrap_pyfunction!(encode_portable, m)?)?;
    m.add_function(wrap_pyfunction!(directory_files, m)?)?;
    m.add_function(wrap_pyfunction!(argument_files, m)?)?;
    m.add_function(wrap_pyfunction!(decode_portable, m)?)?;
    m.add_function(wrap_pyfunction!(pack_pickle, m)?)?;
    m.add("PICKLE_MAGIC", PyBytes::new(py, PICKLE_MAGIC))?;
    m.add("PICKLE_ALIGN", PICKLE_ALIGN)?;
    m.add("PORTABLE", hitsave_host::portable::CODEC)?;
    m.add_function(wrap_pyfunction!(fingerprints, m)?)?;
    m.add_function(wrap_pyfunction!(diff, m)?)?;
    m.add_function(wrap_pyfunction!(blob_digest, m)?)?;
    m.add_function(wrap_pyfunction!(warn_once, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(error_codes, m)?)?;
    m.add_function(wrap_pyfunction!(component_digest, m)?)?;
    m.add_class::<Store>()?;
    m.add_class::<Mapped>()?;
    m.add_class::<ComputeLock>()?;
    m.add_class::<bytecode::BytecodeReader>()?;
    m.add_class::<Function>()?;
    m.add_function(wrap_pyfunction!(lock_pause, m)?)?;
    m.add_function(wrap_pyfunction!(foreign_codec_error, m)?)?;
    m.add_function(wrap_pyfunction!(code_unavailable_error, m)?)?;
    Ok(())
}
