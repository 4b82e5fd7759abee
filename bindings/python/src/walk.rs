//! Python values to the value stream (`docs/spec/values.md`), in Rust.
//!
//! Only translation happens here, by the table in `docs/spec/values.md`
//! ("Python"): builtin types by their exact type (a subclass is never its
//! base), numpy and pandas natively, functions and classes by their code
//! fingerprint, every other object by what pickle would save of it (its
//! `__reduce_ex__(5)`), recursively. What a value *means* (sorting, errors
//! with paths) is decided by the core. A value this walker cannot describe
//! faithfully is written as an `unhashable` token naming its type, and the
//! core answers with a typed error carrying the path.

use hitsave_core::canonical::MAX_DEPTH;
use hitsave_core::stream::StreamWriter;
use hitsave_host::hash;
use pyo3::buffer::PyUntypedBuffer;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyMemoryView, PySet, PyString, PyTuple,
    PyType,
};

/// Writes one Python value.
pub fn walk(value: &Bound<'_, PyAny>, out: &mut StreamWriter, depth: usize) -> PyResult<()> {
    if depth == 0 {
        // A walk of its own (Python code run during a walk, such as a
        // `__getstate__`, may walk other arguments): its own path and its own
        // objects met.
        let outer = PATH.with(|path| std::mem::take(&mut *path.borrow_mut()));
        let outer_seen = SEEN.with(|seen| std::mem::take(&mut *seen.borrow_mut()));
        let walked = walk_value(value, out, 0);
        PATH.with(|path| *path.borrow_mut() = outer);
        SEEN.with(|seen| *seen.borrow_mut() = outer_seen);
        return walked;
    }
    walk_value(value, out, depth)
}

fn walk_value(value: &Bound<'_, PyAny>, out: &mut StreamWriter, depth: usize) -> PyResult<()> {
    if depth >= MAX_DEPTH {
        // The core reports `too_deep` with the path for any value this deep;
        // stopping here also ends self-referencing containers.
        out.null();
        return Ok(());
    }
    let py = value.py();
    // Exact types only: a subclass (an IntEnum, a numpy float64, a str Enum)
    // is a value of its own type, walked below by what pickle saves of it.
    if value.is_none() {
        out.null();
    } else if let Ok(flag) = value.cast_exact::<PyBool>() {
        out.bool(flag.is_true());
    } else if let Ok(int) = value.cast_exact::<PyInt>() {
        write_int(int, out)?;
    } else if let Ok(float) = value.cast_exact::<PyFloat>() {
        out.float(float.value());
    } else if let Ok(text) = value.cast_exact::<PyString>() {
        write_str(text, out)?;
    } else if let Ok(bytes) = value.cast_exact::<PyBytes>() {
        write_buffer_bytes(py, bytes.as_bytes(), out);
    } else if value.cast_exact::<PyByteArray>().is_ok() {
        if Seen::first(value, out)? {
            out.typed("py:builtins.bytearray");
            write_contiguous_bytes(value, out)?;
        }
    } else if value.cast_exact::<PyMemoryView>().is_ok() {
        write_memoryview(value, out)?;
    } else if let Some(_on_path) = Ancestors::enter(value, out)?
        // (One met before is written as a reference to it.)
        && (!has_identity(value)? || Seen::first(value, out)?)
    {
        walk_container(value, out, depth)?;
    }
    Ok(())
}

/// Whether code can tell this object from an equal copy by mutating it: a
/// list, dict, set, bytearray, numpy array, pandas object or instance of a
/// class that hashes by identity. Tuples, frozensets, functions, classes and
/// types that hash by value (`datetime`, `Decimal`, a frozen dataclass, an
/// enum member) are values: two equal ones are interchangeable.
fn has_identity(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    if value.cast_exact::<PyList>().is_ok()
        || value.cast_exact::<PyDict>().is_ok()
        || value.cast_exact::<PySet>().is_ok()
    {
        return Ok(true);
    }
    if value.cast_exact::<PyTuple>().is_ok()
        || value.cast_exact::<PyFrozenSet>().is_ok()
        || value.is_instance_of::<PyType>()
        || value.get_type().is(function_type(value.py())?)
    {
        return Ok(false);
    }
    let kind = value.get_type();
    let module = kind.module()?;
    let module = module.to_str()?;
    if module == "pandas" || module.starts_with("pandas.") {
        // Mutable, though their `__hash__` exists (to raise).
        return Ok(true);
    }
    static OBJECT_HASH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = value.py();
    let object_hash = OBJECT_HASH
        .get_or_try_init(py, || PyResult::Ok(py.get_type::<pyo3::types::PyAny>().getattr("__hash__")?.unbind()))?;
    let hash = kind.getattr("__hash__")?;
    Ok(hash.is_none() || hash.is(object_hash.bind(py)))
}

