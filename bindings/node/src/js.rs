//! Thin, checked wrappers over the raw N-API calls the walker and the
//! result builder make by the thousand (napi-rs's typed layer would add an
//! allocation or a type check per value).

use std::ptr;

use napi::bindgen_prelude::{ToNapiValue, TypeName, ValidateNapiValue};
use napi::{Error, Result, Status, ValueType, sys};

/// A raw JavaScript value, handed back to JavaScript as it is.
#[derive(Clone, Copy)]
pub struct Raw(pub sys::napi_value);

impl ToNapiValue for Raw {
    unsafe fn to_napi_value(_env: sys::napi_env, value: Self) -> Result<sys::napi_value> {
        Ok(value.0)
    }
}

impl TypeName for Raw {
    fn type_name() -> &'static str {
        "unknown"
    }
    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ValidateNapiValue for Raw {}

impl napi::bindgen_prelude::FromNapiValue for Raw {
    unsafe fn from_napi_value(_env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        Ok(Raw(value))
    }
}

/// Turns a non-ok status into an error (a pending JavaScript exception stays pending and wins).
pub fn check(status: sys::napi_status, what: &str) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Error::new(Status::from(status), format!("N-API call failed: {what}")))
    }
}

/// One environment (one JavaScript thread) and the calls HitSave makes on it.
#[derive(Clone, Copy)]
pub struct Js(pub sys::napi_env);

pub type V = sys::napi_value;

impl Js {
    pub fn typeof_(self, value: V) -> Result<sys::napi_valuetype> {
        let mut kind = 0;
        check(unsafe { sys::napi_typeof(self.0, value, &mut kind) }, "typeof")?;
        Ok(kind)
    }

    pub fn bool_value(self, value: V) -> Result<bool> {
        let mut out = false;
        check(unsafe { sys::napi_get_value_bool(self.0, value, &mut out) }, "bool")?;
        Ok(out)
    }

    pub fn f64_value(self, value: V) -> Result<f64> {
        let mut out = 0.0;
        check(unsafe { sys::napi_get_value_double(self.0, value, &mut out) }, "number")?;
        Ok(out)
    }

    /// A bigint as (negative, little-endian 64-bit words).
    pub fn bigint_words(self, value: V) -> Result<(bool, Vec<u64>)> {
        let mut count = 0usize;
        let mut sign = 0i32;
        check(
            unsafe { sys::napi_get_value_bigint_words(self.0, value, ptr::null_mut(), &mut count, ptr::null_mut()) },
            "bigint",
        )?;
        let mut words = vec![0u64; count];
        check(
            unsafe { sys::napi_get_value_bigint_words(self.0, value, &mut sign, &mut count, words.as_mut_ptr()) },
            "bigint",
        )?;
        words.truncate(count);
        Ok((sign != 0, words))
    }

    /// A string as UTF-16 code units (lone surrogates kept, so they can be reported).
    pub fn utf16(self, value: V) -> Result<Vec<u16>> {
        let mut len = 0usize;
        check(unsafe { sys::napi_get_value_string_utf16(self.0, value, ptr::null_mut(), 0, &mut len) }, "string")?;
        let mut units = vec![0u16; len + 1];
        let mut written = 0usize;
        check(
            unsafe { sys::napi_get_value_string_utf16(self.0, value, units.as_mut_ptr(), len + 1, &mut written) },
            "string",
        )?;
        units.truncate(written);
        Ok(units)
    }

    /// A string as UTF-8 (lone surrogates become U+FFFD: only for names, never for hashed values).
    pub fn string(self, value: V) -> Result<String> {
        Ok(String::from_utf16_lossy(&self.utf16(value)?))
    }

    pub fn is(
        self,
        value: V,
        f: unsafe extern "C" fn(sys::napi_env, V, *mut bool) -> sys::napi_status,
    ) -> Result<bool> {
        let mut out = false;
        check(unsafe { f(self.0, value, &mut out) }, "type check")?;
        Ok(out)
    }

