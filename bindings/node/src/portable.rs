//! The portable result codec for JavaScript values (`hitsave_host::portable`).
//!
//! Only values that come back exactly are portable (`docs/node.md` lists
//! them): `null`, booleans, numbers, bigints beyond the safe-integer range,
//! well-formed strings, Buffers, TypedArrays, `NDArray`s, dense arrays, plain
//! objects, and Maps whose keys are not all strings. Anything else
//! (`undefined`, a Date, a class instance…) is stored with V8 serialization,
//! which only Node reads.

use hitsave_core::canonical::MAX_DEPTH;
use hitsave_host::HitSaveError;
use hitsave_host::payload::PartsWriter;
use hitsave_host::portable::{Build, decode};
use napi::{Result, sys};

use crate::context::Context;
use crate::js::{Js, V};
use crate::walk::{dtype_of, write_bigint, write_number};

const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// A result being encoded as parts: its own bytes, and large TypedArray,
/// `NDArray` and Buffer data by the JS value holding it
/// (`hitsave_host::payload`), which `put` keeps referenced until stored.
pub type ResultWriter = PartsWriter<V>;

/// Writes `value` as a portable stream; `false` when it has no exact portable form.
pub fn encode(js: Js, ctx: &Context, value: V, out: &mut ResultWriter, depth: usize) -> Result<bool> {
    encode_in(js, ctx, value, out, depth, &mut Met::default())
}

/// The objects of a result written so far, in a `Map` made at the first.
/// One met twice (`[a, a]`, or an array holding itself) has no portable
/// form: it would come back as two copies, and code pushing to `r[0]` would
/// no longer see `r[1]` change. v8's serializer keeps such sharing.
#[derive(Default)]
struct Met {
    map: Option<(V, V, V)>,
}

impl Met {
    /// `true` when `value` is met for the first time (and recorded).
    fn first(&mut self, js: Js, ctx: &Context, value: V) -> Result<bool> {
        let (map, has, add) = match self.map {
            Some(map) => map,
            None => {
                let map = js.new_instance(js.deref(ctx.set)?, &[])?;
                let made = (map, js.get_named(map, "has")?, js.get_named(map, "add")?);
                self.map = Some(made);
                made
            }
        };
        if js.bool_value(js.call(map, has, &[value])?)? {
            return Ok(false);
        }
        js.call(map, add, &[value])?;
        Ok(true)
    }
}