/// The objects with an identity ([`has_identity`]) this walk has written, by
/// address, with their ordinal in the order first met. One met again (not
/// on its own path: that is a cycle) is written as `typed("hitsave:ref",
/// int(ordinal))`, so `[a, a]` and `[[1], [1]]` differ (code mutating `v[0]`
/// sees `v[1]` change in one and not the other). Each object is held until
/// the walk ends, so no address is reused within it.
#[derive(Default)]
struct Seen {
    ordinals: std::collections::HashMap<usize, u32>,
    held: Vec<Py<PyAny>>,
}

thread_local! {
    static SEEN: std::cell::RefCell<Seen> = std::cell::RefCell::new(Seen::default());
}

impl Seen {
    /// `true` when `value` is met for the first time in this walk (recorded:
    /// the caller writes it); `false` after writing a reference to it.
    fn first(value: &Bound<'_, PyAny>, out: &mut StreamWriter) -> PyResult<bool> {
        let address = value.as_ptr() as usize;
        SEEN.with(|seen| {
            let mut seen = seen.borrow_mut();
            if let Some(ordinal) = seen.ordinals.get(&address) {
                out.typed(REF_TYPE).int(i64::from(*ordinal));
                return Ok(false);
            }
            let ordinal = u32::try_from(seen.held.len()).unwrap_or(u32::MAX);
            seen.ordinals.insert(address, ordinal);
            seen.held.push(value.clone().unbind());
            Ok(true)
        })
    }
}

/// The type name of a reference to an object met earlier in the same value
/// (`docs/spec/values.md`, "The rule"); no language's type names look like it.
const REF_TYPE: &str = "hitsave:ref";

/// Whether a type is `module.name` exactly.
fn type_is(kind: &Bound<'_, PyType>, module: &str, name: &str) -> bool {
    kind.name().is_ok_and(|n| n.to_str().is_ok_and(|n| n == name))
        && kind.module().is_ok_and(|m| m.to_str().is_ok_and(|m| m == module))
}

fn write_str(text: &Bound<'_, PyString>, out: &mut StreamWriter) -> PyResult<()> {
    // Lone surrogates: the bytes pass through so the core reports invalid UTF-8 with the path.
    let encoded;
    let bytes = match text.to_str() {
        Ok(text) => text.as_bytes(),
        Err(_) => {
            encoded = text.call_method1("encode", ("utf-8", "surrogatepass"))?;
            encoded.cast::<PyBytes>()?.as_bytes()
        }
    };
    if bytes.len() > StreamWriter::MAX_LEN {
        // A stream's str item holds up to 4 GiB: refused with its path, never cut.
        out.unhashable("str of over 4 GiB (pass it as bytes or a File)");
    } else {
        out.str_bytes(bytes);
    }
    Ok(())
}

/// A memoryview: its format and shape are what the function sees besides the bytes.
fn write_memoryview(value: &Bound<'_, PyAny>, out: &mut StreamWriter) -> PyResult<()> {
    out.typed("py:builtins.memoryview").list(3);
    out.str(&value.getattr("format")?.extract::<String>()?);
    let shape: Vec<i64> = value.getattr("shape")?.extract()?;
    out.list(shape.len());
    for dim in shape {
        out.int(dim);
    }
    write_contiguous_bytes(value, out)
}

/// The containers on the path from the argument being walked to the value
/// now walked (this thread's walk: the GIL is held while a walk descends).
/// A container met again on its own path is a cycle: written as an
/// `unhashable` token (`cyclic list`, …) so the core names where the cycle
/// closes, instead of walking on until `too_deep`.
struct Ancestors;

