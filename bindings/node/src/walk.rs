//! JavaScript values to the value stream (`docs/spec/values.md`, the
//! JavaScript column), in Rust.
//!
//! As in the Python binding, only translation happens here, by the table in
//! `docs/spec/values.md` ("JavaScript"): a safe-integer number is an int and
//! any other number a float, types JavaScript code can tell apart stay apart
//! (`Map` from a plain object, `bigint` from a number, a `Set`'s order), and
//! a class instance is its class's code and its own fields. The core decides
//! what values mean and reports errors with their path. A value that cannot
//! be hashed faithfully (a native object, private fields) is written as an
//! `unhashable` token naming its type.
//!
//! Big byte data (Buffers, TypedArrays, DataViews, ArrayBuffers over the
//! inline limit) is hashed natively: at once for a synchronous call, or,
//! for an asynchronous one, later on a worker thread ([`Hashing::Defer`]),
//! so the event loop keeps running during a large hash. `File(path)`
//! arguments are read and hashed the same way.

use hitsave_core::canonical::MAX_DEPTH;
use hitsave_core::stream::StreamWriter;
use hitsave_host::hash;
use napi::{Result, sys};

use crate::context::Context;
use crate::js::{Js, V};

/// Arrays up to this length have their own keys listed (see [`array_extras`]; index.js's `SHORT_ARRAY` is this).
const SHORT_ARRAY: u32 = 256;

/// When big buffers are hashed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    /// Now, on this thread.
    Inline,
    /// Later, off the JavaScript thread: a placeholder digest is written and
    /// the buffer is kept alive by a reference until then.
    Defer,
}

/// What a deferred digest is of.
pub enum Pending {
    /// Memory owned by a JavaScript object, kept alive by a `napi_ref` (`holder`).
    Memory { address: usize, len: usize, holder: usize },
    /// A file's contents (`File(path)`): its length and digest are both placeholders.
    File { path: std::path::PathBuf },
}

/// A digest still to be written into the stream.
pub struct Deferred {
    /// Where the placeholder is: the 32 digest bytes for memory, the 8 length
    /// bytes followed by the 32 digest bytes for a file.
    pub offset: usize,
    pub pending: Pending,
}

impl Deferred {
    /// Hashes every deferred buffer and file and writes the digests into `stream`.
    ///
    /// # Safety
    /// Each memory holder must still be referenced, so its memory is alive.
    pub unsafe fn fill(
        deferred: &[Deferred],
        stream: &mut [u8],
    ) -> std::result::Result<(), hitsave_host::HitSaveError> {
        for item in deferred {
            match &item.pending {
                Pending::Memory { address, len, .. } => {
                    // SAFETY: the caller keeps every holder referenced until this returns.
                    let data = unsafe { std::slice::from_raw_parts(*address as *const u8, *len) };
                    let digest = hash::blob_digest(data);
                    stream[item.offset..item.offset + 32].copy_from_slice(&digest.bytes);
                }
                Pending::File { path } => {
                    let (len, digest) = hash::file_digest(path)?;
                    stream[item.offset..item.offset + 8].copy_from_slice(&len.to_le_bytes());
                    stream[item.offset + 8..item.offset + 40].copy_from_slice(&digest.bytes);
                }
            }
        }
        Ok(())
    }

    /// Releases the holders (on the JavaScript thread).
    pub fn release(js: Js, deferred: &[Deferred]) {
        for item in deferred {
            if let Pending::Memory { holder, .. } = item.pending {
                js.drop_reference(holder as sys::napi_ref);
            }
        }
    }
}

/// The name JavaScript gives a TypedArray's element type, as a dtype.
pub fn dtype_of(kind: sys::napi_typedarray_type) -> Option<&'static str> {
    use sys::TypedarrayType as T;
    Some(match kind {
        T::int8_array => "int8",
        T::uint8_array | T::uint8_clamped_array => "uint8",
        T::int16_array => "int16",
        T::uint16_array => "uint16",
        T::int32_array => "int32",
        T::uint32_array => "uint32",
        T::float32_array => "float32",
        T::float64_array => "float64",
        T::bigint64_array => "int64",
        T::biguint64_array => "uint64",
        _ => return None,
    })
}

/// What a container's items are read from, one at a time.
#[derive(Clone, Copy)]
enum Items<H> {
    /// `source[index]`: an array's elements, an `arguments` object's, a
    /// Set's members (a snapshot), a RegExp's `[lastIndex]`.
    Elements,
    /// `source[index / 2][index % 2]`: a Map's `[key, value]` pairs (a
    /// snapshot), each key followed by its value.
    Pairs,
    /// `source[keys[index]]`, each written after its key: a plain object's
    /// entries (`record: false`) or an instance's fields.
    Fields { keys: H, record: bool },
}