fn encode_in(js: Js, ctx: &Context, value: V, out: &mut ResultWriter, depth: usize, met: &mut Met) -> Result<bool> {
    if depth >= MAX_DEPTH {
        return Ok(false);
    }
    match js.typeof_(value)? {
        sys::ValueType::napi_null => {
            out.null();
        }
        sys::ValueType::napi_boolean => {
            out.bool(js.bool_value(value)?);
        }
        sys::ValueType::napi_number => write_number(out, js.f64_value(value)?),
        sys::ValueType::napi_bigint => {
            let (negative, words) = js.bigint_words(value)?;
            // A bigint in the safe range would come back as a number.
            let small = words.len() <= 1 && (words.first().copied().unwrap_or(0) as f64) <= MAX_SAFE;
            if small {
                return Ok(false);
            }
            write_bigint(out, negative, &words);
        }
        sys::ValueType::napi_string => {
            let units = js.utf16(value)?;
            match String::from_utf16(&units) {
                Ok(text) => out.str(&text),
                Err(_) => return Ok(false),
            };
        }
        sys::ValueType::napi_object => {
            if !met.first(js, ctx, value)? {
                return Ok(false);
            }
            return encode_object(js, ctx, value, out, depth, met);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn encode_object(js: Js, ctx: &Context, value: V, out: &mut ResultWriter, depth: usize, met: &mut Met) -> Result<bool> {
    if js.is_array(value)? {
        let len = js.array_len(value)?;
        // A list comes back as a plain Array of its elements: a subclass, or
        // an array with properties of its own (a RegExp match's `index`),
        // would come back as something else.
        if !js.strict_equals(js.prototype(value)?, js.deref(ctx.array_prototype)?)?
            || crate::walk::array_extras(js, ctx, value, len)?.is_some()
        {
            return Ok(false);
        }
        out.list(len as usize);
        for index in 0..len {
            if !js.has_element(value, index)? || !encode_in(js, ctx, js.element(value, index)?, out, depth + 1, met)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if js.is(value, sys::napi_is_typedarray)? {
        let (kind, len, address) = js.typedarray_info(value)?;
        // Properties of its own would not come back.
        if crate::walk::array_extras(js, ctx, value, len as u32)?.is_some() {
            return Ok(false);
        }
        let prototype = js.prototype(value)?;
        if js.instance_of(value, js.deref(ctx.buffer)?)? {
            // `false` over 4 GiB (no portable form: v8 serialization instead).
            return out.bytes(slice(address, len), || Ok::<_, napi::Error>(value));
        }
        // Exactly a TypedArray of a supported type (not a subclass or a clamped array).
        let Some(dtype) = dtype_of(kind) else { return Ok(false) };
        if kind == sys::TypedarrayType::uint8_clamped_array
            || crate::walk::constructor_name(js, prototype)? != typed_array_name(kind)
        {
            return Ok(false);
        }
        let size = hitsave_core::stream::dtype_size(dtype).unwrap_or(1) as usize;
        out.array(dtype, &[len as u64], slice(address, len * size), || Ok::<_, napi::Error>(value))?;
        return Ok(true);
    }
    if js.instance_of(value, js.deref(ctx.ndarray)?)? {
        let dtype = js.string(js.get_named(value, "dtype")?)?;
        let shape = js.get_named(value, "shape")?;
        // A one-dimensional NDArray of a TypedArray type would come back as that TypedArray.
        if js.array_len(shape)? == 1 && typed_array_kind(&dtype).is_some() {
            return Ok(false);
        }
        let data = js.get_named(value, "data")?;
        let (kind, count, address) = js.typedarray_info(data)?;
        let size = dtype_of(kind).and_then(hitsave_core::stream::dtype_size).unwrap_or(1) as usize;
        let mut dims = Vec::new();
        for index in 0..js.array_len(shape)? {
            dims.push(js.f64_value(js.element(shape, index)?)? as u64);
        }
        let Some(item) = hitsave_core::stream::dtype_size(&dtype) else { return Ok(false) };
        if dims.iter().try_fold(item, |acc, &dim| acc.checked_mul(dim)) != Some((count * size) as u64) {
            return Ok(false);
        }
        out.array(&dtype, &dims, slice(address, count * size), || Ok::<_, napi::Error>(data))?;
        return Ok(true);
    }
    let prototype = js.prototype(value)?;
    if js.strict_equals(prototype, js.deref(ctx.object_prototype)?)? {
        // Properties under symbol keys have no portable form (and a map of
        // the string keys would come back without them).
        if js.has_symbol_keys(value)? {
            return Ok(false);
        }
        let keys = js.own_keys(value)?;
        if crate::walk::hidden_keys(js, value, keys)?.is_some() {
            return Ok(false);
        }
        let len = js.array_len(keys)?;
        out.map(len as usize);
        for index in 0..len {
            let key = js.element(keys, index)?;
            if !encode_in(js, ctx, key, out, depth + 1, met)?
                || !encode_in(js, ctx, js.get(value, key)?, out, depth + 1, met)?
            {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if js.strict_equals(prototype, js.get_named(js.deref(ctx.map)?, "prototype")?)? {
        // Properties of its own would not come back.
        if js.array_len(js.all_own_keys(value)?)? > 0 {
            return Ok(false);
        }
        let pairs = js.call(js.undefined()?, js.deref(ctx.array_from)?, &[value])?;
        let len = js.array_len(pairs)?;
        let mut all_strings = true;
        for index in 0..len {
            let key = js.element(js.element(pairs, index)?, 0)?;
            all_strings &= js.typeof_(key)? == sys::ValueType::napi_string;
        }
        // A Map keyed by strings only would come back as a plain object.
        if all_strings && len > 0 {
            return Ok(false);
        }
        out.map(len as usize);
        for index in 0..len {
            let pair = js.element(pairs, index)?;
            if !encode_in(js, ctx, js.element(pair, 0)?, out, depth + 1, met)?
                || !encode_in(js, ctx, js.element(pair, 1)?, out, depth + 1, met)?
            {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    Ok(false)
}

fn slice<'a>(address: *const u8, len: usize) -> &'a [u8] {
    if len == 0 { &[] } else { unsafe { std::slice::from_raw_parts(address, len) } }
}

pub(crate) fn typed_array_name(kind: sys::napi_typedarray_type) -> &'static str {
    use sys::TypedarrayType as T;
    match kind {
        T::int8_array => "Int8Array",
        T::uint8_array => "Uint8Array",
        T::uint8_clamped_array => "Uint8ClampedArray",
        T::int16_array => "Int16Array",
        T::uint16_array => "Uint16Array",
        T::int32_array => "Int32Array",
        T::uint32_array => "Uint32Array",
        T::float32_array => "Float32Array",
        T::float64_array => "Float64Array",
        T::bigint64_array => "BigInt64Array",
        T::biguint64_array => "BigUint64Array",
        _ => "",
    }
}

/// The TypedArray type that holds a dtype, if JavaScript has one.
pub fn typed_array_kind(dtype: &str) -> Option<sys::napi_typedarray_type> {
    use sys::TypedarrayType as T;
    Some(match dtype {
        "int8" => T::int8_array,
        "uint8" => T::uint8_array,
        "int16" => T::int16_array,
        "uint16" => T::uint16_array,
        "int32" => T::int32_array,
        "uint32" => T::uint32_array,
        "float32" => T::float32_array,
        "float64" => T::float64_array,
        "int64" => T::bigint64_array,
        "uint64" => T::biguint64_array,
        _ => return None,
    })
}

/// A JavaScript error or a host error met while building values.
pub enum BuildError {
    Js(napi::Error),
    Host(HitSaveError),
}

impl From<HitSaveError> for BuildError {
    fn from(error: HitSaveError) -> Self {
        Self::Host(error)
    }
}

impl From<napi::Error> for BuildError {
    fn from(error: napi::Error) -> Self {
        Self::Js(error)
    }
}

/// Rebuilds JavaScript values.
pub struct JsBuilder<'c> {
    pub js: Js,
    pub ctx: &'c Context,
    /// A memory-mapped result being decoded, as an external `ArrayBuffer`,
    /// and the address its bytes start at: large aligned arrays become
    /// TypedArrays over it instead of copies.
    pub mapped: Option<(V, usize)>,
}

impl Build for JsBuilder<'_> {
    type Value = V;
    type Error = BuildError;

    fn null(&mut self) -> std::result::Result<V, BuildError> {
        Ok(self.js.null()?)
    }
    fn bool(&mut self, value: bool) -> std::result::Result<V, BuildError> {
        Ok(self.js.boolean(value)?)
    }
    fn int(&mut self, value: i64) -> std::result::Result<V, BuildError> {
        if (value as f64).abs() <= MAX_SAFE {
            Ok(self.js.number(value as f64)?)
        } else {
            Ok(self.js.bigint(value < 0, &[value.unsigned_abs()])?)
        }
    }
    fn bigint(&mut self, negative: bool, magnitude: &[u8]) -> std::result::Result<V, BuildError> {
        let words: Vec<u64> = magnitude
            .chunks(8)
            .map(|chunk| {
                let mut le = [0u8; 8];
                le[..chunk.len()].copy_from_slice(chunk);
                u64::from_le_bytes(le)
            })
            .collect();
        Ok(self.js.bigint(negative, &words)?)
    }
    fn float(&mut self, value: f64) -> std::result::Result<V, BuildError> {
        Ok(self.js.number(value)?)
    }
    fn str(&mut self, value: &str) -> std::result::Result<V, BuildError> {
        Ok(self.js.str(value)?)
    }
    fn bytes(&mut self, value: &[u8]) -> std::result::Result<V, BuildError> {
        let js = self.js;
        // Large bytes of a memory-mapped result: a Buffer over the mapping
        // (paged in lazily, writes private to this result), not a copy that
        // holds the event loop for a large result.
        if let Some((mapping, start)) = self.mapped
            && value.len() >= hitsave_core::stream::ARRAY_ALIGN_MIN
            && (value.as_ptr() as usize) >= start
        {
            let offset = value.as_ptr() as usize - start;
            let buffer_class = js.deref(self.ctx.buffer)?;
            let from = js.get_named(buffer_class, "from")?;
            let view =
                js.call(buffer_class, from, &[mapping, js.number(offset as f64)?, js.number(value.len() as f64)?])?;
            return Ok(view);
        }
        Ok(js.buffer(value)?)
    }
    fn list(&mut self, items: Vec<V>) -> std::result::Result<V, BuildError> {
        Ok(self.js.array_of(&items)?)
    }
    fn map(&mut self, entries: Vec<(V, V)>) -> std::result::Result<V, BuildError> {
        let js = self.js;
        let mut keys_are_strings = true;
        for (key, _) in &entries {
            keys_are_strings &= js.typeof_(*key)? == sys::ValueType::napi_string && js.string(*key)? != "__proto__";
        }
        if keys_are_strings {
            let object = js.object()?;
            for (key, value) in entries {
                js.set(object, key, value)?;
            }
            return Ok(object);
        }
        let pairs: Vec<V> =
            entries.into_iter().map(|(key, value)| js.array_of(&[key, value])).collect::<Result<_>>()?;
        let pairs = js.array_of(&pairs)?;
        Ok(js.new_instance(js.deref(self.ctx.map)?, &[pairs])?)
    }
    fn array(&mut self, dtype: &str, shape: &[u64], data: &[u8]) -> std::result::Result<V, BuildError> {
        let js = self.js;
        let item = hitsave_core::stream::dtype_size(dtype).unwrap_or(1) as usize;
        let (kind, len) = match typed_array_kind(dtype) {
            Some(kind) => (kind, data.len() / item),
            // No TypedArray of its own: the carrier an NDArray of that dtype
            // is written with, so it comes back as it was stored.
            None => match dtype {
                "float16" => (sys::TypedarrayType::uint16_array, data.len() / 2),
                "complex64" => (sys::TypedarrayType::float32_array, data.len() / 4),
                "complex128" => (sys::TypedarrayType::float64_array, data.len() / 8),
                _ => (sys::TypedarrayType::uint8_array, data.len()),
            },
        };
        let view = self.mapped.and_then(|(buffer, start)| {
            hitsave_host::portable::view_offset(start, dtype, data).map(|offset| (buffer, offset))
        });
        let typed = match view {
            // A view of the copy-on-write mapping: paged in lazily, writable,
            // writes stay private to this result.
            Some((buffer, offset)) => js.typedarray_at(kind, len, buffer, offset)?,
            None => js.typedarray_at(kind, len, js.arraybuffer(data)?, 0)?,
        };
        if shape.len() == 1 && typed_array_kind(dtype).is_some() {
            return Ok(typed);
        }
        let dims: Vec<V> = shape.iter().map(|&dim| js.number(dim as f64)).collect::<Result<_>>()?;
        let dims = js.array_of(&dims)?;
        Ok(js.new_instance(js.deref(self.ctx.ndarray)?, &[js.str(dtype)?, dims, typed])?)
    }
}

/// Rebuilds a portable result held in memory.
pub fn decode_value(js: Js, ctx: &Context, bytes: &[u8]) -> Result<V> {
    decode_with(js, bytes, &mut JsBuilder { js, ctx, mapped: None })
}

/// Rebuilds a memory-mapped portable result; its large arrays are
/// TypedArrays over the mapping, which lives as long as any of them.
pub fn decode_mapped(js: Js, ctx: &Context, mut map: memmap2::MmapMut) -> Result<V> {
    let (address, len) = (map.as_mut_ptr(), map.len());
    let map = Box::new(map);
    // SAFETY of the bytes below: the Box moves only the MmapMut handle, not
    // the mapping; the mapping lives until the ArrayBuffer's finalizer (or
    // the end of this function, when the runtime refuses external buffers).
    let bytes = unsafe { std::slice::from_raw_parts(address as *const u8, len) };
    match js.external_arraybuffer(address, len, map)? {
        Ok(buffer) => decode_with(js, bytes, &mut JsBuilder { js, ctx, mapped: Some((buffer, address as usize)) }),
        Err(map) => {
            let value = decode_value(js, ctx, bytes);
            drop(map); // after the copies are made
            value
        }
    }
}

fn decode_with(js: Js, bytes: &[u8], builder: &mut JsBuilder<'_>) -> Result<V> {
    decode(bytes, builder).map_err(|error| match error {
        BuildError::Js(error) => error,
        BuildError::Host(error) => crate::to_napi(js, error),
    })
}