thread_local! {
    static PATH: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Ancestors {
    /// `Some(guard)` (popped when dropped) when `value` is not already on the
    /// path; `None` after writing the cycle.
    fn enter(value: &Bound<'_, PyAny>, out: &mut StreamWriter) -> PyResult<Option<Ancestors>> {
        let address = value.as_ptr() as usize;
        if PATH.with(|path| path.borrow().contains(&address)) {
            out.unhashable(&format!("cyclic {}", type_name(value)?));
            return Ok(None);
        }
        PATH.with(|path| path.borrow_mut().push(address));
        Ok(Some(Ancestors))
    }
}

impl Drop for Ancestors {
    fn drop(&mut self) {
        PATH.with(|path| path.borrow_mut().pop());
    }
}

/// Tuples, lists, dicts, sets and everything else that may hold values.
fn walk_container(value: &Bound<'_, PyAny>, out: &mut StreamWriter, depth: usize) -> PyResult<()> {
    if let Ok(tuple) = value.cast_exact::<PyTuple>() {
        out.typed("py:builtins.tuple").list(tuple.len());
        for item in tuple.iter() {
            walk(&item, out, depth + 1)?;
        }
    } else if let Ok(list) = value.cast_exact::<PyList>() {
        // A snapshot, so a list changed by another thread cannot tear the stream.
        let items: Vec<Bound<'_, PyAny>> = list.iter().collect();
        out.list(items.len());
        for item in &items {
            walk(item, out, depth + 1)?;
        }
    } else if let Ok(dict) = value.cast_exact::<PyDict>() {
        // Insertion order: the core keeps it.
        let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = dict.iter().collect();
        out.map(items.len());
        for (key, item) in &items {
            walk(key, out, depth + 1)?;
            walk(item, out, depth + 1)?;
        }
    } else if value.cast_exact::<PySet>().is_ok() || value.cast_exact::<PyFrozenSet>().is_ok() {
        if value.cast_exact::<PyFrozenSet>().is_ok() {
            out.typed("py:builtins.frozenset");
        }
        let items: Vec<Bound<'_, PyAny>> = value.try_iter()?.collect::<PyResult<_>>()?;
        out.set(items.len());
        for item in &items {
            walk(item, out, depth + 1)?;
        }
    } else {
        walk_object(value, out, depth)?;
    }
    Ok(())
}

/// `module.QualName` of a value's type (as Python's error messages spell it).
pub fn type_name(value: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(value.get_type().fully_qualified_name()?.to_str()?.to_owned())
}

/// `py:module.QualName` of a type, always with its module (`py:builtins.tuple`,
/// `py:__main__.Config`), as typed values and records name it.
fn py_type_name(kind: &Bound<'_, PyType>) -> PyResult<String> {
    let module = kind.module()?;
    Ok(format!("py:{}.{}", module.to_str()?, kind.qualname()?.to_str()?))
}

/// An `int` of any size: `int` token when it fits 64 bits, else `bigint`.
pub(crate) fn write_int(int: &Bound<'_, PyInt>, out: &mut StreamWriter) -> PyResult<()> {
    if let Ok(small) = int.extract::<i64>() {
        out.int(small);
        return Ok(());
    }
    let negative = int.lt(0)?;
    let magnitude = if negative { int.call_method0("__neg__")? } else { int.clone().into_any() };
    let bits: usize = magnitude.call_method0("bit_length")?.extract()?;
    let bytes = magnitude.call_method1("to_bytes", (bits.div_ceil(8), "little"))?;
    out.bigint(negative, bytes.cast::<PyBytes>()?.as_bytes());
    Ok(())
}

/// Bytes: small ones inline, large ones hashed natively with the GIL released.
fn write_buffer_bytes(py: Python<'_>, data: &[u8], out: &mut StreamWriter) {
    if data.len() <= hash::INLINE_LIMIT {
        out.bytes(data);
    } else {
        let digest = detach_hash(py, data);
        out.bytes_digest(data.len() as u64, &digest);
    }
}

/// BLAKE3 of memory the caller keeps alive, on all cores, without the GIL.
fn detach_hash(py: Python<'_>, data: &[u8]) -> [u8; 32] {
    let (address, len) = (data.as_ptr() as usize, data.len());
    py.detach(move || {
        // SAFETY: the caller holds the buffer (a bytes object or a Py_buffer
        // export) for the duration of this call; we only read it.
        let data = unsafe { std::slice::from_raw_parts(address as *const u8, len) };
        hash::blob_digest(data).bytes
    })
}

fn write_contiguous_bytes(value: &Bound<'_, PyAny>, out: &mut StreamWriter) -> PyResult<()> {
    let buffer = PyUntypedBuffer::get(value)?;
    if !buffer.is_c_contiguous() {
        let copy = value.call_method0("tobytes")?;
        write_buffer_bytes(value.py(), copy.cast::<PyBytes>()?.as_bytes(), out);
        return Ok(());
    }
    // SAFETY: the buffer export keeps the memory alive until `buffer` drops.
    let data = unsafe { std::slice::from_raw_parts(buffer.buf_ptr() as *const u8, buffer.len_bytes()) };
    write_buffer_bytes(value.py(), data, out);
    Ok(())
}

/// numpy's buffer format characters, on a little-endian host.
fn dtype_of_format(format: &str) -> Option<&'static str> {
    let code = format.trim_start_matches(['<', '=', '@']);
    Some(match code {
        "?" => "bool",
        "b" => "int8",
        "B" => "uint8",
        "h" => "int16",
        "H" => "uint16",
        "i" => "int32",
        "I" => "uint32",
        "l" | "q" => "int64",
        "L" | "Q" => "uint64",
        "e" => "float16",
        "f" => "float32",
        "d" => "float64",
        "Zf" => "complex64",
        "Zd" => "complex128",
        _ => return None,
    })
}