/// A container whose header is written and whose items are being written.
/// `H` is a value (`V`) during a slice of the walk, a reference between two.
#[derive(Clone, Copy)]
struct Frame<H> {
    /// The object itself: met again below itself, it is a cycle.
    container: H,
    source: H,
    items: Items<H>,
    index: u32,
    len: u32,
    /// The container's depth; its items are one deeper.
    depth: usize,
    /// `source` is the caller's own array: its length is checked when a
    /// paused walk goes on (a change between two slices is refused).
    live: bool,
}

impl<H: Copy> Frame<H> {
    fn map<G>(&self, mut f: impl FnMut(H) -> Result<G>) -> Result<Frame<G>> {
        let items = match self.items {
            Items::Elements => Items::Elements,
            Items::Pairs => Items::Pairs,
            Items::Fields { keys, record } => Items::Fields { keys: f(keys)?, record },
        };
        Ok(Frame {
            container: f(self.container)?,
            source: f(self.source)?,
            items,
            index: self.index,
            len: self.len,
            depth: self.depth,
            live: self.live,
        })
    }

    fn handles(&self) -> impl Iterator<Item = H> {
        let keys = match self.items {
            Items::Fields { keys, .. } => Some(keys),
            _ => None,
        };
        [self.container, self.source].into_iter().chain(keys)
    }
}

/// Items written between two checks of a slice's deadline.
const CHECK_EVERY: u32 = 256;

/// Walks one value into a stream, depth first, with an explicit stack of
/// the containers being written (never the native stack), so a walk can
/// stop between two items and go on later ([`Walker::pause`]).
pub struct Walker<'c> {
    pub js: Js,
    pub ctx: &'c Context,
    pub out: StreamWriter,
    pub hashing: Hashing,
    pub deferred: Vec<Deferred>,
    /// The containers from the argument down to the one being written.
    frames: Vec<Frame<V>>,
    /// The objects written so far ([`Walker::first_meeting`]).
    seen: Option<Seen<V>>,
}

/// The objects a walk has written: a `Map` from each to its ordinal in the
/// order first met (the `Map` holds them, so none is collected and replaced
/// within the walk), and its `get` and `set`.
#[derive(Clone, Copy)]
struct Seen<T> {
    map: T,
    get: T,
    set: T,
    count: u32,
}

/// The type name of a reference to an object met earlier in the same value
/// (`docs/spec/values.md`, "The rule").
const REF_TYPE: &str = "hitsave:ref";

/// A walk stopped between two items, holding what it still has to read by
/// references, so the JavaScript thread can run other code meanwhile.
pub struct Paused {
    out: StreamWriter,
    hashing: Hashing,
    deferred: Vec<Deferred>,
    frames: Vec<Frame<usize>>,
    seen: Option<Seen<usize>>,
}

/// The names of an array's own properties other than its indices and
/// `length` (joined), or `None`. A short array's keys are listed and counted
/// (every index plus `length`: nothing else fits); listing a long one's costs
/// more than walking it, so the JavaScript side asks Node for its non-index
/// properties alone (`arrayExtras` in index.js).
/// A TypedArray's (or Buffer's) too: its indices are own keys, `length` is not.
pub fn array_extras(js: Js, ctx: &Context, array: V, len: u32) -> Result<Option<String>> {
    if len > SHORT_ARRAY {
        let extras = js.call(js.undefined()?, js.deref(ctx.array_extras)?, &[array])?;
        return Ok(if js.typeof_(extras)? == sys::ValueType::napi_string { Some(js.string(extras)?) } else { None });
    }
    let keys = js.all_own_keys(array)?;
    let plain = if js.is_array(array)? { len + 1 } else { len };
    if js.array_len(keys)? == plain {
        return Ok(None);
    }
    let extra = keys_besides(js, keys, &["length"], true)?;
    Ok(if extra.is_empty() { None } else { Some(extra.join(", ")) })
}

/// The names of `keys` (an own-keys list, indices as numbers) but `allowed`
/// and, with `skip_indices`, the indices; a symbol as "a symbol key".
fn keys_besides(js: Js, keys: V, allowed: &[&str], skip_indices: bool) -> Result<Vec<String>> {
    let mut extra = Vec::new();
    for index in 0..js.array_len(keys)? {
        let key = js.element(keys, index)?;
        match js.typeof_(key)? {
            sys::ValueType::napi_number if skip_indices => {}
            sys::ValueType::napi_number => extra.push(js.f64_value(key)?.to_string()),
            sys::ValueType::napi_string => {
                let key = js.string(key)?;
                if !allowed.contains(&key.as_str()) {
                    extra.push(key);
                }
            }
            _ => extra.push("a symbol key".to_owned()),
        }
    }
    Ok(extra)
}

