//! The JavaScript classes and functions the native side needs, per
//! JavaScript thread (the main thread and each worker has its own).

use std::cell::Cell;

use napi::{Error, Result, sys};

use crate::js::{Js, V};

/// References (`napi_ref`) taken once by `init`.
pub struct Context {
    pub object_prototype: sys::napi_ref,
    pub array_prototype: sys::napi_ref,
    pub map: sys::napi_ref,
    pub set: sys::napi_ref,
    pub array_from: sys::napi_ref,
    pub object_to_string: sys::napi_ref,
    pub buffer: sys::napi_ref,
    pub error_class: sys::napi_ref,
    pub file: sys::napi_ref,
    pub ndarray: sys::napi_ref,
    pub event_emitter: sys::napi_ref,
    pub fingerprint_function: sys::napi_ref,
    pub class_fingerprints: sys::napi_ref,
    pub array_extras: sys::napi_ref,
    pub split_array: sys::napi_ref,
}

thread_local! {
    static CONTEXT: Cell<Option<&'static Context>> = const { Cell::new(None) };
}

/// Takes the references `init` is given, plus builtins from the global object.
pub fn init(js: Js, options: V) -> Result<()> {
    let global = js.global()?;
    let object = js.get_named(global, "Object")?;
    let array = js.get_named(global, "Array")?;
    let take = |name: &str| -> Result<sys::napi_ref> { js.reference(js.get_named(options, name)?) };
    let context = Context {
        object_prototype: js.reference(js.get_named(object, "prototype")?)?,
        array_prototype: js.reference(js.get_named(array, "prototype")?)?,
        map: js.reference(js.get_named(global, "Map")?)?,
        set: js.reference(js.get_named(global, "Set")?)?,
        array_from: js.reference(js.get_named(array, "from")?)?,
        object_to_string: js.reference(js.get_named(js.get_named(object, "prototype")?, "toString")?)?,
        buffer: take("Buffer")?,
        error_class: take("HitSaveError")?,
        file: take("File")?,
        ndarray: take("NDArray")?,
        event_emitter: take("EventEmitter")?,
        fingerprint_function: take("fingerprintFunction")?,
        class_fingerprints: take("classFingerprints")?,
        array_extras: take("arrayExtras")?,
        split_array: take("splitArray")?,
    };
    // One per JavaScript thread for the life of the process: leaking it is the lifetime.
    CONTEXT.with(|cell| cell.set(Some(Box::leak(Box::new(context)))));
    Ok(())
}

/// This thread's context, or an error if `init` has not run on it.
pub fn get() -> Result<&'static Context> {
    CONTEXT
        .with(Cell::get)
        .ok_or_else(|| Error::from_reason("hitsave: the native module was used before init() on this thread"))
}
