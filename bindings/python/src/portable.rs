//! The portable result codec for Python values (`hitsave_host::portable`).
//!
//! Only values that come back exactly are portable: `None`, `bool`, `int`,
//! `float`, `str`, `bytes`, `list`, `dict` (exact types, not subclasses) and
//! numpy arrays of the supported dtypes. Anything else (a tuple would come
//! back as a list) is stored with pickle instead.

use hitsave_core::canonical::MAX_DEPTH;
use hitsave_host::HitSaveError;
use hitsave_host::payload::{Part, PartsWriter};
use hitsave_host::portable::{Build, decode};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// A result being encoded as parts: its own bytes, and large array and
/// `bytes` data by a buffer export (`hitsave_host::payload`).
pub type ResultWriter = PartsWriter<PyUntypedBuffer>;

/// A part's bytes.
pub fn part_bytes(part: &Part<PyUntypedBuffer>) -> &[u8] {
    match part {
        Part::Bytes(bytes) => bytes,
        Part::View(buffer) => buffer_bytes(buffer),
    }
}

/// The memory a buffer export covers.
fn buffer_bytes(buffer: &PyUntypedBuffer) -> &[u8] {
    if buffer.len_bytes() == 0 {
        return &[];
    }
    // SAFETY: a contiguous export (checked where made), alive while `buffer` is.
    unsafe { std::slice::from_raw_parts(buffer.buf_ptr() as *const u8, buffer.len_bytes()) }
}

/// A contiguous buffer export of `value`.
pub fn contiguous_buffer(value: &Bound<'_, PyAny>) -> PyResult<PyUntypedBuffer> {
    let view = PyUntypedBuffer::get(value)?;
    if !view.is_c_contiguous() && !view.is_fortran_contiguous() {
        return Err(pyo3::exceptions::PyValueError::new_err("a result buffer is not contiguous"));
    }
    Ok(view)
}

/// Writes `value` as a portable stream; `false` when it has no portable form.
pub fn encode(value: &Bound<'_, PyAny>, out: &mut ResultWriter, depth: usize) -> PyResult<bool> {
    encode_in(value, out, depth, &mut std::collections::HashSet::new())
}

/// [`encode`], with the lists, dicts and arrays written so far (by address:
/// the result holds them all while it is encoded). One met twice (`[a, a]`,
/// or a list holding itself) has no portable form: it would come back as
/// two copies, and code appending to `r[0]` would no longer see `r[1]`
/// change. Pickle keeps such sharing.
fn encode_in(
    value: &Bound<'_, PyAny>,
    out: &mut ResultWriter,
    depth: usize,
    seen: &mut std::collections::HashSet<usize>,
) -> PyResult<bool> {
    if depth >= MAX_DEPTH {
        return Ok(false);
    }
    let shared = value.cast_exact::<PyList>().is_ok() || value.cast_exact::<PyDict>().is_ok() || is_numpy_array(value);
    if shared && !seen.insert(value.as_ptr() as usize) {
        return Ok(false);
    }
    if value.is_none() {
        out.null();
    } else if let Ok(flag) = value.cast_exact::<PyBool>() {
        out.bool(flag.is_true());
    } else if let Ok(int) = value.cast_exact::<PyInt>() {
        crate::walk::write_int(int, out)?;
    } else if let Ok(float) = value.cast_exact::<PyFloat>() {
        out.float(float.value());
    } else if let Ok(text) = value.cast_exact::<PyString>() {
        match text.to_str() {
            // Longer than a stream's str item (4 GiB): pickled instead.
            Ok(text) if text.len() <= hitsave_core::stream::StreamWriter::MAX_LEN => out.str(text),
            _ => return Ok(false),
        };
    } else if let Ok(bytes) = value.cast_exact::<PyBytes>() {
        if !out.bytes(bytes.as_bytes(), || contiguous_buffer(bytes))? {
            return Ok(false);
        }
    } else if let Ok(list) = value.cast_exact::<PyList>() {
        let items: Vec<Bound<'_, PyAny>> = list.iter().collect();
        out.list(items.len());
        for item in &items {
            if !encode_in(item, out, depth + 1, seen)? {
                return Ok(false);
            }
        }
    } else if let Ok(dict) = value.cast_exact::<PyDict>() {
        let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = dict.iter().collect();
        out.map(items.len());
        for (key, item) in &items {
            if !encode_in(key, out, depth + 1, seen)? || !encode_in(item, out, depth + 1, seen)? {
                return Ok(false);
            }
        }
    } else if is_numpy_array(value) {
        return encode_array(value, out);
    } else {
        return Ok(false);
    }
    Ok(true)
}

fn is_numpy_array(value: &Bound<'_, PyAny>) -> bool {
    let kind = value.get_type();
    kind.name().is_ok_and(|n| n.to_str().is_ok_and(|n| n == "ndarray"))
        && kind.module().is_ok_and(|m| m.to_str().is_ok_and(|m| m == "numpy"))
}