/// Own string keys that are not enumerable (joined), or `None`: state that
/// `Object.keys` leaves out (`Object.defineProperty(o, 'k', { value })`).
/// `keys` are the object's own enumerable string keys.
pub fn hidden_keys(js: Js, value: V, keys: V) -> Result<Option<String>> {
    let len = js.array_len(keys)?;
    let all = js.own_string_keys(value)?;
    if js.array_len(all)? == len {
        return Ok(None);
    }
    let enumerable: std::collections::HashSet<String> =
        (0..len).map(|index| js.string(js.element(keys, index)?)).collect::<Result<_>>()?;
    let mut hidden = Vec::new();
    for index in 0..js.array_len(all)? {
        let key = js.string(js.element(all, index)?)?;
        if !enumerable.contains(&key) {
            hidden.push(key);
        }
    }
    Ok(Some(hidden.join(", ")))
}

/// `globalThis[builtin].prototype`.
fn builtin_prototype(js: Js, builtin: &str) -> Result<V> {
    js.get_named(js.get_named(js.global()?, builtin)?, "prototype")
}

fn release_frames(js: Js, frames: &[Frame<usize>]) {
    for frame in frames {
        for reference in frame.handles() {
            js.drop_reference(reference as sys::napi_ref);
        }
    }
}

impl<'c> Walker<'c> {
    pub fn new(js: Js, ctx: &'c Context, hashing: Hashing) -> Self {
        Self { js, ctx, out: StreamWriter::new(), hashing, deferred: Vec::new(), frames: Vec::new(), seen: None }
    }

    /// `true` when `value` (an object) is met for the first time in this walk
    /// (recorded: the caller writes it); `false` after writing a reference to
    /// where it was first met, `typed("hitsave:ref", int(ordinal))`. So
    /// `[a, a]` and `[[1], [1]]` differ: code pushing to `v[0]` sees `v[1]`
    /// change in one and not the other.
    fn first_meeting(&mut self, value: V) -> Result<bool> {
        let js = self.js;
        let seen = match self.seen {
            Some(seen) => seen,
            None => {
                let map = js.new_instance(js.deref(self.ctx.map)?, &[])?;
                let seen = Seen { map, get: js.get_named(map, "get")?, set: js.get_named(map, "set")?, count: 0 };
                self.seen = Some(seen);
                seen
            }
        };
        let ordinal = js.call(seen.map, seen.get, &[value])?;
        if js.typeof_(ordinal)? == sys::ValueType::napi_number {
            self.out.typed(REF_TYPE).int(js.f64_value(ordinal)? as i64);
            return Ok(false);
        }
        js.call(seen.map, seen.set, &[value, js.number(f64::from(seen.count))?])?;
        self.seen = Some(Seen { count: seen.count.saturating_add(1), ..seen });
        Ok(true)
    }

    /// Releases deferred holders if the walk is abandoned (an error).
    pub fn abandon(&mut self) {
        Deferred::release(self.js, &self.deferred);
        self.deferred.clear();
        self.frames.clear();
    }

    /// Writes `value` whole.
    pub fn walk(&mut self, value: V) -> Result<()> {
        self.value(value, 0)?;
        self.run(None).map(|_| ())
    }

    /// Writes `value` until it is done (`true`) or `deadline` has passed
    /// (`false`: [`Walker::pause`] it and go on later).
    pub fn walk_until(&mut self, value: V, deadline: std::time::Instant) -> Result<bool> {
        self.value(value, 0)?;
        self.run(Some(deadline))
    }

    /// Goes on writing until done (`true`) or `deadline` has passed.
    pub fn run(&mut self, deadline: Option<std::time::Instant>) -> Result<bool> {
        let js = self.js;
        let mut steps = 0u32;
        while let Some(frame) = self.frames.last_mut() {
            if frame.index == frame.len {
                self.frames.pop();
                continue;
            }
            if let Some(deadline) = deadline {
                steps += 1;
                if steps.is_multiple_of(CHECK_EVERY) && std::time::Instant::now() >= deadline {
                    return Ok(false);
                }
            }
            let index = frame.index;
            frame.index += 1;
            let (source, items, depth) = (frame.source, frame.items, frame.depth + 1);
            let item = match items {
                Items::Elements => {
                    let item = js.element(source, index)?;
                    // A hole (`[1, , 3]`, `new Array(3)`) reads as undefined,
                    // but code tells them apart (`i in a`, `forEach`, `map`):
                    // `[1, , 3]` and `[1, undefined, 3]` must not share a key.
                    if js.typeof_(item)? == sys::ValueType::napi_undefined && !js.has_element(source, index)? {
                        self.out.unhashable("Array (a hole: an index with no element)");
                        continue;
                    }
                    item
                }
                Items::Pairs => js.element(js.element(source, index / 2)?, index % 2)?,
                Items::Fields { keys, record } => {
                    let key = js.element(keys, index)?;
                    let item = js.get(source, key)?;
                    if record {
                        let field = js.string(key)?;
                        self.out.field(&field);
                    } else {
                        write_string(&mut self.out, &js.utf16(key)?);
                    }
                    item
                }
            };
            self.value(item, depth)?;
        }
        Ok(true)
    }