/// Writes a numpy array of a numeric dtype as an array (typed `tag` around
/// it, when given); `Ok(false)`, with nothing written, when its dtype is not
/// one of the shared numeric dtypes.
fn walk_numpy_array(value: &Bound<'_, PyAny>, out: &mut StreamWriter, tag: Option<&str>) -> PyResult<bool> {
    let scalar = value.getattr("ndim")?.extract::<usize>()? == 0;
    // A 0-d array exports no shape; its one item is read through a 1-d view.
    let exported = if scalar { value.call_method1("reshape", (1,))? } else { value.clone() };
    let buffer = match PyUntypedBuffer::get(&exported) {
        Ok(buffer) => buffer,
        Err(_) => return Ok(false),
    };
    let format = buffer.format().to_str().unwrap_or("");
    let Some(dtype) = dtype_of_format(format) else { return Ok(false) };
    if !buffer.is_c_contiguous() {
        let numpy = value.py().import("numpy")?;
        let contiguous = numpy.call_method1("ascontiguousarray", (value,))?;
        return walk_numpy_array(&contiguous, out, tag);
    }
    if let Some(tag) = tag {
        out.typed(tag);
    }
    let shape: Vec<u64> = if scalar { Vec::new() } else { buffer.shape().iter().map(|&dim| dim as u64).collect() };
    // SAFETY: the export keeps the memory alive until `buffer` drops.
    let data = unsafe { std::slice::from_raw_parts(buffer.buf_ptr() as *const u8, buffer.len_bytes()) };
    if data.len() <= hash::INLINE_LIMIT {
        out.array(dtype, &shape, data);
    } else {
        let digest = detach_hash(value.py(), data);
        out.array_digest(dtype, &shape, data.len() as u64, &digest);
    }
    Ok(true)
}

/// A plain `numpy.ndarray`: numeric dtypes as arrays (big-endian ones swapped
/// to little-endian first), any other dtype as `py:numpy.ndarray` around its
/// dtype description, shape and C-order bytes (object arrays: their items).
fn walk_ndarray(value: &Bound<'_, PyAny>, out: &mut StreamWriter, depth: usize) -> PyResult<()> {
    if let Some(layout) = numpy_layout(value)? {
        // Around the array: what code reads of its memory besides the values.
        out.typed("py:numpy.layout").list(2);
        out.list(3).int(i64::from(layout.f_contiguous)).int(i64::from(layout.readonly)).list(layout.axes.len());
        for axis in layout.axes {
            out.int(axis);
        }
    }
    if walk_numpy_array(value, out, None)? {
        return Ok(());
    }
    let dtype = value.getattr("dtype")?;
    let kind: String = dtype.getattr("kind")?.extract()?;
    if "biufc".contains(kind.as_str()) && !dtype.getattr("names")?.is_truthy()? {
        let swapped = value.call_method1("astype", (dtype.call_method1("newbyteorder", ("<",))?,))?;
        // Its values, little-endian; but the byte order is part of the
        // dtype code sees (`a.tobytes()`, `a.dtype.str`): a big-endian
        // array is not its little-endian twin.
        let big_endian = dtype.getattr("byteorder")?.extract::<String>()? == ">";
        if walk_numpy_array(&swapped, out, big_endian.then_some("py:numpy.big-endian"))? {
            return Ok(());
        }
    }
    out.typed("py:numpy.ndarray").list(3);
    walk(&dtype.getattr("descr")?, out, depth + 1)?;
    let shape: Vec<i64> = value.getattr("shape")?.extract()?;
    out.list(shape.len());
    for dim in shape {
        out.int(dim);
    }
    if dtype.getattr("hasobject")?.is_truthy()? {
        let items = value.call_method1("reshape", (-1,))?.call_method0("tolist")?;
        walk(&items, out, depth + 1)
    } else {
        let numpy = value.py().import("numpy")?;
        let data = numpy.call_method1("ascontiguousarray", (value,))?.call_method0("tobytes")?;
        write_buffer_bytes(value.py(), data.cast::<PyBytes>()?.as_bytes(), out);
        Ok(())
    }
}