    pub fn is_array(self, value: V) -> Result<bool> {
        self.is(value, sys::napi_is_array)
    }

    pub fn array_len(self, value: V) -> Result<u32> {
        let mut len = 0;
        check(unsafe { sys::napi_get_array_length(self.0, value, &mut len) }, "array length")?;
        Ok(len)
    }

    pub fn element(self, value: V, index: u32) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_get_element(self.0, value, index, &mut out) }, "element")?;
        Ok(out)
    }

    pub fn has_element(self, value: V, index: u32) -> Result<bool> {
        let mut out = false;
        check(unsafe { sys::napi_has_element(self.0, value, index, &mut out) }, "has element")?;
        Ok(out)
    }

    /// Bytes of a Buffer, a TypedArray view, a DataView or an ArrayBuffer: `(pointer, length)`.
    pub fn buffer_info(self, value: V) -> Result<(*const u8, usize)> {
        let mut data: *mut std::ffi::c_void = ptr::null_mut();
        let mut len = 0usize;
        check(unsafe { sys::napi_get_buffer_info(self.0, value, &mut data, &mut len) }, "buffer")?;
        Ok((data as *const u8, len))
    }

    /// `(element type, element count, pointer)` of a TypedArray.
    pub fn typedarray_info(self, value: V) -> Result<(sys::napi_typedarray_type, usize, *const u8)> {
        let mut kind = 0;
        let mut len = 0usize;
        let mut data: *mut std::ffi::c_void = ptr::null_mut();
        let mut buffer = ptr::null_mut();
        let mut offset = 0usize;
        check(
            unsafe {
                sys::napi_get_typedarray_info(self.0, value, &mut kind, &mut len, &mut data, &mut buffer, &mut offset)
            },
            "typed array",
        )?;
        Ok((kind, len, data as *const u8))
    }

    pub fn dataview_info(self, value: V) -> Result<(*const u8, usize)> {
        let mut len = 0usize;
        let mut data: *mut std::ffi::c_void = ptr::null_mut();
        let mut buffer = ptr::null_mut();
        let mut offset = 0usize;
        check(
            unsafe { sys::napi_get_dataview_info(self.0, value, &mut len, &mut data, &mut buffer, &mut offset) },
            "data view",
        )?;
        Ok((data as *const u8, len))
    }

    pub fn arraybuffer_info(self, value: V) -> Result<(*const u8, usize)> {
        let mut len = 0usize;
        let mut data: *mut std::ffi::c_void = ptr::null_mut();
        check(unsafe { sys::napi_get_arraybuffer_info(self.0, value, &mut data, &mut len) }, "array buffer")?;
        Ok((data as *const u8, len))
    }

    pub fn date_value(self, value: V) -> Result<f64> {
        let mut out = 0.0;
        check(unsafe { sys::napi_get_date_value(self.0, value, &mut out) }, "date")?;
        Ok(out)
    }

    pub fn prototype(self, value: V) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_get_prototype(self.0, value, &mut out) }, "prototype")?;
        Ok(out)
    }

    pub fn strict_equals(self, a: V, b: V) -> Result<bool> {
        let mut out = false;
        check(unsafe { sys::napi_strict_equals(self.0, a, b, &mut out) }, "===")?;
        Ok(out)
    }

    pub fn instance_of(self, value: V, constructor: V) -> Result<bool> {
        let mut out = false;
        check(unsafe { sys::napi_instanceof(self.0, value, constructor, &mut out) }, "instanceof")?;
        Ok(out)
    }

    /// Own enumerable string keys, as strings (what `Object.keys` gives).
    pub fn own_keys(self, value: V) -> Result<V> {
        self.own_enumerable(value, sys::KeyFilter::skip_symbols, "keys")
    }

    /// Whether an object has own enumerable properties under symbol keys.
    pub fn has_symbol_keys(self, value: V) -> Result<bool> {
        Ok(self.array_len(self.own_enumerable(value, sys::KeyFilter::skip_strings, "symbol keys")?)? > 0)
    }

    /// Own enumerable keys but those `skip` leaves out (numbers as strings).
    fn own_enumerable(self, value: V, skip: sys::napi_key_filter, what: &'static str) -> Result<V> {
        self.own_property_names(value, sys::KeyFilter::enumerable | skip, sys::KeyConversion::numbers_to_strings, what)
    }

    /// Every own key, enumerable or not, string or symbol; array indices as
    /// numbers (what `Reflect.ownKeys` gives, indices unconverted).
    pub fn all_own_keys(self, value: V) -> Result<V> {
        self.own_property_names(value, sys::KeyFilter::all_properties, sys::KeyConversion::keep_numbers, "own keys")
    }

    /// Own string keys, enumerable or not (`Object.getOwnPropertyNames`).
    pub fn own_string_keys(self, value: V) -> Result<V> {
        self.own_property_names(
            value,
            sys::KeyFilter::skip_symbols,
            sys::KeyConversion::numbers_to_strings,
            "own property names",
        )
    }

    fn own_property_names(
        self,
        value: V,
        filter: sys::napi_key_filter,
        conversion: sys::napi_key_conversion,
        what: &'static str,
    ) -> Result<V> {
        let mut out = ptr::null_mut();
        check(
            unsafe {
                sys::napi_get_all_property_names(
                    self.0,
                    value,
                    sys::KeyCollectionMode::own_only,
                    filter,
                    conversion,
                    &mut out,
                )
            },
            what,
        )?;
        Ok(out)
    }

    pub fn get(self, object: V, key: V) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_get_property(self.0, object, key, &mut out) }, "property")?;
        Ok(out)
    }

    pub fn get_named(self, object: V, name: &str) -> Result<V> {
        let name = std::ffi::CString::new(name).map_err(|_| Error::from_reason("property name with NUL"))?;
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_get_named_property(self.0, object, name.as_ptr(), &mut out) }, "property")?;
        Ok(out)
    }

    pub fn set_named(self, object: V, name: &str, value: V) -> Result<()> {
        let name = std::ffi::CString::new(name).map_err(|_| Error::from_reason("property name with NUL"))?;
        check(unsafe { sys::napi_set_named_property(self.0, object, name.as_ptr(), value) }, "set property")
    }

    pub fn set(self, object: V, key: V, value: V) -> Result<()> {
        check(unsafe { sys::napi_set_property(self.0, object, key, value) }, "set property")
    }

    pub fn call(self, this: V, function: V, args: &[V]) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_call_function(self.0, this, function, args.len(), args.as_ptr(), &mut out) }, "call")?;
        Ok(out)
    }

    pub fn new_instance(self, constructor: V, args: &[V]) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_new_instance(self.0, constructor, args.len(), args.as_ptr(), &mut out) }, "new")?;
        Ok(out)
    }

    pub fn global(self) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_get_global(self.0, &mut out) }, "global")?;
        Ok(out)
    }

    pub fn undefined(self) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_get_undefined(self.0, &mut out) }, "undefined")?;
        Ok(out)
    }

    pub fn null(self) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_get_null(self.0, &mut out) }, "null")?;
        Ok(out)
    }

    pub fn boolean(self, value: bool) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_get_boolean(self.0, value, &mut out) }, "boolean")?;
        Ok(out)
    }

    pub fn number(self, value: f64) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_create_double(self.0, value, &mut out) }, "number")?;
        Ok(out)
    }

    pub fn bigint(self, negative: bool, words: &[u64]) -> Result<V> {
        let mut out = ptr::null_mut();
        check(
            unsafe { sys::napi_create_bigint_words(self.0, negative as i32, words.len(), words.as_ptr(), &mut out) },
            "bigint",
        )?;
        Ok(out)
    }

    pub fn str(self, value: &str) -> Result<V> {
        let mut out = ptr::null_mut();
        check(
            unsafe { sys::napi_create_string_utf8(self.0, value.as_ptr().cast(), value.len() as isize, &mut out) },
            "string",
        )?;
        Ok(out)
    }

    /// A Node `Buffer` holding a copy of `data`.
    pub fn buffer(self, data: &[u8]) -> Result<V> {
        let mut out = ptr::null_mut();
        let mut copy: *mut std::ffi::c_void = ptr::null_mut();
        check(
            unsafe { sys::napi_create_buffer_copy(self.0, data.len(), data.as_ptr().cast(), &mut copy, &mut out) },
            "buffer",
        )?;
        Ok(out)
    }

    /// An `ArrayBuffer` holding a copy of `data`.
    pub fn arraybuffer(self, data: &[u8]) -> Result<V> {
        let mut out = ptr::null_mut();
        let mut target: *mut std::ffi::c_void = ptr::null_mut();
        check(unsafe { sys::napi_create_arraybuffer(self.0, data.len(), &mut target, &mut out) }, "array buffer")?;
        if !data.is_empty() {
            // SAFETY: V8 just allocated `data.len()` bytes at `target`.
            unsafe { ptr::copy_nonoverlapping(data.as_ptr(), target as *mut u8, data.len()) };
        }
        Ok(out)
    }

    /// An `ArrayBuffer` over memory V8 does not own (a memory-mapped result):
    /// `owner` is kept alive until the buffer is collected, then dropped.
    /// `Err(owner)` back where the runtime refuses external buffers (then copy instead).
    pub fn external_arraybuffer<T: 'static>(
        self,
        data: *mut u8,
        len: usize,
        owner: Box<T>,
    ) -> Result<std::result::Result<V, Box<T>>> {
        unsafe extern "C" fn release<T>(
            _env: sys::napi_env,
            _data: *mut std::ffi::c_void,
            hint: *mut std::ffi::c_void,
        ) {
            // SAFETY: `hint` is the Box leaked below, released exactly once, here.
            drop(unsafe { Box::from_raw(hint as *mut T) });
        }
        let hint = Box::into_raw(owner);
        let mut out = ptr::null_mut();
        // SAFETY: `data..data + len` stays valid while `hint` is alive, which
        // V8 guarantees until the finalizer runs.
        let status = unsafe {
            sys::napi_create_external_arraybuffer(self.0, data.cast(), len, Some(release::<T>), hint.cast(), &mut out)
        };
        if status != sys::Status::napi_ok {
            // SAFETY: V8 did not take the hint: it is still ours.
            let owner = unsafe { Box::from_raw(hint) };
            if status == sys::Status::napi_no_external_buffers_allowed {
                return Ok(Err(owner));
            }
            check(status, "external array buffer")?;
        }
        Ok(Ok(out))
    }

    /// A TypedArray of `len` items over `buffer`, starting `offset` bytes in.
    pub fn typedarray_at(self, kind: sys::napi_typedarray_type, len: usize, buffer: V, offset: usize) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_create_typedarray(self.0, kind, len, buffer, offset, &mut out) }, "typed array")?;
        Ok(out)
    }

    pub fn array(self, len: usize) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_create_array_with_length(self.0, len, &mut out) }, "array")?;
        Ok(out)
    }

    pub fn set_element(self, array: V, index: u32, value: V) -> Result<()> {
        check(unsafe { sys::napi_set_element(self.0, array, index, value) }, "set element")
    }

    pub fn object(self) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_create_object(self.0, &mut out) }, "object")?;
        Ok(out)
    }

    pub fn reference(self, value: V) -> Result<sys::napi_ref> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_create_reference(self.0, value, 1, &mut out) }, "reference")?;
        Ok(out)
    }

    pub fn deref(self, reference: sys::napi_ref) -> Result<V> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::napi_get_reference_value(self.0, reference, &mut out) }, "reference value")?;
        Ok(out)
    }

    pub fn drop_reference(self, reference: sys::napi_ref) {
        unsafe { sys::napi_delete_reference(self.0, reference) };
    }

    /// A JavaScript array of values.
    pub fn array_of(self, items: &[V]) -> Result<V> {
        let array = self.array(items.len())?;
        for (index, item) in items.iter().enumerate() {
            self.set_element(array, index as u32, *item)?;
        }
        Ok(array)
    }
}
