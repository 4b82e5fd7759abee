//! What a Python code object reads, straight from its bytecode.
//!
//! `dis.get_instructions` builds an object per instruction (about 80 µs for
//! a small function); a function's first call reads every function it
//! reaches, so the analysis reads the bytecode here instead. How each
//! instruction stores its argument differs between Python versions, so this
//! reader knows nothing of its own: `hitsave._code` learns the table from
//! `dis` on probe code, checks that it reads the probe exactly as `dis`
//! does (else it keeps using `dis`), and hands it over.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple, PyType};

/// What an opcode is to the reader (`Kind` in `hitsave._code`).
const OTHER: u8 = 0;
const GLOBAL: u8 = 1; // LOAD_GLOBAL, LOAD_NAME
const ATTR: u8 = 2; // LOAD_ATTR, LOAD_METHOD
const IMPORT_NAME: u8 = 3;
const IMPORT_FROM: u8 = 4;
const CONST: u8 = 5; // LOAD_CONST
const SMALL_INT: u8 = 6; // LOAD_SMALL_INT (3.14)
const STORE: u8 = 7; // STORE_FAST, STORE_NAME, STORE_DEREF, STORE_GLOBAL
const EXTENDED_ARG: u8 = 8;
const CACHE: u8 = 9;

/// A bytecode reader for this interpreter: per opcode, its kind, how far its
/// argument is shifted (a flag bit below the name index) and how many inline
/// cache entries follow it.
#[pyclass(frozen, module = "hitsave._native")]
pub struct BytecodeReader {
    kinds: [u8; 256],
    shifts: [u8; 256],
    caches: [u8; 256],
    code_type: Py<PyType>,
}

#[pymethods]
impl BytecodeReader {
    #[new]
    fn new(kinds: Vec<u8>, shifts: Vec<u8>, caches: Vec<u8>, code_type: Py<PyType>) -> PyResult<Self> {
        let table = |values: Vec<u8>| -> PyResult<[u8; 256]> {
            values.try_into().map_err(|_| pyo3::exceptions::PyValueError::new_err("a reader table has 256 entries"))
        };
        Ok(Self { kinds: table(kinds)?, shifts: table(shifts)?, caches: table(caches)?, code_type })
    }

    /// What `code` and the code objects nested in it read: `("global", name,
    /// [attr, …])` for a global (or module-level name) and the attribute
    /// loads right after it, `("import", module, level, [name, …])` for an
    /// `import` and the names a `from … import` takes.
    fn references<'py>(&self, code: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let py = code.py();
        let out = PyList::empty(py);
        let mut stack = vec![code.clone()];
        let code_type = self.code_type.bind(py);
        while let Some(code) = stack.pop() {
            let raw = code.getattr("co_code")?;
            let raw = raw.cast::<PyBytes>()?;
            let names = code.getattr("co_names")?;
            let names = names.cast::<PyTuple>()?;
            let consts = code.getattr("co_consts")?;
            let consts = consts.cast::<PyTuple>()?;
            let ops = self.ops(raw.as_bytes());
            let name = |arg: u32, op: u8| -> PyResult<Bound<'py, PyAny>> {
                names.get_item((arg >> self.shifts[op as usize]) as usize)
            };
            for (index, &(op, arg)) in ops.iter().enumerate() {
                match self.kinds[op as usize] {
                    GLOBAL => {
                        let attrs = PyList::empty(py);
                        for &(next, next_arg) in &ops[index + 1..] {
                            if self.kinds[next as usize] != ATTR {
                                break;
                            }
                            attrs.append(name(next_arg, next)?)?;
                        }
                        out.append((PyString::new(py, "global"), name(arg, op)?, attrs))?;
                    }
                    IMPORT_NAME => {
                        let level: Bound<'py, PyAny> = match index.checked_sub(2).map(|at| ops[at]) {
                            Some((before, before_arg)) if self.kinds[before as usize] == CONST => {
                                consts.get_item(before_arg as usize)?
                            }
                            Some((before, before_arg)) if self.kinds[before as usize] == SMALL_INT => {
                                before_arg.into_pyobject(py)?.into_any()
                            }
                            _ => 0u32.into_pyobject(py)?.into_any(),
                        };
                        let taken = PyList::empty(py);
                        for &(next, next_arg) in &ops[index + 1..] {
                            match self.kinds[next as usize] {
                                IMPORT_FROM => taken.append(name(next_arg, next)?)?,
                                STORE => {}
                                _ => break,
                            }
                        }
                        out.append((PyString::new(py, "import"), name(arg, op)?, level, taken))?;
                    }
                    _ => {}
                }
            }
            // Nested code (lambdas, comprehensions, inner functions), in order.
            for item in consts.iter().collect::<Vec<_>>().into_iter().rev() {
                if item.is_instance(code_type)? {
                    stack.push(item);
                }
            }
        }
        Ok(out)
    }
}

impl BytecodeReader {
    /// `(opcode, argument)` of each instruction: `EXTENDED_ARG` folded into
    /// the argument, inline caches skipped.
    fn ops(&self, raw: &[u8]) -> Vec<(u8, u32)> {
        let mut ops = Vec::with_capacity(raw.len() / 4);
        let mut offset = 0;
        let mut extended: u32 = 0;
        while offset + 1 < raw.len() {
            let op = raw[offset];
            let arg = u32::from(raw[offset + 1]) | extended;
            offset += 2 + 2 * usize::from(self.caches[op as usize]);
            match self.kinds[op as usize] {
                EXTENDED_ARG => extended = arg << 8,
                CACHE => extended = 0,
                OTHER | GLOBAL | ATTR | IMPORT_NAME | IMPORT_FROM | CONST | SMALL_INT | STORE => {
                    extended = 0;
                    ops.push((op, arg));
                }
                _ => extended = 0,
            }
        }
        ops
    }
}