/// How an array lies in memory, where ordinary numpy operations can tell it
/// from its C-order copy: the order of its axes in memory
/// (`np.ravel(a, order='K')`, `np.copy(a, order='K')`, `np.empty_like(a)`),
/// Fortran contiguity (`order='A'`, `a.tobytes(order='A')`) and whether it is
/// read-only (an in-place write is refused). So `np.asfortranarray(x)`, `x.T`
/// and a read-only `x` each key apart from `x`. A strided or reversed view in
/// C order (`x[::2]`, `x[:, 0]`, `x[::-1]`: order `'K'` undoes negative
/// strides) keys as its copy: only `a.strides` and `a.flags` tell them apart.
struct NumpyLayout {
    f_contiguous: bool,
    readonly: bool,
    /// The axes longer than 1, from the largest stride to the smallest
    /// (by magnitude; ties in axis order).
    axes: Vec<i64>,
}

thread_local! {
    /// Walking the state `hitsave._pandas` describes a pandas object by: its
    /// arrays' read-only flag is pandas' (copy-on-write views), not the value's.
    static PANDAS_VALUES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn numpy_layout(value: &Bound<'_, PyAny>) -> PyResult<Option<NumpyLayout>> {
    let (c_contiguous, f_contiguous, readonly, shape, strides): (bool, bool, bool, Vec<usize>, Vec<isize>) =
        match PyUntypedBuffer::get(value) {
            Ok(buffer) => (
                buffer.is_c_contiguous(),
                buffer.is_fortran_contiguous(),
                buffer.readonly(),
                buffer.shape().to_vec(),
                buffer.strides().to_vec(),
            ),
            // Object and other arrays that export no buffer: numpy's own flags.
            Err(_) => {
                let flags = value.getattr("flags")?;
                (
                    flags.getattr("c_contiguous")?.extract()?,
                    flags.getattr("f_contiguous")?.extract()?,
                    !flags.getattr("writeable")?.extract::<bool>()?,
                    value.getattr("shape")?.extract()?,
                    value.getattr("strides")?.extract()?,
                )
            }
        };
    let readonly = readonly && !PANDAS_VALUES.get();
    if c_contiguous && !readonly {
        return Ok(None);
    }
    let f_contiguous = f_contiguous && !c_contiguous;
    let mut order: Vec<usize> = (0..strides.len().min(shape.len())).filter(|&axis| shape[axis] > 1).collect();
    order.sort_by_key(|&axis| std::cmp::Reverse(strides[axis].unsigned_abs()));
    if order.is_sorted() && !f_contiguous && !readonly {
        return Ok(None);
    }
    let axes = order.into_iter().map(|axis| axis as i64).collect();
    Ok(Some(NumpyLayout { f_contiguous, readonly, axes }))
}

/// numpy's `ndarray` and `generic` (scalar) types, once numpy is imported by
/// the program (never imported here just to look).
fn numpy_types(py: Python<'_>) -> PyResult<Option<(Bound<'_, PyAny>, Bound<'_, PyAny>)>> {
    static TYPES: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
    if let Some((array, generic)) = TYPES.get(py) {
        return Ok(Some((array.bind(py).clone(), generic.bind(py).clone())));
    }
    // `dict.get`: until numpy is imported this runs per object, and a KeyError costs more than the lookup.
    static MODULES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let numpy = hitsave_attr(py, &MODULES, "sys", "modules")?.call_method1("get", ("numpy",))?;
    if numpy.is_none() {
        return Ok(None);
    }
    let (array, generic) = (numpy.getattr("ndarray")?, numpy.getattr("generic")?);
    let _ = TYPES.set(py, (array.clone().unbind(), generic.clone().unbind()));
    Ok(Some((array, generic)))
}

/// An attribute of one of HitSave's Python modules, imported once.
fn hitsave_attr<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(cell.import(py, module, name)?.clone())
}

static FILE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static PURE_PATH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static IS_CODE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static FINGERPRINT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static PANDAS_STATE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DISPATCH_TABLE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Per exact type whose instances `walk_object` writes by what pickle saves
/// of them (the checks before `walk_reduced` depend on the type alone: most
/// objects, a dataclass argument at every call): the type's `__mro__` when
/// that was found (a base reassigned makes a new one) and its `py:` name.
/// Held by the type, so an address is never another type's.
static REDUCED_TYPES: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