    /// Stops between two items: what is left to read is held by references.
    pub fn pause(self) -> Result<Paused> {
        let js = self.js;
        let mut frames = Vec::with_capacity(self.frames.len());
        for frame in &self.frames {
            match frame.map(|value| js.reference(value).map(|reference| reference as usize)) {
                Ok(frame) => frames.push(frame),
                Err(error) => {
                    release_frames(js, &frames);
                    Deferred::release(js, &self.deferred);
                    return Err(error);
                }
            }
        }
        let seen = match self.seen {
            None => None,
            Some(seen) => {
                let held = [seen.map, seen.get, seen.set].map(|value| js.reference(value).map(|r| r as usize));
                match held {
                    [Ok(map), Ok(get), Ok(set)] => Some(Seen { map, get, set, count: seen.count }),
                    held => {
                        for reference in held.into_iter().flatten() {
                            js.drop_reference(reference as sys::napi_ref);
                        }
                        release_frames(js, &frames);
                        Deferred::release(js, &self.deferred);
                        return Err(napi::Error::from_reason("a paused walk could not hold its objects met"));
                    }
                }
            }
        };
        Ok(Paused { out: self.out, hashing: self.hashing, deferred: self.deferred, frames, seen })
    }

    /// Goes on with a paused walk (call [`Walker::run`] next). An array it
    /// was in the middle of that changed length meanwhile is refused: the
    /// stream would describe a value that never existed.
    pub fn resume(js: Js, ctx: &'c Context, paused: Paused) -> Result<Self> {
        let Paused { out, hashing, deferred, frames: held, seen: held_seen } = paused;
        let frames: Result<Vec<Frame<V>>> =
            held.iter().map(|frame| frame.map(|reference| js.deref(reference as sys::napi_ref))).collect();
        release_frames(js, &held);
        let seen = match held_seen {
            None => Ok(None),
            Some(seen) => {
                let back = [seen.map, seen.get, seen.set].map(|reference| js.deref(reference as sys::napi_ref));
                for reference in [seen.map, seen.get, seen.set] {
                    js.drop_reference(reference as sys::napi_ref);
                }
                match back {
                    [Ok(map), Ok(get), Ok(set)] => Ok(Some(Seen { map, get, set, count: seen.count })),
                    [Err(error), ..] | [_, Err(error), _] | [_, _, Err(error)] => Err(error),
                }
            }
        };
        let mut walker = Self { js, ctx, out, hashing, deferred, frames: Vec::new(), seen: None };
        let checked = seen.and_then(|seen| {
            walker.seen = seen;
            frames
        });
        let checked = checked.and_then(|frames| {
            for frame in &frames {
                if frame.live && js.array_len(frame.source)? != frame.len {
                    return Err(crate::to_napi(
                        js,
                        hitsave_host::HitSaveError::Core(hitsave_core::CoreError::new(
                            hitsave_core::ErrorCode::UnhashableValue,
                            "an argument array changed length while its key was being read; an async memoized \
                             function's arguments must not change until its promise settles",
                        )),
                    ));
                }
            }
            Ok(frames)
        });
        match checked {
            Ok(frames) => {
                walker.frames = frames;
                Ok(walker)
            }
            Err(error) => {
                walker.abandon();
                Err(error)
            }
        }
    }

    fn push(&mut self, container: V, source: V, items: Items<V>, len: u32, depth: usize) {
        self.frames.push(Frame { container, source, items, index: 0, len, depth, live: false });
    }

    /// [`Walker::push`] for the caller's own array, read in place (`live`).
    fn push_array(&mut self, array: V, len: u32, depth: usize) {
        self.frames.push(Frame {
            container: array,
            source: array,
            items: Items::Elements,
            index: 0,
            len,
            depth,
            live: true,
        });
    }

    /// Writes a value that has no items, or a container's header (its items follow from [`Walker::run`]).
    fn value(&mut self, value: V, depth: usize) -> Result<()> {
        if depth >= MAX_DEPTH {
            // The core reports `too_deep` with the path; this also ends cycles.
            self.out.null();
            return Ok(());
        }
        let js = self.js;
        match js.typeof_(value)? {
            sys::ValueType::napi_undefined => {
                self.out.typed("js:undefined").null();
            }
            sys::ValueType::napi_null => {
                self.out.null();
            }
            sys::ValueType::napi_boolean => {
                self.out.bool(js.bool_value(value)?);
            }
            sys::ValueType::napi_number => write_number(&mut self.out, js.f64_value(value)?),
            sys::ValueType::napi_bigint => {
                let (negative, words) = js.bigint_words(value)?;
                self.out.typed("js:bigint");
                write_bigint(&mut self.out, negative, &words);
            }
            sys::ValueType::napi_string => write_string(&mut self.out, &js.utf16(value)?),
            sys::ValueType::napi_symbol => {
                self.out.unhashable("symbol");
            }
            sys::ValueType::napi_function => self.function(value)?,
            sys::ValueType::napi_object => self.object(value, depth)?,
            _ => {
                self.out.unhashable("external");
            }
        }
        Ok(())
    }

