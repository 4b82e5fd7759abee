//! Python values to the value stream (`docs/spec/values.md`), in Rust.
//!
//! Only translation happens here: what a value *means* (int/float equality,
//! sorting, errors with paths) is decided by the core. A value this walker
//! cannot describe faithfully is written as an `unhashable` token naming its
//! type, and the core answers with a typed error carrying the path.

use hitsave_core::canonical::MAX_DEPTH;
use hitsave_core::stream::StreamWriter;
use hitsave_host::hash;
use pyo3::buffer::PyUntypedBuffer;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple,
};

/// Writes one Python value.
pub fn walk(value: &Bound<'_, PyAny>, out: &mut StreamWriter, depth: usize) -> PyResult<()> {
    if depth == 0 {
        // A walk of its own (Python code run during a walk, such as a
        // `__getstate__`, may walk other arguments): its own path.
        let outer = PATH.with(|path| std::mem::take(&mut *path.borrow_mut()));
        let walked = walk_value(value, out, 0);
        PATH.with(|path| *path.borrow_mut() = outer);
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
    if value.is_none() {
        out.null();
    } else if let Ok(flag) = value.cast_exact::<PyBool>() {
        out.bool(flag.is_true());
    } else if let Ok(int) = value.cast::<PyInt>() {
        write_int(int, out)?;
    } else if let Ok(float) = value.cast::<PyFloat>() {
        out.float(float.value());
    } else if let Ok(text) = value.cast::<PyString>() {
        match text.to_str() {
            Ok(text) => {
                out.str(text);
            }
            // Lone surrogates: pass the bytes through so the core reports invalid UTF-8 with the path.
            Err(_) => {
                let bytes = text.call_method1("encode", ("utf-8", "surrogatepass"))?;
                out.str_bytes(bytes.cast::<PyBytes>()?.as_bytes());
            }
        }
    } else if let Ok(bytes) = value.cast::<PyBytes>() {
        write_buffer_bytes(py, bytes.as_bytes(), out);
    } else if value.is_instance_of::<PyByteArray>() || type_is(value, "builtins", "memoryview") {
        write_contiguous_bytes(value, out)?;
    } else if let Some(_on_path) = Ancestors::enter(value, out)? {
        walk_container(value, out, depth)?;
    }
    Ok(())
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
    if let Ok(tuple) = value.cast::<PyTuple>() {
        if let Ok(fields) = value.getattr("_fields")
            && fields.is_instance_of::<PyTuple>()
        {
            // A named tuple: a record of its type and fields.
            let fields = fields.cast::<PyTuple>()?;
            out.record(&type_name(value)?, fields.len());
            for (field, item) in fields.iter().zip(tuple.iter()) {
                out.field(field.cast::<PyString>()?.to_str()?);
                walk(&item, out, depth + 1)?;
            }
        } else {
            out.list(tuple.len());
            for item in tuple.iter() {
                walk(&item, out, depth + 1)?;
            }
        }
    } else if let Ok(list) = value.cast::<PyList>() {
        // A snapshot, so a list changed by another thread cannot tear the stream.
        let items: Vec<Bound<'_, PyAny>> = list.iter().collect();
        out.list(items.len());
        for item in &items {
            walk(item, out, depth + 1)?;
        }
    } else if let Ok(dict) = value.cast::<PyDict>() {
        let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = dict.iter().collect();
        out.map(items.len());
        for (key, item) in &items {
            walk(key, out, depth + 1)?;
            walk(item, out, depth + 1)?;
        }
    } else if value.is_instance_of::<PySet>() || value.is_instance_of::<PyFrozenSet>() {
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

fn type_is(value: &Bound<'_, PyAny>, module: &str, name: &str) -> bool {
    let kind = value.get_type();
    kind.name().is_ok_and(|n| n.to_str().is_ok_and(|n| n == name))
        && kind.module().is_ok_and(|m| m.to_str().is_ok_and(|m| m == module))
}

/// `module.QualName` of a value's type.
pub fn type_name(value: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(value.get_type().fully_qualified_name()?.to_str()?.to_owned())
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

fn walk_numpy_array(value: &Bound<'_, PyAny>, out: &mut StreamWriter) -> PyResult<bool> {
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
        return walk_numpy_array(&contiguous, out);
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

/// Everything that is not a builtin container or scalar.
fn walk_object(value: &Bound<'_, PyAny>, out: &mut StreamWriter, depth: usize) -> PyResult<()> {
    let py = value.py();
    let kind = value.get_type();
    let module = kind.module().map(|m| m.to_string()).unwrap_or_default();
    let name = kind.name().map(|n| n.to_string()).unwrap_or_default();

    if module == "numpy" {
        if name == "ndarray" {
            if walk_numpy_array(value, out)? {
                return Ok(());
            }
            // Big-endian or object arrays: make them little-endian numbers, or say why not.
            let dtype_kind: String = value.getattr("dtype")?.getattr("kind")?.extract()?;
            if "biufc".contains(dtype_kind.as_str()) {
                let swapped =
                    value.call_method1("astype", (value.getattr("dtype")?.call_method1("newbyteorder", ("<",))?,))?;
                if walk_numpy_array(&swapped, out)? {
                    return Ok(());
                }
            }
            out.unhashable(&format!("numpy.ndarray of dtype {}", value.getattr("dtype")?.str()?));
            return Ok(());
        }
        // numpy scalars: their Python value.
        if value.hasattr("item")? && value.getattr("ndim").and_then(|n| n.extract::<usize>()).is_ok_and(|n| n == 0) {
            return walk(&value.call_method0("item")?, out, depth);
        }
    }
    if module == "pandas" || module.starts_with("pandas.") {
        let described = py.import("hitsave._pandas")?.call_method1("state", (value,))?;
        if !described.is_none() {
            let (record, fields): (String, Bound<'_, PyDict>) = described.extract()?;
            return walk_record(&record, &fields, out, depth);
        }
    }
    let hitsave_types = py.import("hitsave._types")?;
    if value.is_instance(&hitsave_types.getattr("File")?)? {
        let path: String = value.getattr("path")?.extract()?;
        return hash::write_file(out, std::path::Path::new(&path)).map_err(crate::to_py_err);
    }
    if value.is_instance(&py.import("pathlib")?.getattr("PurePath")?)? {
        out.path(&value.str()?.to_string());
        return Ok(());
    }
    if value.is_instance(&py.import("enum")?.getattr("Enum")?)? {
        out.record(&type_name(value)?, 1).field("name");
        walk(&value.getattr("name")?, out, depth + 1)?;
        return Ok(());
    }
    if let Ok(fields) = value.getattr("__dataclass_fields__") {
        let fields: Vec<String> = fields.cast::<PyDict>()?.keys().iter().map(|k| k.to_string()).collect();
        out.record(&type_name(value)?, fields.len());
        for field in &fields {
            out.field(field);
            walk(&value.getattr(field.as_str())?, out, depth + 1)?;
        }
        return Ok(());
    }
    // Functions and classes are identified by their code; that analysis lives in `hitsave._code`.
    let code = py.import("hitsave._code")?;
    if code.call_method1("is_code_object", (value,))?.is_truthy()? {
        let fingerprint: String = code.call_method1("fingerprint_of", (value,))?.extract()?;
        let digest = hitsave_core::Digest::parse(&fingerprint).map_err(|err| crate::to_py_err(err.into()))?;
        out.function(&digest);
        return Ok(());
    }
    // Other objects: by their pickled state, when it is a dict of fields.
    let state = value.call_method0("__getstate__");
    match state {
        Ok(state) if state.is_instance_of::<PyDict>() => {
            walk_record(&type_name(value)?, state.cast::<PyDict>()?, out, depth)?;
        }
        Ok(state) if state.is_instance_of::<PyTuple>() && !state.cast::<PyTuple>()?.is_empty() => {
            // (dict or None, slots dict) from objects with __slots__.
            let state = state.cast::<PyTuple>()?;
            let mut fields: Vec<(String, Bound<'_, PyAny>)> = Vec::new();
            for part in state.iter() {
                if let Ok(part) = part.cast::<PyDict>() {
                    for (field, item) in part.iter() {
                        fields.push((field.cast::<PyString>()?.to_str()?.to_owned(), item));
                    }
                }
            }
            out.record(&type_name(value)?, fields.len());
            for (field, item) in &fields {
                out.field(field);
                walk(item, out, depth + 1)?;
            }
        }
        // A user object with no attributes has a `None` state but a `__dict__`: a record without fields.
        Ok(state) if state.is_none() && value.hasattr("__dict__")? => {
            out.record(&type_name(value)?, 0);
        }
        _ => {
            out.unhashable(&type_name(value)?);
        }
    }
    Ok(())
}

/// A record named `name` whose fields are the (string) keys of `fields`, in order.
fn walk_record(name: &str, fields: &Bound<'_, PyDict>, out: &mut StreamWriter, depth: usize) -> PyResult<()> {
    let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = fields.iter().collect();
    out.record(name, items.len());
    for (field, item) in &items {
        out.field(field.cast::<PyString>()?.to_str()?);
        walk(item, out, depth + 1)?;
    }
    Ok(())
}