fn encode_array(value: &Bound<'_, PyAny>, out: &mut ResultWriter) -> PyResult<bool> {
    let dtype = value.getattr("dtype")?;
    let name: String = dtype.getattr("name")?.extract()?;
    let byteorder: String = dtype.getattr("byteorder")?.extract()?;
    if hitsave_core::stream::dtype_size(&name).is_none() || byteorder == ">" {
        return Ok(false);
    }
    let contiguous = value.py().import("numpy")?.call_method1("ascontiguousarray", (value,))?;
    let shape: Vec<u64> = value.getattr("shape")?.extract()?;
    let flat = contiguous.call_method1("reshape", (-1,))?;
    let buffer = PyUntypedBuffer::get(&flat)?;
    // SAFETY: the export keeps the memory alive; it moves into the writer
    // (kept in place) or is dropped after the data was copied.
    let data = unsafe { std::slice::from_raw_parts(buffer.buf_ptr() as *const u8, buffer.len_bytes()) };
    out.array(&name, &shape, data, || Ok::<_, PyErr>(buffer))?;
    Ok(true)
}

/// A `PyErr` that can come from a host error.
pub struct BuildError(pub PyErr);

impl From<HitSaveError> for BuildError {
    fn from(error: HitSaveError) -> Self {
        Self(crate::to_py_err(error))
    }
}

impl From<PyErr> for BuildError {
    fn from(error: PyErr) -> Self {
        Self(error)
    }
}

/// Rebuilds Python values.
pub struct PyBuilder<'py> {
    pub py: Python<'py>,
    /// A memory-mapped result being decoded and the start of its bytes: large
    /// aligned arrays become numpy views of the mapping instead of copies.
    pub mapped: Option<(Bound<'py, PyAny>, usize)>,
}

impl<'py> Build for PyBuilder<'py> {
    type Value = Bound<'py, PyAny>;
    type Error = BuildError;

    fn null(&mut self) -> Result<Self::Value, BuildError> {
        Ok(self.py.None().into_bound(self.py))
    }
    fn bool(&mut self, value: bool) -> Result<Self::Value, BuildError> {
        Ok(PyBool::new(self.py, value).to_owned().into_any())
    }
    fn int(&mut self, value: i64) -> Result<Self::Value, BuildError> {
        Ok(value.into_pyobject(self.py).map_err(PyErr::from)?.into_any())
    }
    fn bigint(&mut self, negative: bool, magnitude: &[u8]) -> Result<Self::Value, BuildError> {
        let int_type = self.py.get_type::<PyInt>();
        let value = int_type.call_method1("from_bytes", (PyBytes::new(self.py, magnitude), "little"))?;
        Ok(if negative { value.call_method0("__neg__")? } else { value })
    }
    fn float(&mut self, value: f64) -> Result<Self::Value, BuildError> {
        Ok(PyFloat::new(self.py, value).into_any())
    }
    fn str(&mut self, value: &str) -> Result<Self::Value, BuildError> {
        Ok(PyString::new(self.py, value).into_any())
    }
    fn bytes(&mut self, value: &[u8]) -> Result<Self::Value, BuildError> {
        Ok(PyBytes::new(self.py, value).into_any())
    }
    fn list(&mut self, items: Vec<Self::Value>) -> Result<Self::Value, BuildError> {
        Ok(PyList::new(self.py, items)?.into_any())
    }
    fn map(&mut self, entries: Vec<(Self::Value, Self::Value)>) -> Result<Self::Value, BuildError> {
        let dict = PyDict::new(self.py);
        for (key, value) in entries {
            // Another language may key a map by a list; a Python dict needs a tuple.
            let key = match key.cast::<PyList>() {
                Ok(list) => PyTuple::new(self.py, list.iter())?.into_any(),
                Err(_) => key,
            };
            dict.set_item(key, value)?;
        }
        Ok(dict.into_any())
    }
    fn array(&mut self, dtype: &str, shape: &[u64], data: &[u8]) -> Result<Self::Value, BuildError> {
        let numpy = self.py.import("numpy")?;
        if let Some((owner, start)) = &self.mapped
            && let Some(offset) = hitsave_host::portable::view_offset(*start, dtype, data)
        {
            // A view of the copy-on-write mapping: loaded lazily by the OS,
            // writable, and writes stay private to this result.
            let item = hitsave_core::stream::dtype_size(dtype).unwrap_or(1) as usize;
            let kwargs = pyo3::types::PyDict::new(self.py);
            kwargs.set_item("count", data.len() / item)?;
            kwargs.set_item("offset", offset)?;
            let flat = numpy.call_method("frombuffer", (owner, dtype), Some(&kwargs))?;
            return Ok(flat.call_method1("reshape", (shape.to_vec(),))?);
        }
        let flat = numpy.call_method1("frombuffer", (PyBytes::new(self.py, data), dtype))?;
        // A writable array of its own, as the function returned.
        Ok(flat.call_method1("reshape", (shape.to_vec(),))?.call_method0("copy")?)
    }
}

/// Rebuilds a portable result held in memory.
pub fn decode_value<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    decode(bytes, &mut PyBuilder { py, mapped: None }).map_err(|BuildError(err)| err)
}

/// Rebuilds a memory-mapped portable result; its large arrays are views of `owner`.
pub fn decode_mapped<'py>(py: Python<'py>, owner: &Bound<'py, crate::Mapped>) -> PyResult<Bound<'py, PyAny>> {
    let bytes = owner.get().bytes();
    let mut builder = PyBuilder { py, mapped: Some((owner.clone().into_any(), bytes.as_ptr() as usize)) };
    decode(bytes, &mut builder).map_err(|BuildError(err)| err)
}