    fn function(&mut self, value: V) -> Result<()> {
        let js = self.js;
        let hook = js.deref(self.ctx.fingerprint_function)?;
        let undefined = js.undefined()?;
        let text = js.call(undefined, hook, &[value])?;
        let name_value = js.get_named(value, "name")?;
        let name =
            if js.typeof_(name_value)? == sys::ValueType::napi_string { js.string(name_value)? } else { String::new() };
        let name = if name.is_empty() { "function".to_owned() } else { format!("function {name}") };
        if js.typeof_(text)? != sys::ValueType::napi_string {
            self.out.unhashable(&name);
            return Ok(());
        }
        // A fingerprint, or the reason the function cannot be hashed faithfully.
        let text = js.string(text)?;
        match hitsave_core::Digest::parse(&text) {
            Ok(digest) => self.out.function(&digest),
            Err(_) => self.out.unhashable(&format!("{name} ({text})")),
        };
        Ok(())
    }

    /// Writes byte data owned by `holder`: inline when small, else by digest.
    fn bytes(&mut self, holder: V, address: *const u8, len: usize, array: Option<(&str, &[u64])>) -> Result<()> {
        let data: &[u8] = if len == 0 { &[] } else { unsafe { std::slice::from_raw_parts(address, len) } };
        if len <= hash::INLINE_LIMIT {
            match array {
                Some((dtype, shape)) => self.out.array(dtype, shape, data),
                None => self.out.bytes(data),
            };
            return Ok(());
        }
        match self.hashing {
            Hashing::Inline => {
                let digest = hash::blob_digest(data);
                match array {
                    Some((dtype, shape)) => self.out.array_digest(dtype, shape, len as u64, &digest.bytes),
                    None => self.out.bytes_digest(len as u64, &digest.bytes),
                };
            }
            Hashing::Defer => {
                match array {
                    Some((dtype, shape)) => self.out.array_digest(dtype, shape, len as u64, &[0; 32]),
                    None => self.out.bytes_digest(len as u64, &[0; 32]),
                };
                let holder = self.js.reference(holder)? as usize;
                let offset = self.out.as_bytes().len() - 32;
                self.deferred
                    .push(Deferred { offset, pending: Pending::Memory { address: address as usize, len, holder } });
            }
        }
        Ok(())
    }

    /// An object, unless it is one of its own ancestors: a cycle is written
    /// as an `unhashable` token (`cyclic Array`, …) so the core names where
    /// it closes, instead of walking on until `too_deep`.
    fn object(&mut self, value: V, depth: usize) -> Result<()> {
        let js = self.js;
        for index in 0..self.frames.len() {
            if js.strict_equals(self.frames[index].container, value)? {
                let prototype = js.prototype(value)?;
                let name = if js.is_array(value)? {
                    "Array".to_owned()
                } else if js.typeof_(prototype)? == sys::ValueType::napi_null {
                    "Object".to_owned()
                } else {
                    constructor_name(js, prototype)?
                };
                self.out.unhashable(&format!("cyclic {name}"));
                return Ok(());
            }
        }
        if !self.first_meeting(value)? {
            return Ok(());
        }
        self.object_contents(value, depth)
    }