/// Types kept in [`REDUCED_TYPES`] at most (beyond: every call checks).
const REDUCED_TYPES_LIMIT: usize = 4096;

/// The `py:` name of `kind` when its instances are known to be written by
/// what pickle saves of them.
fn reduced_type<'py>(kind: &Bound<'py, PyType>) -> PyResult<Option<Bound<'py, PyString>>> {
    let py = kind.py();
    let Some(known) = REDUCED_TYPES.get(py) else { return Ok(None) };
    let Some(entry) = known.bind(py).get_item(kind)? else { return Ok(None) };
    let entry = entry.cast_into::<PyTuple>()?;
    if !entry.get_item(0)?.is(&kind.getattr(pyo3::intern!(py, "__mro__"))?) {
        return Ok(None);
    }
    Ok(Some(entry.get_item(1)?.cast_into::<PyString>()?))
}

fn remember_reduced_type(kind: &Bound<'_, PyType>, name: &str) -> PyResult<()> {
    let py = kind.py();
    let known = REDUCED_TYPES.get_or_init(py, || PyDict::new(py).unbind()).bind(py);
    if known.len() < REDUCED_TYPES_LIMIT {
        known.set_item(kind, (kind.getattr(pyo3::intern!(py, "__mro__"))?, name))?;
    }
    Ok(())
}

/// `types.FunctionType`.
fn function_type(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static FUNCTION: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    FUNCTION.import(py, "types", "FunctionType")
}

/// Everything that is not a builtin container or scalar.
fn walk_object(value: &Bound<'_, PyAny>, out: &mut StreamWriter, depth: usize) -> PyResult<()> {
    let py = value.py();
    let kind = value.get_type();
    if let Some(name) = reduced_type(&kind)? {
        return walk_reduced(value, name.to_str()?, out, depth);
    }
    // Functions and classes (the commonest objects in a reduction: its
    // constructor, its class): by their code, before the checks below,
    // none of which an exact function or a class passes.
    if value.is_instance_of::<PyType>() || kind.is(function_type(py)?) {
        return write_code(value, out);
    }
    if type_is(&kind, "pickle", "PickleBuffer") {
        // What protocol 5 reductions hand over for large data (Arrow, numpy):
        // its bytes, hashed natively without a copy.
        out.typed("py:pickle.PickleBuffer");
        let view = py.import("builtins")?.getattr("memoryview")?.call1((value,))?;
        return write_contiguous_bytes(&view, out);
    }
    let module = kind.module().map(|m| m.to_string()).unwrap_or_default();

    if let Some((ndarray, generic)) = numpy_types(py)? {
        if kind.is(&ndarray) {
            return walk_ndarray(value, out, depth);
        }
        if value.is_instance(&ndarray)? {
            // A subclass: its type, the data as a plain array, and what its
            // instance dict holds (a masked array's mask and fill value). A
            // memmap's dict is its open file, not its value.
            out.typed(&py_type_name(&kind)?);
            let plain = value.call_method1("view", (&ndarray,))?;
            if kind.qualname()?.to_str()? == "memmap" {
                return walk_ndarray(&plain, out, depth + 1);
            }
            out.list(2);
            walk_ndarray(&plain, out, depth + 1)?;
            return match value.getattr("__dict__") {
                Ok(state) => walk_state(&state, out, depth + 1),
                Err(_) => {
                    out.null();
                    Ok(())
                }
            };
        }
        if value.is_instance(&generic)? {
            // A numpy scalar keeps its dtype: its 0-d array, under its type.
            out.typed(&py_type_name(&kind)?);
            let array = py.import("numpy")?.call_method1("asarray", (value,))?;
            return walk_ndarray(&array, out, depth + 1);
        }
    }
    if module == "pandas" || module.starts_with("pandas.") {
        let described = hitsave_attr(py, &PANDAS_STATE, "hitsave._pandas", "state")?.call1((value,))?;
        if !described.is_none() {
            // Its columns' arrays are pandas' views (read-only under
            // copy-on-write): the frame's values, not arrays code was given.
            let outer = PANDAS_VALUES.replace(true);
            let walked = walk_record(&py_type_name(&kind)?, described.cast::<PyDict>()?, out, depth);
            PANDAS_VALUES.set(outer);
            return walked;
        }
    }
    if value.is_instance(&hitsave_attr(py, &FILE, "hitsave._types", "File")?)? {
        let path: String = value.getattr("path")?.extract()?;
        return hash::write_file(out, std::path::Path::new(&path)).map_err(crate::to_py_err);
    }
    if value.is_instance(&hitsave_attr(py, &PURE_PATH, "pathlib", "PurePath")?)? {
        out.typed(&py_type_name(&kind)?).str(&value.str()?.to_string());
        return Ok(());
    }
    if type_is(&kind, "builtins", "method") {
        // A bound method: the function's code and the instance it is bound to.
        out.typed("py:builtins.method").list(2);
        write_code(&value.getattr("__func__")?, out)?;
        return walk(&value.getattr("__self__")?, out, depth + 1);
    }
    // Functions and classes are identified by their code; that analysis lives in `hitsave._code`.
    if hitsave_attr(py, &IS_CODE, "hitsave._code", "is_code_object")?.call1((value,))?.is_truthy()? {
        return write_code(value, out);
    }
    let name = py_type_name(&kind)?;
    if !value.is_callable() {
        // Not a function, a class or a builtin (whose binding decides): every
        // check above holds for any instance of this type.
        remember_reduced_type(&kind, &name)?;
    }
    walk_reduced(value, &name, out, depth)
}