    fn object_contents(&mut self, value: V, depth: usize) -> Result<()> {
        let js = self.js;
        let ctx = self.ctx;
        if js.is_array(value)? {
            let len = js.array_len(value)?;
            // Own properties besides the elements and `length` (a RegExp
            // match's `index`, `input` and `groups`; `a.tag = 1`) are state
            // code reads that a list leaves out: two arrays differing there
            // would share a key.
            // A subclass's methods (or another realm's Array) are code a list leaves out.
            if self.refused_subclass(value, "Array", js.deref(ctx.array_prototype)?)? {
                return Ok(());
            }
            if array_extras(js, ctx, value, len)?.is_some() {
                // Its elements and those properties (d3's `csvParse(text).columns`,
                // a RegExp match's `index`), or why they cannot be read faithfully.
                let split = js.call(js.undefined()?, js.deref(ctx.split_array)?, &[value])?;
                if js.typeof_(split)? == sys::ValueType::napi_string {
                    self.out.unhashable(&format!("Array ({})", js.string(split)?));
                    return Ok(());
                }
                self.out.typed("js:Array").list(2);
                self.push(value, split, Items::Elements, 2, depth);
                return Ok(());
            }
            self.out.list(len as usize);
            self.push_array(value, len, depth);
            return Ok(());
        }
        if js.is(value, sys::napi_is_typedarray)? {
            let (kind, len, address) = js.typedarray_info(value)?;
            if let Some(extra) = array_extras(js, ctx, value, len as u32)? {
                self.out.unhashable(&format!("TypedArray (own properties besides its elements: {extra})"));
                return Ok(());
            }
            if js.instance_of(value, js.deref(ctx.buffer)?)? {
                return self.bytes(value, address, len, None);
            }
            let builtin = crate::portable::typed_array_name(kind);
            if !builtin.is_empty() && self.refused_subclass(value, builtin, builtin_prototype(js, builtin)?)? {
                return Ok(());
            }
            let Some(dtype) = dtype_of(kind) else {
                self.out.unhashable("a TypedArray of an unsupported element type");
                return Ok(());
            };
            if kind == sys::TypedarrayType::uint8_clamped_array {
                // Same bytes as a Uint8Array, other arithmetic.
                self.out.typed("js:Uint8ClampedArray");
            }
            let size = hitsave_core::stream::dtype_size(dtype).unwrap_or(1) as usize;
            return self.bytes(value, address, len * size, Some((dtype, &[len as u64])));
        }
        if js.is(value, sys::napi_is_dataview)? {
            if self.refused_builtin(value, "DataView", &[])? {
                return Ok(());
            }
            let (address, len) = js.dataview_info(value)?;
            self.out.typed("js:DataView");
            return self.bytes(value, address, len, None);
        }
        if js.is(value, sys::napi_is_arraybuffer)? {
            if self.refused_builtin(value, "ArrayBuffer", &[])? {
                return Ok(());
            }
            let (address, len) = js.arraybuffer_info(value)?;
            self.out.typed("js:ArrayBuffer");
            return self.bytes(value, address, len, None);
        }
        if js.is(value, sys::napi_is_date)? {
            if self.refused_builtin(value, "Date", &[])? {
                return Ok(());
            }
            self.out.typed("js:Date").float(js.date_value(value)?);
            return Ok(());
        }
        if js.is(value, sys::napi_is_promise)? {
            self.out.unhashable("Promise");
            return Ok(());
        }
        if js.is(value, sys::napi_is_error)? {
            self.out.unhashable("Error");
            return Ok(());
        }
        let prototype = js.prototype(value)?;
        if js.typeof_(prototype)? == sys::ValueType::napi_null {
            // No prototype: no methods, and a `Map`-like reader would see that.
            self.out.typed("js:Object(null)");
            return self.fields(value, None, depth);
        }
        if js.strict_equals(prototype, js.deref(ctx.object_prototype)?)? {
            return self.fields(value, None, depth);
        }
        if js.instance_of(value, js.deref(ctx.map)?)? {
            if self.refused_builtin(value, "Map", &[])? {
                return Ok(());
            }
            let pairs = js.call(js.undefined()?, js.deref(ctx.array_from)?, &[value])?;
            let len = js.array_len(pairs)?;
            self.out.typed("js:Map").map(len as usize);
            self.push(value, pairs, Items::Pairs, len * 2, depth);
            return Ok(());
        }
        if js.instance_of(value, js.deref(ctx.set)?)? {
            if self.refused_builtin(value, "Set", &[])? {
                return Ok(());
            }
            // In insertion order: JavaScript code iterating a Set sees it.
            let members = js.call(js.undefined()?, js.deref(ctx.array_from)?, &[value])?;
            let len = js.array_len(members)?;
            self.out.typed("js:Set").list(len as usize);
            self.push(value, members, Items::Elements, len, depth);
            return Ok(());
        }
        if js.instance_of(value, js.deref(ctx.file)?)? {
            let path = std::path::PathBuf::from(js.string(js.get_named(value, "path")?)?);
            if self.hashing == Hashing::Defer {
                // Read and hashed on the worker, like big buffers.
                self.out.file_digest(0, &[0; 32]);
                let offset = self.out.as_bytes().len() - 40;
                self.deferred.push(Deferred { offset, pending: Pending::File { path } });
                return Ok(());
            }
            return hash::write_file(&mut self.out, &path).map_err(|err| crate::to_napi(js, err));
        }
        if js.instance_of(value, js.deref(ctx.ndarray)?)? {
            return self.ndarray(value);
        }
        if js.instance_of(value, js.deref(ctx.event_emitter)?)? {
            // Sockets, streams, servers, child processes: live resources, not values.
            let name = constructor_name(js, prototype)?;
            self.out.unhashable(&format!("{name} (an EventEmitter)"));
            return Ok(());
        }
        let tag = js.string(js.call(value, js.deref(ctx.object_to_string)?, &[])?)?;
        match tag.as_str() {
            "[object Object]" => self.instance(value, prototype, depth),
            "[object RegExp]" => {
                if self.refused_builtin(value, "RegExp", &["lastIndex"])? {
                    return Ok(());
                }
                // `lastIndex` is state: a global RegExp's `exec` starts there.
                self.out.typed("js:RegExp").list(3);
                write_string(&mut self.out, &js.utf16(js.get_named(value, "source")?)?);
                write_string(&mut self.out, &js.utf16(js.get_named(value, "flags")?)?);
                let last_index = js.array_of(&[js.get_named(value, "lastIndex")?])?;
                self.push(value, last_index, Items::Elements, 1, depth);
                Ok(())
            }
            "[object Arguments]" => self.arguments(value, depth),
            // Boxed primitives, WeakMap, WeakRef, generators, module namespaces…:
            // their state is not in their properties.
            other => {
                let name = other.trim_start_matches("[object ").trim_end_matches(']');
                self.out.unhashable(name);
                Ok(())
            }
        }
    }

    /// A class instance: the code of its class and every class it extends,
    /// and a record `js:<name>` of its own enumerable fields. A class whose
    /// state JavaScript cannot enumerate (a native class such as `URL`, a
    /// class with `#private` fields) is `unhashable`: a record without its
    /// state would give two different instances one key.
    fn instance(&mut self, value: V, prototype: V, depth: usize) -> Result<()> {
        let js = self.js;
        let name = constructor_name(js, prototype)?;
        let constructor = js.get_named(prototype, "constructor")?;
        let hook = js.deref(self.ctx.class_fingerprints)?;
        let fingerprints = js.call(js.undefined()?, hook, &[constructor])?;
        if !js.is_array(fingerprints)? {
            let reason = if js.typeof_(fingerprints)? == sys::ValueType::napi_string {
                js.string(fingerprints)?
            } else {
                "its state is not in its own properties".to_owned()
            };
            self.out.unhashable(&format!("{name} ({reason})"));
            return Ok(());
        }
        let count = js.array_len(fingerprints)?;
        self.out.typed("js:instance").list(2).list(count as usize);
        for index in 0..count {
            let text = js.string(js.element(fingerprints, index)?)?;
            let digest = hitsave_core::Digest::parse(&text).map_err(|err| crate::to_napi(js, err.into()))?;
            self.out.function(&digest);
        }
        self.fields(value, Some(&format!("js:{name}")), depth)
    }

    /// A plain object (a map of its own enumerable string keys, in property
    /// order) or a class instance (a record of those fields).
    fn fields(&mut self, value: V, record: Option<&str>, depth: usize) -> Result<()> {
        let js = self.js;
        // Properties under symbol keys (`{ [tag]: 2 }`) are state the map of
        // string keys leaves out: two objects differing there would share a
        // key. A symbol is no portable key either (its identity is the process's).
        if js.has_symbol_keys(value)? {
            let name = record.map_or("Object", |name| name.trim_start_matches("js:"));
            self.out.unhashable(&format!("{name} (properties under symbol keys)"));
            return Ok(());
        }
        let keys = js.own_keys(value)?;
        let len = js.array_len(keys)?;
        if let Some(hidden) = hidden_keys(js, value, keys)? {
            // An `arguments` object has Object's prototype and a hidden
            // `length` and `callee`: it is a list, not a map of its indices.
            if record.is_none()
                && js.string(js.call(value, js.deref(self.ctx.object_to_string)?, &[])?)? == "[object Arguments]"
            {
                return self.arguments(value, depth);
            }
            let name = record.map_or("Object", |name| name.trim_start_matches("js:"));
            self.out.unhashable(&format!("{name} (non-enumerable properties: {hidden})"));
            return Ok(());
        }
        match record {
            Some(name) => self.out.record(name, len as usize),
            None => self.out.map(len as usize),
        };
        self.push(value, value, Items::Fields { keys, record: record.is_some() }, len, depth);
        Ok(())
    }

    /// Writes an `unhashable` token and says so when a builtin object
    /// (`Map`, `Set`, `Date`, `RegExp`, `ArrayBuffer`, `DataView`: its
    /// encoding is its contents alone) is of a subclass, whose methods are
    /// code the encoding leaves out (`class DefaultMap extends Map`), or has
    /// own properties besides `allowed` (`m.tag = 'x'`), state it leaves out:
    /// either would give two values code tells apart one key.
    fn refused_builtin(&mut self, value: V, builtin: &str, allowed: &[&str]) -> Result<bool> {
        let js = self.js;
        if self.refused_subclass(value, builtin, builtin_prototype(js, builtin)?)? {
            return Ok(true);
        }
        let extra = keys_besides(js, js.all_own_keys(value)?, allowed, false)?;
        if extra.is_empty() {
            return Ok(false);
        }
        self.out.unhashable(&format!("{builtin} (own properties its contents leave out: {})", extra.join(", ")));
        Ok(true)
    }

    /// [`Walker::refused_builtin`]'s prototype check alone (an Array's and a
    /// TypedArray's own properties are checked with their elements): `own`
    /// is `builtin`'s prototype.
    fn refused_subclass(&mut self, value: V, builtin: &str, own: V) -> Result<bool> {
        let js = self.js;
        let prototype = js.prototype(value)?;
        if js.strict_equals(prototype, own)? {
            return Ok(false);
        }
        let name = if js.typeof_(prototype)? == sys::ValueType::napi_null {
            format!("{builtin} without a prototype")
        } else {
            constructor_name(js, prototype)?
        };
        let article = if builtin.starts_with(['A', 'I']) { "an" } else { "a" };
        self.out.unhashable(&format!("{name} ({article} {builtin} whose prototype is not {builtin}.prototype)"));
        Ok(true)
    }