/// A function or class, by its code fingerprint (`hitsave._code`); a
/// callable the analysis finds no code for is `unhashable`.
fn write_code(value: &Bound<'_, PyAny>, out: &mut StreamWriter) -> PyResult<()> {
    let py = value.py();
    if let Some(digest) = reconstructor(value)? {
        out.function(&digest);
        return Ok(());
    }
    let fingerprint = match hitsave_attr(py, &FINGERPRINT, "hitsave._code", "fingerprint_of")?.call1((value,)) {
        Ok(fingerprint) => fingerprint.extract::<String>()?,
        Err(err) if err.is_instance_of::<pyo3::exceptions::PyTypeError>(py) => {
            out.unhashable(&format!("{} (no code to fingerprint)", type_name(value)?));
            return Ok(());
        }
        Err(err) => return Err(err),
    };
    let digest = hitsave_core::Digest::parse(&fingerprint).map_err(|err| crate::to_py_err(err.into()))?;
    out.function(&digest);
    Ok(())
}

/// The fingerprint of `value` when it is one of `copyreg`'s reconstructors,
/// which nearly every reduction names (`copyreg.__newobj__`): the standard
/// library's code, fixed for the process, so found once (by identity: a
/// reconstructor replaced is looked up as any function).
fn reconstructor(value: &Bound<'_, PyAny>) -> PyResult<Option<hitsave_core::Digest>> {
    static KNOWN: PyOnceLock<Vec<(Py<PyAny>, hitsave_core::Digest)>> = PyOnceLock::new();
    thread_local! {
        // Finding them runs the analysis, which may write code too.
        static FINDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    let py = value.py();
    let known = match KNOWN.get(py) {
        Some(known) => known,
        None if FINDING.with(|finding| finding.get()) => return Ok(None),
        None => {
            FINDING.with(|finding| finding.set(true));
            let found = (|| -> PyResult<Vec<(Py<PyAny>, hitsave_core::Digest)>> {
                let copyreg = py.import("copyreg")?;
                let fingerprint = hitsave_attr(py, &FINGERPRINT, "hitsave._code", "fingerprint_of")?;
                let mut known = Vec::new();
                for name in ["__newobj__", "__newobj_ex__", "_reconstructor"] {
                    let Ok(function) = copyreg.getattr(name) else { continue };
                    let text: String = fingerprint.call1((&function,))?.extract()?;
                    let digest = hitsave_core::Digest::parse(&text).map_err(|err| crate::to_py_err(err.into()))?;
                    known.push((function.unbind(), digest));
                }
                Ok(known)
            })();
            FINDING.with(|finding| finding.set(false));
            let _ = KNOWN.set(py, found?);
            KNOWN.get(py).expect("set above or by another thread")
        }
    };
    Ok(known.iter().find(|(function, _)| function.bind(py).is(value)).map(|(_, digest)| *digest))
}

/// Any other object, by what pickle would save of it: `__reduce_ex__(5)`,
/// recursively (`docs/spec/values.md`). An object pickle refuses is
/// `unhashable`, and so is anything unfaithful inside its reduction.
fn walk_reduced(value: &Bound<'_, PyAny>, type_name_: &str, out: &mut StreamWriter, depth: usize) -> PyResult<()> {
    let py = value.py();
    let kind = value.get_type();
    // As pickle does: a reducer registered with copyreg for the exact type
    // (re.Pattern, numpy ufuncs) before the object's own `__reduce_ex__`.
    // (`dict.get`: a missing type is the common case, and a KeyError costs more than the lookup.)
    let table = hitsave_attr(py, &DISPATCH_TABLE, "copyreg", "dispatch_table")?;
    let registered = match table.cast::<PyDict>() {
        Ok(table) => table.get_item(&kind)?,
        Err(_) => Some(table.call_method1("get", (&kind,))?).filter(|found| !found.is_none()),
    };
    let reduced = match registered {
        Some(reducer) => reducer.call1((value,)),
        None => value.call_method1("__reduce_ex__", (5,)),
    };
    let reduced = match reduced {
        Ok(reduced) => reduced,
        Err(_) => {
            out.unhashable(&type_name(value)?);
            return Ok(());
        }
    };
    if let Ok(name) = reduced.cast::<PyString>() {
        // Saved by reference: a module-level name (`len`, `pd.NA`).
        if value.is_callable() {
            return write_code(value, out);
        }
        let module = match value.getattr("__module__") {
            Ok(module) if module.is_instance_of::<PyString>() => module.to_string(),
            _ => kind.module()?.to_string(),
        };
        out.typed("py:global").str(&format!("{module}.{}", name.to_str()?));
        return Ok(());
    }
    let Ok(parts) = reduced.cast::<PyTuple>() else {
        out.unhashable(&type_name(value)?);
        return Ok(());
    };
    if !(2..=6).contains(&parts.len()) {
        out.unhashable(&type_name(value)?);
        return Ok(());
    }
    let part = |index: usize| parts.get_item(index).ok().filter(|item| !item.is_none());
    // List items and dict items come as iterators: taken into lists.
    let listed = |index: usize| -> PyResult<Option<Bound<'_, PyAny>>> {
        match part(index) {
            Some(iterator) => {
                let items = iterator.try_iter()?.collect::<PyResult<Vec<_>>>()?;
                Ok(Some(PyList::new(py, items)?.into_any()))
            }
            None => Ok(None),
        }
    };
    let fields = [
        ("reduce", part(0)),
        ("args", part(1)),
        ("state", part(2)),
        ("items", listed(3)?),
        ("entries", listed(4)?),
        ("setter", part(5)),
    ];
    out.record(type_name_, fields.iter().filter(|(_, item)| item.is_some()).count());
    for (field, item) in &fields {
        if let Some(item) = item {
            out.field(field);
            if *field == "state" { walk_state(item, out, depth + 1)? } else { walk(item, out, depth + 1)? }
        }
    }
    Ok(())
}

/// An object's pickled state: a dict with string keys is a record `py:state`
/// of those fields (attribute order is not a value); a `(dict, slots)` pair
/// a tuple of two such; anything else as itself.
fn walk_state(state: &Bound<'_, PyAny>, out: &mut StreamWriter, depth: usize) -> PyResult<()> {
    if let Ok(dict) = state.cast_exact::<PyDict>()
        && dict.keys().iter().all(|key| key.cast_exact::<PyString>().is_ok())
    {
        return walk_record("py:state", dict, out, depth);
    }
    if let Ok(pair) = state.cast_exact::<PyTuple>()
        && pair.len() == 2
        && pair.iter().all(|part| part.is_none() || part.cast_exact::<PyDict>().is_ok())
    {
        out.typed("py:builtins.tuple").list(2);
        for part in pair.iter() {
            walk_state(&part, out, depth + 1)?;
        }
        return Ok(());
    }
    walk(state, out, depth)
}

/// A record named `name` whose fields are the (string) keys of `fields`.
fn walk_record(name: &str, fields: &Bound<'_, PyDict>, out: &mut StreamWriter, depth: usize) -> PyResult<()> {
    let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = fields.iter().collect();
    out.record(name, items.len());
    for (field, item) in &items {
        write_field_name(field, out)?;
        walk(item, out, depth + 1)?;
    }
    Ok(())
}

fn write_field_name(field: &Bound<'_, PyAny>, out: &mut StreamWriter) -> PyResult<()> {
    let field = field.cast::<PyString>()?;
    match field.to_str() {
        Ok(text) => {
            out.field(text);
        }
        Err(_) => {
            let bytes = field.call_method1("encode", ("utf-8", "surrogatepass"))?;
            out.field(&String::from_utf8_lossy(bytes.cast::<PyBytes>()?.as_bytes()));
        }
    }
    Ok(())
}