    fn arguments(&mut self, value: V, depth: usize) -> Result<()> {
        let len = self.js.f64_value(self.js.get_named(value, "length")?)? as u32;
        self.out.typed("js:Arguments").list(len as usize);
        self.push(value, value, Items::Elements, len, depth);
        Ok(())
    }

    fn ndarray(&mut self, value: V) -> Result<()> {
        let js = self.js;
        let dtype = js.string(js.get_named(value, "dtype")?)?;
        let shape_value = js.get_named(value, "shape")?;
        let mut shape = Vec::new();
        for index in 0..js.array_len(shape_value)? {
            shape.push(js.f64_value(js.element(shape_value, index)?)? as u64);
        }
        let data = js.get_named(value, "data")?;
        let (address, len) = if js.is(data, sys::napi_is_typedarray)? {
            let (kind, count, address) = js.typedarray_info(data)?;
            let size = dtype_of(kind).and_then(hitsave_core::stream::dtype_size).unwrap_or(1) as usize;
            (address, count * size)
        } else {
            self.out.unhashable("NDArray whose data is not a TypedArray");
            return Ok(());
        };
        let Some(item) = hitsave_core::stream::dtype_size(&dtype) else {
            self.out.unhashable(&format!("NDArray of dtype {dtype}"));
            return Ok(());
        };
        if shape.iter().try_fold(item, |acc, &dim| acc.checked_mul(dim)) != Some(len as u64) {
            self.out.unhashable("NDArray whose data length does not match its shape");
            return Ok(());
        }
        self.bytes(data, address, len, Some((&dtype, &shape)))
    }
}

/// A class's name, from its prototype's `constructor.name`.
pub fn constructor_name(js: Js, prototype: V) -> Result<String> {
    let constructor = js.get_named(prototype, "constructor")?;
    if js.typeof_(constructor)? != sys::ValueType::napi_function {
        return Ok("Object".to_owned());
    }
    let name = js.get_named(constructor, "name")?;
    if js.typeof_(name)? != sys::ValueType::napi_string {
        return Ok("Object".to_owned());
    }
    let name = js.string(name)?;
    Ok(if name.is_empty() { "Object".to_owned() } else { name })
}

/// A JavaScript string: exact UTF-8, or (with a lone surrogate) its WTF-8
/// bytes, which the core rejects as invalid UTF-8 with the path.
pub fn write_string(out: &mut StreamWriter, units: &[u16]) {
    let mut text = String::with_capacity(units.len());
    let mut wtf8: Option<Vec<u8>> = None;
    for unit in char::decode_utf16(units.iter().copied()) {
        match (unit, wtf8.as_mut()) {
            (Ok(ch), None) => text.push(ch),
            (Ok(ch), Some(bytes)) => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            (Err(lone), bytes) => {
                let bytes = match bytes {
                    Some(bytes) => bytes,
                    None => wtf8.insert(text.as_bytes().to_vec()),
                };
                let unit = lone.unpaired_surrogate() as u32;
                bytes.extend_from_slice(&[
                    0xE0 | (unit >> 12) as u8,
                    0x80 | ((unit >> 6) & 0x3F) as u8,
                    0x80 | (unit & 0x3F) as u8,
                ]);
            }
        }
    }
    match wtf8 {
        Some(bytes) => out.str_bytes(&bytes),
        None => out.str(&text),
    };
}

/// A number: an integer when it is a safe integer (and not `-0`), else a
/// float, so `f(2)` in Node and `f(2)` in Python share a key and `2 ** 60`,
/// which a double cannot hold exactly, never claims to be that integer.
pub fn write_number(out: &mut StreamWriter, number: f64) {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if number.fract() == 0.0 && number.abs() <= MAX_SAFE && !(number == 0.0 && number.is_sign_negative()) {
        out.int(number as i64);
    } else {
        out.float(number);
    }
}

/// A bigint: `int` when it fits 64 bits, else sign and magnitude.
pub fn write_bigint(out: &mut StreamWriter, negative: bool, words: &[u64]) {
    let mut magnitude: Vec<u8> = words.iter().flat_map(|word| word.to_le_bytes()).collect();
    while magnitude.last() == Some(&0) {
        magnitude.pop();
    }
    if magnitude.len() <= 8 {
        let mut le = [0u8; 8];
        le[..magnitude.len()].copy_from_slice(&magnitude);
        let value = u64::from_le_bytes(le);
        if !negative && value <= i64::MAX as u64 {
            out.int(value as i64);
            return;
        }
        if negative && value <= 1u64 << 63 {
            out.int((value as i128).wrapping_neg() as i64);
            return;
        }
    }
    out.bigint(negative && !magnitude.is_empty(), &magnitude);
}
