'use strict';
/**
 * HitSave for Node: `memo(fn)` saves a function's results on disk, keyed by
 * its arguments and its code, in the store Python uses too.
 *
 * The native addon (`hitsave.node`, Rust) walks arguments, derives keys,
 * reads and writes the store and analyses code; this file is the call path
 * (sync and async) and the public API. See docs/node.md.
 */
const { AsyncLocalStorage } = require('node:async_hooks');
const { EventEmitter } = require('node:events');
const v8 = require('node:v8');
const util = require('node:util');
const native = loadNative();

/**
 * The addon, from the first of: HITSAVE_NODE_ADDON (a build to try),
 * `hitsave.node` beside this file (a build from a checkout: `npm run build`),
 * the prebuilt per-platform package npm installed (`@hitsave/<platform>`,
 * an optionalDependency, as napi-rs projects ship).
 */
function loadNative() {
  const path = require('node:path');
  const fs = require('node:fs');
  const explicit = process.env.HITSAVE_NODE_ADDON;
  const local = path.join(__dirname, 'hitsave.node');
  const file = explicit || (fs.existsSync(local) ? local : null);
  if (file) {
    try {
      return require(file);
    } catch (error) {
      error.message = `hitsave: cannot load the native addon ${file} (${error.message})`;
      throw error;
    }
  }
  // npm installs only the package whose os, cpu and libc match; on Linux try
  // glibc's, then musl's (cheaper than asking which libc this is).
  const base = `${process.platform}-${process.arch}`;
  const names = process.platform === 'linux' ? [`${base}-gnu`, `${base}-musl`] : [base];
  for (const name of names) {
    const pkg = `@hitsave/${name}`;
    try {
      return require(pkg);
    } catch (error) {
      if (error.code === 'MODULE_NOT_FOUND' && String(error.message).includes(pkg)) continue;
      error.message = `hitsave: cannot load the native addon ${pkg} (${error.message})`;
      throw error;
    }
  }
  const missing = new Error(
    `hitsave: no native addon for ${base}: no prebuilt package (${names.map((n) => `@hitsave/${n}`).join(' or ')}) ` +
      'is installed (npm installs it with hitsave where one is published, today linux-x64-gnu; ' +
      'check that optional dependencies were not omitted), and there is no source build at ' +
      `${local}. To build from source, run \`npm run build\` in bindings/node of a HitSave ` +
      'checkout (needs Rust 1.95 or newer: https://rustup.rs) and install that folder.',
  );
  missing.code = 'addon_missing';
  throw missing;
}

/** Every HitSave error: `code` is stable (docs/errors.md), `path` says where in the arguments. */
class HitSaveError extends Error {
  constructor(message, code = 'hitsave_error', path = null) {
    super(message);
    this.name = 'HitSaveError';
    this.code = code;
    this.path = path;
  }
}

/** A file's contents as an argument (a plain string is just a string). */
class File {
  constructor(path) {
    this.path = String(path);
  }
}

const DTYPES = {
  bool: Uint8Array, int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array,
  int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array,
  float16: Uint16Array, float32: Float32Array, float64: Float64Array,
  complex64: Float32Array, complex128: Float64Array,
};

const ITEM_SIZE = {
  bool: 1, int8: 1, uint8: 1, int16: 2, uint16: 2, int32: 4, uint32: 4, int64: 8, uint64: 8,
  float16: 2, float32: 4, float64: 8, complex64: 8, complex128: 16,
};

/** The options memo() takes (anything else is a typo that would be silently ignored). */
const MEMO_OPTIONS = new Set(['name', 'version', 'ignore', 'local', 'cloud', 'codec', 'async', 'cacheDir']);

/**
 * A numeric array with a dtype and a shape (C order), as numpy has: how a
 * multi-dimensional array (or one of a dtype JavaScript has no TypedArray
 * for) crosses between Python and Node.
 */
class NDArray {
  constructor(dtype, shape, data) {
    if (!(dtype in DTYPES)) throw new TypeError(`NDArray: unknown dtype ${dtype}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new TypeError('NDArray: shape must be an array of non-negative integers');
    }
    if (!ArrayBuffer.isView(data) || data instanceof DataView) {
      throw new TypeError('NDArray: data must be a TypedArray');
    }
    const items = shape.reduce((product, dim) => product * dim, 1);
    if (data.byteLength !== items * ITEM_SIZE[dtype]) {
      throw new TypeError(
        `NDArray: shape [${shape.join(', ')}] of ${dtype} holds ${items * ITEM_SIZE[dtype]} bytes, the data has ${data.byteLength}`,
      );
    }
    this.dtype = dtype;
    this.shape = shape;
    this.data = data;
  }
}

/** Returned by `.lookup()` when nothing is stored for the arguments. */
const MISS = Symbol.for('hitsave.MISS');

const IDENTITY = Symbol('hitsave.identity');

/** Analyses by call site (and source): a graph, or the promise of one. */
const ANALYSES = new Map();
/** The search for an analysis's module state in the running program (live.js), by analysis. */
const MODULE_STATES = new WeakMap();
let liveModule = null;
/** live.js, loaded at the first function that reads module state. */
function live_() {
  liveModule ??= require('./live');
  return liveModule;
}
/** Native registrations by identity and options: memo() run again reuses its handle. */
const REGISTRATIONS = new Map();
/** Parameter names and `this` use by function source. */
const FUNCTION_INFO = new Map();

// The globals the runtime starts with (`Math`, `JSON`, `Buffer`, …), taken when HitSave loads.
const BUILTIN_GLOBALS = new Set(Object.getOwnPropertyNames(globalThis));
const FUNCTION_FINGERPRINTS = new WeakMap();

/**
 * The fingerprint of a function passed as an argument, or a string saying
 * why it cannot be hashed (the walker then refuses it). A memoized function
 * carries its whole graph; any other function counts by its own source, so
 * one that reads variables around it (a closure's `k`, a helper it calls) is
 * refused: their values and code are not in its source, and two calls with
 * different closures would share a key.
 */
function fingerprintFunction(fn) {
  const memoized = fn[IDENTITY];
  if (memoized) return memoized();
  let known = FUNCTION_FINGERPRINTS.get(fn);
  if (known === undefined) {
    known = sourceFingerprintOf(fn);
    // A function's source and closure never change: what was found holds for the object's life.
    FUNCTION_FINGERPRINTS.set(fn, known);
  }
  if (known.reason !== undefined) return known.reason;
  // Its properties do change: checked on every call.
  const added = addedProperties(fn, known);
  return added === null ? known.fingerprint : `it carries state its source leaves out (${added}); pass memo(fn) or the values instead`;
}

// What every function may have of its own: none of it is state.
const FUNCTION_OWN = new Set(['length', 'name', 'prototype', 'arguments', 'caller']);

/**
 * The properties a function argument has beyond its source, named, or null:
 * `fn.k = 1`, `P.prototype.calc = function …` after the declaration, a class's
 * static data field. A member whose code is in the function's own source (a
 * class's methods, accessors and static methods) is not state.
 */
function addedProperties(fn, { source, members }) {
  const added = [];
  // Whether a member's code is in the source, by member (neither text changes): a call pays no text search.
  const inText = (member) => {
    let found = members.get(member);
    if (found === undefined) {
      found = source.includes(Function.prototype.toString.call(member));
      members.set(member, found);
    }
    return found;
  };
  const inSource = (descriptor) =>
    ['value', 'get', 'set'].every((part) => {
      const member = descriptor[part];
      return member === undefined || (typeof member === 'function' && inText(member));
    });
  for (const key of Reflect.ownKeys(fn)) {
    if (typeof key === 'string' && FUNCTION_OWN.has(key)) continue;
    if (!inSource(Object.getOwnPropertyDescriptor(fn, key))) added.push(String(key));
  }
  // Its prototype as made (a class's holds the methods of its body; a
  // function's only `constructor`), or one assigned later (`P.prototype = { … }`).
  const prototype = Object.getOwnPropertyDescriptor(fn, 'prototype')?.value;
  if (prototype !== null && typeof prototype === 'object') {
    const isClass = source.startsWith('class');
    for (const key of Reflect.ownKeys(prototype)) {
      if (key === 'constructor' && prototype.constructor === fn) continue;
      if (!isClass || !inSource(Object.getOwnPropertyDescriptor(prototype, key))) added.push(`prototype.${String(key)}`);
    }
    // A generator function's prototype inherits from the generator prototype; any other function's from Object's.
    const generator = /^\[object (Async)?GeneratorFunction\]$/.test(Object.prototype.toString.call(fn));
    if (!isClass && !generator && Object.getPrototypeOf(prototype) !== Object.prototype) added.push('a prototype chain set after it');
  }
  return added.length === 0 ? null : added.join(', ');
}

/** A function's fingerprint by its source alone (`{ fingerprint, source, members }`: `addedProperties`'s cache), or why it has none (`{ reason }`). */
function sourceFingerprintOf(fn) {
  const source = Function.prototype.toString.call(fn);
  if (source.includes('[native code]')) return { reason: 'a bound or builtin function has no source' };
  const free = native.freeNames(source);
  if (free === null) return { reason: 'its source does not parse alone' };
  const outside = free.filter((name) => !BUILTIN_GLOBALS.has(name) && name !== fn.name);
  if (outside.length > 0) return { reason: `it reads ${outside.join(', ')} from around it; pass memo(fn) or the values instead` };
  return { fingerprint: native.sourceFingerprint(source, fn.name || ''), source, members: new WeakMap() };
}

/** Fingerprints of a class and the classes it extends, by constructor (a class's source never changes in a process). */
const CLASS_FINGERPRINTS = new WeakMap();

// `this.#x`, `#x = 1;`, `#x in o`: a private name, outside strings as far as a cheap test can tell.
const PRIVATE_NAME = /(?:^|[\s{};.(,!&|])#[A-Za-z_$]/m;

/**
 * The code fingerprints of an instance's class chain, for its key; or a
 * string saying why its state cannot be read (the walker then refuses it).
 */
function classFingerprints(constructor) {
  if (typeof constructor !== 'function') return 'it has no constructor';
  let known = CLASS_FINGERPRINTS.get(constructor);
  if (known === undefined) {
    known = [];
    let files = null;
    for (let c = constructor; typeof c === 'function' && c !== Function.prototype; c = Object.getPrototypeOf(c)) {
      const source = Function.prototype.toString.call(c);
      if (source.includes('[native code]')) {
        known = `${c.name || 'a native class'} keeps its state in native slots`;
        break;
      }
      if (PRIVATE_NAME.test(source)) {
        known = `${c.name || 'its class'} keeps state in #private fields`;
        break;
      }
      // A project class counts by its graph (what its methods read, its
      // bases, `P.prototype.val = …`), found in the modules the program
      // imports, and by the text that runs; a package's class by that text.
      files ??= programFiles(stackSites(classFingerprints, 32));
      known.push(...native.classFingerprints(source, c.name || '', files, process.argv.slice(2)), native.sourceFingerprint(source, c.name || ''));
    }
    CLASS_FINGERPRINTS.set(constructor, known);
  }
  return known;
}

/** Whether a property key is an array index. */
const isIndex = (key) => typeof key === 'string' && String(Number(key) >>> 0) === key;

// Arrays up to this length have their keys listed; longer ones are asked
// through `util.inspect` (`arrayExtras`). The walker's SHORT_ARRAY (walk.rs).
const SHORT_ARRAY = 256;

// What `util.inspect` shows of an array with nothing but its elements (`maxArrayLength: 0`, hidden keys shown).
const ARRAY_SHOWN = { maxArrayLength: 0, depth: 0, showHidden: true, customInspect: false, getters: false, breakLength: Infinity };
const TYPED_SHOWN = { ...ARRAY_SHOWN, showHidden: false };

/**
 * The own properties of a long array besides its elements and `length`
 * (joined), or null. `util.inspect` lists an array's non-index properties
 * without listing its indices, which `Reflect.ownKeys` would (seconds for
 * millions of items); any output but the plain one means there is more, and
 * the keys are then listed to name it.
 */
function arrayExtras(array) {
  const n = array.length;
  const items = `[ ... ${n} more item${n === 1 ? '' : 's'}`;
  if (ArrayBuffer.isView(array)) {
    // A TypedArray or Buffer: its enumerable properties (with hidden ones
    // shown, its buffer and offset would be too).
    if (util.inspect(array, TYPED_SHOWN).endsWith(`${items} ]`)) return null;
  } else if (util.inspect(array, ARRAY_SHOWN) === `${items}, [length]: ${n} ]`) {
    return null;
  }
  return ownNonIndex(array, ['length']);
}

/** The `[text, digest]` pairs of the files an argument list names (its last item `['hitsave:files', …]`), or none. */
function argumentFiles(list) {
  const last = list[list.length - 1];
  return Array.isArray(last) && last.length === 2 && last[0] === 'hitsave:files' ? last[1] : [];
}

/**
 * An array with properties of its own besides its elements, as
 * `[its elements (a plain copy), { those properties }]` for its key, or a
 * string saying why it cannot be read faithfully (a non-enumerable property
 * or one under a symbol key, which the key would leave out).
 */
function splitArray(array) {
  const properties = {};
  for (const key of Reflect.ownKeys(array)) {
    if (typeof key === 'symbol') return 'own properties under symbol keys';
    if (key === 'length' || isIndex(key)) continue;
    if (!Object.prototype.propertyIsEnumerable.call(array, key)) return `own non-enumerable properties: ${key}`;
    properties[key] = array[key];
  }
  return [Array.prototype.slice.call(array), properties];
}

native.init({ HitSaveError, File, NDArray, EventEmitter, Buffer, fingerprintFunction, classFingerprints, arrayExtras, splitArray });

const MISS_STATUS = 0;
const HIT_VALUE = 1;
const HIT_DATA = 2;
const STORE_ERROR = 3;
// What one attempt at a compute lock found (tryLockComputeAsync).
const LOCK_HELD = 0;
const LOCK_BUSY = 1;

const PORTABLE = 'portable';
const V8 = 'v8';

function warnOnce(error) {
  native.warnOnce(String(error && error.code ? error.code : 'store_io'), String(error && error.message));
}

/**
 * `callSite`'s answers by the stack's positions as V8 reports them: memo()
 * run again at one place (in a request handler) finds it again without
 * source maps, URLs or the file system (bounded: stacks made at run time
 * could be endless).
 */
const CALL_SITES = new Map();

/** The place `memo()` was called from: where its argument is found in the source. */
function callSite(skip) {
  const sites = stackSites(skip, 12);
  let key = '';
  for (const site of sites) key += `${site.getFileName()}:${site.getLineNumber()}:${site.getColumnNumber()}\n`;
  let where = CALL_SITES.get(key);
  if (where === undefined) {
    where = callSiteOf(sites);
    if (CALL_SITES.size >= 4096) CALL_SITES.clear();
    CALL_SITES.set(key, where);
  }
  return where;
}

/** `callSite` of a stack's `sites`, innermost first. */
function callSiteOf(sites) {
  const site = sites[0];
  if (!site) return null;
  let file = site.getFileName();
  if (!file) return null;
  // The files of the calls that led here: when memo() is called by the
  // project's own helper, the function passed is defined in one of them.
  const others = programFiles(sites.slice(1));
  const where = { file, line: site.getLineNumber() || 0, column: site.getColumnNumber() || 0, script: null, others };
  originalPosition(where);
  if (where.file.startsWith('file://')) where.file = require('node:url').fileURLToPath(where.file);
  file = where.file;
  // `node -e` and a script piped to `node -` have no file: analyse their text, placed where they run.
  const base = require('node:path').basename(file);
  if (/^\[(eval\d*|stdin)\]$/.test(base) && typeof process._eval === 'string') {
    where.file = require('node:path').join(process.cwd(), base);
    where.script = process._eval;
  }
  return where;
}

/** The call sites (V8's CallSite objects) of the calls that led to the caller of `skip`, innermost first. */
function stackSites(skip, limit) {
  const saved = Error.prepareStackTrace;
  const savedLimit = Error.stackTraceLimit;
  try {
    Error.stackTraceLimit = limit;
    Error.prepareStackTrace = (_, sites) => sites;
    const holder = {};
    Error.captureStackTrace(holder, skip);
    return Array.isArray(holder.stack) ? holder.stack : [];
  } finally {
    Error.prepareStackTrace = saved;
    Error.stackTraceLimit = savedLimit;
  }
}

/**
 * The files of the stack `sites` (call sites, innermost first; not node's
 * own, not this file), then the entry script: what it imports ran before
 * this call, and may have changed what the function reads (its effects count).
 */
const HITSAVE_DIRECTORY = __dirname + require('node:path').sep;

function programFiles(sites) {
  const files = [];
  for (const caller of sites) {
    let name = caller.getFileName();
    if (!name || name.startsWith('node:')) continue;
    if (name.startsWith('file://')) name = require('node:url').fileURLToPath(name);
    if (name === __filename || name.startsWith(HITSAVE_DIRECTORY)) continue; // this package's own files
    if (!files.includes(name)) files.push(name);
  }
  const entry = process.argv[1] && require('node:path').resolve(process.argv[1]);
  if (entry && !files.includes(entry) && require('node:fs').existsSync(entry)) files.push(entry);
  return files;
}


/**
 * Code that was transpiled as it loaded (TypeScript through tsx or ts-node,
 * a bundle) reports positions in the generated code; with source maps on
 * (they are, for tsx; `--enable-source-maps` otherwise) the map gives the
 * position in the file the user wrote, which is the one analysed.
 */
function originalPosition(where) {
  let map;
  try {
    map = require('node:module').findSourceMap(where.file);
  } catch {
    return;
  }
  if (!map || where.line < 1) return;
  const entry = map.findEntry(where.line - 1, Math.max(0, where.column - 1));
  if (!entry || typeof entry.originalLine !== 'number' || !entry.originalSource) return;
  const original = entry.originalSource;
  let file = original;
  try {
    if (file.startsWith('file://')) file = require('node:url').fileURLToPath(file);
  } catch {
    return;
  }
  // Only a source the user has on disk (not `webpack://…`, not a file that is gone).
  if (!require('node:path').isAbsolute(file) || !require('node:fs').existsSync(file)) return;
  where.file = original;
  where.line = entry.originalLine + 1;
  where.column = entry.originalColumn + 1;
}

function decodeHit(status, payload, functionName) {
  if (status === HIT_VALUE) return payload;
  const [codec, language, data] = payload;
  if (codec === V8) return v8.deserialize(data);
  native.throwForeignCodec(functionName, language, codec);
}

// Prototypes v8 serialization brings back as they were (Buffer, every
// TypedArray, DataView, the native errors, boxed primitives, …).
const V8_FAITHFUL = new Set(
  [Object, Array, Map, Set, Date, RegExp, ArrayBuffer, DataView, Buffer, Number, String, Boolean, BigInt,
    Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError,
    Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
    Float32Array, Float64Array, BigInt64Array, BigUint64Array]
    .map((type) => type.prototype),
);

/**
 * Where a result holds something v8 serialization would bring back as
 * something else (a class instance as a plain object, a subclass of Array or
 * Map as its base): `[path, class name]`, or null when it round-trips.
 */
function unfaithfulToV8(value) {
  const seen = new Set();
  const stack = [[value, 'result']];
  while (stack.length) {
    const [item, where] = stack.pop();
    if (item === null || typeof item !== 'object' || seen.has(item)) continue;
    seen.add(item);
    const prototype = Object.getPrototypeOf(item);
    if (prototype === null) {
      // `Object.create(null)`, `Object.groupBy`'s result: v8 gives it Object's
      // prototype, so `'constructor' in o` and `o.toString` would change.
      return [where, 'an object without a prototype', 'brings back with Object.prototype'];
    }
    if (!V8_FAITHFUL.has(prototype)) {
      const name = prototype && typeof prototype.constructor === 'function' ? prototype.constructor.name : 'object';
      return [where, name || 'an anonymous class', 'brings back as a plain object (or its base class)'];
    }
    if (Object.getOwnPropertySymbols(item).some((symbol) => Object.prototype.propertyIsEnumerable.call(item, symbol))) {
      return [where, 'properties under symbol keys', 'leaves out'];
    }
    const hidden = hiddenProperties(item, prototype);
    if (hidden !== null) return [where, `properties (${hidden}) that are not enumerable or not its contents`, 'leaves out'];
    if (ArrayBuffer.isView(item)) continue;
    if (item instanceof Map) {
      let index = 0;
      for (const [key, entry] of item) {
        stack.push([key, `${where} key ${index}`], [entry, `${where}.get(${index++})`]);
      }
    } else if (item instanceof Set) {
      let index = 0;
      for (const member of item) stack.push([member, `${where} member ${index++}`]);
    } else if (Array.isArray(item)) {
      item.forEach((entry, index) => stack.push([entry, `${where}[${index}]`]));
    } else {
      for (const key of Object.keys(item)) {
        stack.push([item[key], /^[A-Za-z_$][\w$]*$/.test(key) ? `${where}.${key}` : `${where}[${JSON.stringify(key)}]`]);
      }
    }
  }
  return null;
}

/** A plain object's or array's own non-enumerable properties (v8 serialization drops them), joined, or null; any own property of a builtin v8 writes as its contents alone. */
function hiddenProperties(item, prototype) {
  if (ArrayBuffer.isView(item) && !(item instanceof DataView)) return item.length > SHORT_ARRAY ? arrayExtras(item) : ownNonIndex(item);
  if (item instanceof RegExp) return ownNonIndex(item, ['lastIndex']);
  if (item instanceof Map || item instanceof Set || item instanceof Date || item instanceof ArrayBuffer || item instanceof DataView) return ownNonIndex(item);
  let names;
  if (prototype === Array.prototype) {
    if (item.length > SHORT_ARRAY && arrayExtras(item) === null) return null;
    names = Object.getOwnPropertyNames(item).filter((key) => key !== 'length' && !isIndex(key));
  } else if (prototype === Object.prototype) {
    names = Object.getOwnPropertyNames(item);
  } else {
    return null;
  }
  const hidden = names.filter((key) => !Object.prototype.propertyIsEnumerable.call(item, key));
  return hidden.length === 0 ? null : hidden.join(', ');
}

/** An object's own keys but its indices and `allowed` (joined), or null. */
function ownNonIndex(item, allowed = []) {
  const extra = Reflect.ownKeys(item).filter((key) => typeof key !== 'string' || (!allowed.includes(key) && !isIndex(key)));
  return extra.length === 0 ? null : extra.map((key) => (typeof key === 'string' ? key : 'a symbol key')).join(', ');
}

function encodeResult(value, codec, functionName) {
  if (codec !== V8) {
    const data = native.encodePortable(value);
    if (data !== null) return [PORTABLE, data];
    if (codec === PORTABLE) {
      process.emitWarning(`hitsave: ${functionName}: the result has no portable form; it is returned but not stored`);
      return null;
    }
    // A hit must give back what the call returned: a class instance that
    // v8 would turn into a plain object is not stored (an explicit
    // codec: 'v8' stores what v8 serialization keeps).
    const unfaithful = unfaithfulToV8(value);
    if (unfaithful !== null) {
      process.emitWarning(
        `hitsave: ${functionName}: the result holds ${unfaithful[1]} at ${unfaithful[0]}, which v8 serialization ` +
          `${unfaithful[2]}; it is returned but not stored. Return plain data, or pass codec: 'v8' to store what v8 keeps`,
        { type: 'HitSaveNotStoredWarning', code: 'HITSAVE_NOT_FAITHFUL' },
      );
      return null;
    }
  }
  try {
    return [V8, v8.serialize(value)];
  } catch (error) {
    process.emitWarning(`hitsave: ${functionName}: the result cannot be serialized (${error.message}); it is returned but not stored`);
    return null;
  }
}

function locate(error, functionName) {
  if (error instanceof HitSaveError && typeof error.path === 'string' && !error.path.startsWith('args')) {
    error.message = `${functionName}: ${error.message}`.replace(' at [', ' at args[');
    error.path = `args${error.path}`;
  }
  return error;
}

/**
 * A graph's nodes with the module-level variables it reads by their values
 * now (`state:<file>:<name>` nodes, each a dependency of its variable's
 * node), and the root's fingerprint over them. A variable the running
 * program does not let the search reach cannot be read: refused, since its
 * value may be anything.
 */
function withModuleState(graph, search, functionName, anchor) {
  if (search.unfound.length) {
    throw new HitSaveError(
      `${functionName}: the variables ${search.unfound.join(', ')} that it reads could not be found in the running program` +
        `${search.failure ? ` (${search.failure})` : ''}, ` +
        'so their values (which code may change while it runs) cannot be counted; pass them as arguments, or give the function a name and version',
      'code_unavailable',
    );
  }
  const nodes = graph.nodes.map((node) => [node[0], node[1], node[2], node[3].slice()]);
  const root = nodes.findIndex((node) => node[1] === graph.root);
  const names = new Set();
  // Each closure is read once for the snapshots and the digests.
  return search.remembering(() => {
    const reading = search.read();
    const digests = [];
    for (const [at, variable, value] of reading.values) {
      // A generator or a built-in iterator (`idGen()`, `rows[Symbol.iterator]()`):
      // each `next()` moves it, and where it is cannot be read back.
      const kind = value !== null && typeof value === 'object' && /^\[object (.*(?:Iterator|Generator))\]$/.exec(Object.prototype.toString.call(value));
      if (kind) {
        throw new HitSaveError(
          `${functionName}: it reads ${variable}, ${/^[AEIOU]/.test(kind[1]) ? 'an' : 'a'} ${kind[1]} whose position changes as it is read and cannot be read back, ` +
            'so results computed at different positions could not be told apart; pass the values it gives as arguments, or make it an array',
          'code_unavailable',
        );
      }
      // `state:<its node>` (`/<name>` for one of several names a declaration
      // binds; `#2`… where another module's import of it is read too); a
      // global under the root, `state:global:<name>`.
      const node = at < 0 ? root : at;
      const unit = at < 0 ? 'global' : graph.nodes[node][1];
      let name = `state:${unit}${unit.endsWith(`:${variable}`) ? '' : at < 0 ? `:${variable}` : `/${variable}`}`;
      for (let n = 2; names.has(name); n++) name = `state:${unit}/${variable}#${n}`;
      names.add(name);
      nodes[node][3].push(nodes.length);
      const digest = stateDigest(value, search.held);
      digests.push(digest);
      nodes.push(['constant', name, digest, []]);
    }
    reading.digests = digests;
    // Code that reads a path known only when it runs may read one these
    // values hold (`readFileSync(cfg.data)`): those files count by contents,
    // and are watched in the process (by the reading) like the graph's own files.
    if (graph.readsUnknown) {
      const texts = live_().pathsIn(reading.values.map(([, , value]) => value));
      if (texts.length) {
        const [found, watch] = native.fileNodes(anchor, texts);
        const known = new Set(nodes.map((node) => node[1]));
        for (const node of found) {
          if (known.has(node[1])) continue;
          nodes[root][3].push(nodes.length);
          nodes.push(node);
        }
        reading.files = watch;
      }
    }
    return [nodes, native.fingerprints(nodes)[root], reading];
  });
}

/**
 * The texts among arguments that may be paths: strings and `file:` URLs, and
 * those directly inside an array or an object's own values
 * (`loadAll(['a.csv', 'b.csv'])`, `run({ train: 'train.csv' })`, an
 * instance's `this.path`), at most 256.
 */
function pathTexts(values) {
  const texts = [];
  for (const value of values) {
    const items =
      Array.isArray(value) ? value : value !== null && typeof value === 'object' && !(value instanceof URL) && !ArrayBuffer.isView(value) ? Object.values(value) : [value];
    for (const item of items) {
      // A path fits in 4,096 characters: a longer text (a document) is never copied to the addon.
      if (typeof item === 'string' && item.length <= 4096) texts.push(item);
      else if (item instanceof URL && item.protocol === 'file:') texts.push(decodeURIComponent(item.pathname));
      if (texts.length >= 256) return texts;
    }
  }
  return texts;
}

let CONFIGURED_OFF;

/**
 * Whether the configuration says `HITSAVE_MODE=off`: every memoized
 * function is then called directly, with no analysis (as in Python), so
 * off works for code the analysis refuses. An invalid configuration is
 * left for registration to report.
 */
function configuredOff() {
  if (CONFIGURED_OFF === undefined) {
    try {
      CONFIGURED_OFF = native.configuration()[0] === 'off';
    } catch {
      CONFIGURED_OFF = false;
    }
  }
  return CONFIGURED_OFF;
}

/** Whether each function's text is written in the project (by text: closures of one factory share it). */
const PROJECT_FUNCTIONS = new Map();

/** Whether a function value was made by the project's code, not a package's (`native.projectFunction`). */
function projectFunction(fn) {
  const source = Function.prototype.toString.call(fn);
  let known = PROJECT_FUNCTIONS.get(source);
  if (known === undefined) {
    known = !source.includes('[native code]') && native.projectFunction(source, programFiles(stackSites(projectFunction, 32)));
    if (PROJECT_FUNCTIONS.size >= 4096) PROJECT_FUNCTIONS.clear();
    PROJECT_FUNCTIONS.set(source, known);
  }
  return known;
}

/** Whether each class is a package's (or Node's), not the project's: by constructor. */
const PACKAGE_CLASSES = new WeakMap();

/**
 * Whether a value is an instance of a class the project does not define (a
 * logger, a database client, a pool, an LRU cache from a package, an
 * EventEmitter): module state counts such an object by its class and
 * identity, not its contents, which are the package's (a process id, a
 * start time, lines logged) and would make every process and every call
 * miss.
 */
function packageInstance(value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || ArrayBuffer.isView(value)) return false;
  const prototype = Object.getPrototypeOf(value);
  if (prototype === null || prototype === Object.prototype || value instanceof Map || value instanceof Set) return false;
  if (value instanceof Date || value instanceof RegExp || value instanceof NDArray || value instanceof File) return false;
  // Node's own classes written in JavaScript whose state is known (`stateParts`).
  if (value instanceof URL || value instanceof URLSearchParams) return false;
  const constructor = prototype.constructor;
  if (typeof constructor !== 'function') return false;
  let known = PACKAGE_CLASSES.get(constructor);
  if (known === undefined) {
    const source = Function.prototype.toString.call(constructor);
    known = !source.includes('[native code]') && !native.projectClass(source, constructor.name || '', programFiles(stackSites(packageInstance, 32)));
    PACKAGE_CLASSES.set(constructor, known);
  }
  return known;
}

/**
 * What module state holds that an argument cannot (the walker refuses it
 * there), by its parts, so a change of it is seen: an object or array with
 * properties under symbol keys (by their descriptions: state is compared
 * within one program, whose symbols these are), an array with holes, or
 * holding such a value; a `URL` by its `href` (`URLSearchParams` by its
 * text), a boxed primitive by its
 * value, an `Error` by its name, message and own properties. Null for
 * anything else (a promise, a socket): that counts by its type only.
 */
function stateParts(value, digest) {
  if (value === null || typeof value !== 'object') return null;
  const prototype = Object.getPrototypeOf(value);
  const symbols = () =>
    Object.getOwnPropertySymbols(value)
      .filter((symbol) => Object.prototype.propertyIsEnumerable.call(value, symbol))
      .map((symbol) => [String(Symbol.keyFor(symbol) ?? symbol.description), digest(value[symbol])]);
  if (Array.isArray(value) && prototype === Array.prototype) {
    const items = [];
    for (let index = 0; index < value.length; index++) items.push(index in value ? [digest(value[index])] : []);
    return ['array', items, Object.keys(value).filter((key) => !/^\d+$/.test(key)).map((key) => [key, digest(value[key])]), symbols()];
  }
  if (prototype === Object.prototype || prototype === null) {
    return ['object', prototype === null, Object.entries(value).map(([key, part]) => [key, digest(part)]), symbols()];
  }
  if (value instanceof URL) return ['URL', value.href];
  if (value instanceof URLSearchParams) return ['URLSearchParams', value.toString()];
  if (value instanceof Number || value instanceof String || value instanceof Boolean) return ['boxed', typeof value.valueOf(), String(value.valueOf())];
  if (value instanceof Error) {
    return ['Error', value.name, value.message, Object.entries(value).map(([key, part]) => [key, digest(part)])];
  }
  return null;
}

/**
 * An analysis as the addon gives it, its nodes kept native-side (`nodesId`:
 * `registerFunction` takes them so): `graph.nodes` reads them, once, for
 * the module state to add to them (`withModuleState`).
 */
function withNodes(graph) {
  Object.defineProperty(graph, 'nodes', {
    configurable: true,
    get() {
      const nodes = native.graphNodes(graph.nodesId);
      Object.defineProperty(graph, 'nodes', { value: nodes });
      return nodes;
    },
  });
  return graph;
}

/**
 * How the variables of `fn`'s closure `scopes` are digested: each by value;
 * a function among them with what its own closure holds only when `fn`'s
 * code can call it (`live.calledNames`), as the checks before each call
 * compare them (`live.snapshot`).
 */
function closureVariableDigest(fn, scopes, held, level) {
  // Only when a scope of its own is digested (lodash's functions share theirs: a reference each).
  let named = null;
  const nothing = () => null;
  return (name, part) => {
    named ??= live_().calledNames(fn, scopes);
    return stateDigest(part, named.has(name) ? held : nothing, level + 1);
  };
}

/**
 * A scope's variable names in one order: the inspector lists a scope's
 * variables in an order that differs between processes (lodash's
 * runInContext scope), which made every process miss.
 */
function scopeNames(scope) {
  return Object.keys(scope).sort();
}

/**
 * A closure's scopes as `[name, digest]` pairs each, or, for a scope being
 * read further out, a reference to it (how far out): all of the function's
 * scopes are on the path while any of them is read; `digest(name, value)`.
 */
function closureDigestParts(scopes, digest) {
  // The scopes being read (`live.readingScopes`, shared with the snapshots): a
  // function defined beside the one being read shares its scopes, whose
  // variables count once, as a reference to the enclosing reading, not once
  // per function in them (lodash's 600 functions of two scopes: 90,000 digests).
  return live_().readingScopes(scopes, (outer, base) =>
    scopes.map((scope, i) => (outer[i] >= 0 ? ['scope', base - outer[i]] : scopeNames(scope).map((name) => [name, digest(name, scope[name])]))),
  );
}

/**
 * The objects and functions whose digest is being taken, outermost first:
 * a value met again inside itself (lodash's `_.templateSettings.imports._`
 * is `_`) counts as a reference to that enclosing value, by how many levels
 * up it is, instead of being digested again without end.
 */
const STATE_PATH = [];

/** How deep module state is read before the function is refused (the stack would not hold more). */
const STATE_DEPTH = 256;

/** A module-level variable's value digest: by value, else (a promise, a symbol) by its type. */
function stateDigest(value, held = () => null, level = 0) {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return stateDigestOf(value, held, level);
  const at = STATE_PATH.lastIndexOf(value);
  if (at >= 0) return native.valueDigest(['state', 'cycle', STATE_PATH.length - at]);
  if (STATE_PATH.length >= STATE_DEPTH) {
    throw new HitSaveError(
      `module state nested more than ${STATE_DEPTH} levels deep cannot be read, so its changes could not be seen; ` +
        'pass the value as an argument, or give the function a name and version',
      'code_unavailable',
    );
  }
  STATE_PATH.push(value);
  try {
    return stateDigestOf(value, held, level);
  } finally {
    STATE_PATH.pop();
  }
}

/** `stateDigest` of a value not on `STATE_PATH` (or a primitive). */
function stateDigestOf(value, held, level) {
  if (value === live_().MISSING) return native.valueDigest(['state', 'unread']);
  // A request's context (`als.getStore()` inside): by the store of the context calling.
  if (value instanceof AsyncLocalStorage) return native.valueDigest(['state', 'AsyncLocalStorage', stateDigest(value.getStore(), held, level + 1)]);
  if (packageInstance(value)) return native.valueDigest(['state', 'instance', Object.getPrototypeOf(value).constructor.name || '']);
  if (level <= 1 && value !== null && (typeof value === 'object' || typeof value === 'function') && live_().mayHide(value)) {
    // #private fields, a WeakMap's entries (`live.js` reads them): with the rest.
    const hidden = live_().hiddenOf(value);
    const digest = (part) => stateDigest(part, held, level + 1);
    const rest = value instanceof WeakMap || value instanceof WeakSet ? Object.prototype.toString.call(value) : stateDigestVisible(value, held, level);
    const entries = hidden.entries.map(([key, part]) => [digest(key), digest(part)]).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return native.valueDigest(['state', 'hidden', rest, hidden.private.map(([name, part]) => [name, digest(part)]), entries]);
  }
  return stateDigestVisible(value, held, level);
}

/** `stateDigest` of what JavaScript can see of a value. */
function stateDigestVisible(value, held, level) {
  if (typeof value === 'function' && !value[IDENTITY]) {
    // A function or class (a memoized one counts by its fingerprint): its
    // code is in the graph; its source, for a variable that holds another
    // function now, and the data it carries (`static k = 2`, `helper.factor = 3`);
    // what a bound function or a project closure holds (`ModuleState.held`).
    const data = {};
    for (const key of Object.keys(value)) if (typeof value[key] !== 'function') data[key] = value[key];
    const inside = level <= 1 ? held(value) : null;
    const digest = (part) => stateDigest(part, held, level + 1);
    const holds =
      inside === null
        ? null
        : inside.bound
          ? ['bound', ...inside.bound.map(digest)]
          : ['closure', closureDigestParts(inside.variables, closureVariableDigest(value, inside.variables, held, level))];
    return stateDigest(['state', 'code', Function.prototype.toString.call(value), data, holds]);
  }
  if (level === 0 && value !== null && typeof value === 'object' && (Array.isArray(value) || Object.getPrototypeOf(value) === Object.prototype)) {
    // An object or array holding functions (`const gen = makeRng(1)` giving
    // `{ next, reset }`): each function as above, the rest by value.
    const entries = Object.entries(value);
    if (entries.some(([, part]) => typeof part === 'function')) {
      return native.valueDigest(['state', 'holding', entries.map(([key, part]) => [key, stateDigest(part, held, 1)])]);
    }
  }
  try {
    return native.valueDigest(value);
  } catch (error) {
    if (!(error instanceof HitSaveError)) throw error;
    // A memoized function whose graph cannot be built: its text.
    if (typeof value === 'function') return native.valueDigest(['state', 'function', Function.prototype.toString.call(value)]);
    const parts = stateParts(value, (part) => stateDigest(part, held, level + 1));
    if (parts !== null) return native.valueDigest(['state', 'parts', parts]);
    const type = value === null || value === undefined ? String(value) : typeof value === 'object' ? Object.prototype.toString.call(value) : typeof value;
    return native.valueDigest(['state', 'opaque', type]);
  }
}

/**
 * Save `fn`'s results on disk, keyed by its arguments and its code.
 *
 * @param {Function} fn the function to memoize
 * @param {object} [options]
 * @param {string} [options.name] explicit identity (with `version`): shares results with Python
 * @param {string|number} [options.version]
 * @param {Array<string|number>} [options.ignore] parameter names or positions left out of the key
 * @param {boolean} [options.local=true] use the local store (false: always compute)
 * @param {boolean} [options.cloud=true] use the HitSave cloud when configured (false: local only)
 * @param {'portable'|'v8'} [options.codec] how results are stored (default: portable when exact, else v8)
 * @param {boolean} [options.async] the function returns a promise (default: detected for `async` functions)
 * @param {string} [options.cacheDir] a store directory other than the configured one
 */
function memo(fn, options = {}) {
  if (typeof fn !== 'function') throw new TypeError('memo: expected a function');
  if (options === null || typeof options !== 'object') throw new TypeError('memo: options must be an object');
  const unknown = Object.keys(options).filter((option) => !MEMO_OPTIONS.has(option));
  if (unknown.length) {
    throw new TypeError(`memo: unknown option ${unknown.join(', ')} (options: ${[...MEMO_OPTIONS].join(', ')})`);
  }
  const { name, version, ignore = [], local = true, cloud, codec, cacheDir } = options;
  if ((name === undefined) !== (version === undefined)) {
    throw new TypeError('memo: give both name and version (an explicit identity), or neither');
  }
  if (codec !== undefined && codec !== PORTABLE && codec !== V8) {
    throw new TypeError(`memo: unknown codec ${codec}; available: 'portable', 'v8' (default: portable when exact, else v8)`);
  }
  const site = name === undefined ? callSite(memo) : null;
  const source = Function.prototype.toString.call(fn);
  let info = FUNCTION_INFO.get(source);
  if (info === undefined) {
    info = native.functionInfo(source);
    if (FUNCTION_INFO.size >= 4096) FUNCTION_INFO.clear(); // bounded: sources made at run time could be endless
    FUNCTION_INFO.set(source, info);
  }
  const [params, usesThis, countsArguments] = info;
  const ignored = new Set();
  for (const item of ignore) {
    const index = typeof item === 'number' ? item : params.indexOf(item);
    if (index < 0 || (typeof item === 'number' && !Number.isInteger(item))) {
      throw new TypeError(`memo: ignore names a parameter ${String(item)} that ${fn.name || 'the function'} does not have`);
    }
    ignored.add(index);
  }
  const isAsync = options.async ?? Object.prototype.toString.call(fn) === '[object AsyncFunction]';
  // A plain function seen returning a promise: its hits are promises too from then on.
  let promised = false;
  const functionName =
    name !== undefined ? String(name) : `${site ? site.file.split(/[\\/]/).pop() : '<unknown>'}:${fn.name || 'anonymous'}`;

  let state = null; // { handle, mode, fingerprint, graph }
  // The search with this function's closure (`ModuleState.withClosure`), for the graph it was made for.
  let closure = null;
  // The command-line arguments count by value where the code reads them (`process.argv`).
  const where = [site ? site.file : '', site ? site.line : 0, site ? site.column : 0, source, site ? site.script : null, site ? site.others : [], process.argv.slice(2)];
  let registering = false;
  function register(graph) {
    if (state !== null) return state;
    const spec = { functionName, cacheDir, cloud: cloud !== false };
    let live = null;
    if (name !== undefined) {
      spec.name = String(name);
      spec.version = String(version);
    } else if (graph.state.length || graph.stateGlobals.length || graph.captures.length) {
      // The module-level variables the graph reads, found in the running
      // program once per analysis (live.js: memo() run again at one call
      // site searches once), read again at each registration.
      let search = MODULE_STATES.get(graph);
      if (search === undefined) {
        search = new (live_().ModuleState)(fn, graph.state, graph.stateNames, graph.stateGlobals, {
          opaque: packageInstance,
          watchCurrent: native.watchCurrent,
          projectFunction,
          hash: (view) => native.blobDigest(view),
          declaredFunctions: native.declaredFunctions,
        });
        MODULE_STATES.set(graph, search);
      }
      if (graph.captures.length) {
        // The variables of the code around it (`make(3)`'s `k`): this
        // function's own closure, read for this memo() alone.
        if (closure === null || closure.graph !== graph) {
          const root = graph.nodes.findIndex((node) => node[1] === graph.root);
          closure = { graph, search: search.withClosure(fn, graph.captures, root) };
        }
        search = closure.search;
      }
      registering = true;
      let nodes, fingerprint;
      try {
        // memo() run again at this call site with the state as it was: the
        // last registration's reading holds, so it is reused.
        const last = search.last;
        if (last && last.reading.current()) {
          ({ nodes, fingerprint, reading: live } = last);
        } else {
          [nodes, fingerprint, live] = withModuleState(graph, search, functionName, where[0]);
          search.last = { nodes, fingerprint, reading: live };
        }
      } finally {
        registering = false;
      }
      spec.fingerprint = fingerprint;
      spec.graph = { root: graph.root, nodes };
    } else {
      spec.fingerprint = graph.fingerprint;
      spec.graph = { root: graph.root, nodesId: graph.nodesId };
    }
    // memo() run again for one function (in a request handler) registers once.
    const registration = `${functionName}\0${cacheDir}\0${spec.cloud}\0${spec.name}\0${spec.version}\0${spec.fingerprint}`;
    let known = REGISTRATIONS.get(registration);
    if (known === undefined) {
      const [handle, mode, , lockWait] = native.registerFunction(spec);
      known = { handle, mode, lockWait };
      REGISTRATIONS.set(registration, known);
    }
    flushAtExit();
    state = { ...known, graph, live, fingerprint: graph ? spec.fingerprint : null, watch: graph ? graph.watch : 0 };
    return state;
  }
  // A file, a directory's listing or an environment variable the analysis
  // read changed in this process (`watchCurrent`): analyse again, so the
  // call gets the fingerprint of what it will read.
  function fresh() {
    if (state !== null && state.watch && !native.watchCurrent(state.watch)) {
      if (ANALYSES.get(site_key) === state.graph) ANALYSES.delete(site_key);
      state = null;
    } else if (state !== null && state.live !== null && !state.live.current()) {
      // A module-level variable it reads holds something else now
      // (`setScale(3)`, `cfg.k = 7`): the same code, another fingerprint.
      state = null;
    }
  }
  // Whether the files its arguments name count by contents: its code reads
  // files at paths known only when it runs (`(p) => readFileSync(p)`) or
  // writes files, or it has an explicit identity, whose code is not analysed
  // (docs/node.md; Python does the same).
  function filesInKey(s) {
    return name !== undefined || (s !== null && Boolean(s.graph) && s.graph.filesInKey);
  }
  // After a miss computed: a file an argument names that the call created
  // (`render(data, 'report.html')` writing it) is in the key of every later
  // call, which exists then; the result is stored under that key too, or the
  // next call would miss and run again. Only for files absent before the call
  // (which it therefore did not read); one that existed and changed is left
  // alone (it may have been read). `[key, digest]`, or null.
  function createdKey(s, self, args, before) {
    if (!filesInKey(s)) return null;
    const after = argumentList(self, args);
    const known = new Map(argumentFiles(before));
    const now = argumentFiles(after);
    if (now.some(([text, digest]) => known.has(text) && known.get(text) !== digest)) return null;
    if (!now.some(([text]) => !known.has(text))) return null;
    return native.argumentsKey(s.handle, after);
  }
  // Before a miss computes: a module-level value the checks before each call
  // compare only in part (a typed array over 64 KiB) changed in place since
  // it was counted. Registered again, so the result is stored under what it
  // is computed from, never under the old state.
  function stale(s) {
    if (s.live === null || !s.live.partial.some(Boolean)) return false;
    // Each closure read once for all of them (lodash's `_`, compared only in part, reaches 130).
    const search = s.live.state;
    if (!search.remembering(() => s.live.deepChanged((value) => stateDigest(value, search.held)))) return false;
    if (state === s) state = null;
    return true;
  }
  // The analysis of a call site is the same for every memo() made there in
  // this process (sources do not change under a running program, and a
  // function using run-time values of the code around it is refused), so
  // memo() run again (in a request handler, a loop) reuses it.
  const site_key = JSON.stringify(where);
  function registered() {
    if (state !== null) return state;
    if (name !== undefined) return register(null);
    let graph = ANALYSES.get(site_key);
    if (graph === undefined || graph instanceof Promise) {
      graph = withNodes(native.analyze(...where));
      ANALYSES.set(site_key, graph);
    }
    return register(graph);
  }
  // For async functions: the analysis (reading and parsing module sources,
  // fingerprinting in the core) runs on a worker; concurrent first calls share it.
  function registeredAsync() {
    let analysing = ANALYSES.get(site_key);
    if (analysing === undefined) {
      analysing = native.analyzeAsync(...where).then(
        (analysed) => {
          const graph = withNodes(analysed);
          ANALYSES.set(site_key, graph);
          return graph;
        },
        (error) => {
          ANALYSES.delete(site_key); // the next call tries again, as a sync function's would
          throw error;
        },
      );
      ANALYSES.set(site_key, analysing);
    }
    return Promise.resolve(analysing).then(register);
  }

  function boundArguments(self, args) {
    let end = args.length;
    // Trailing undefineds are missing arguments, unless the function can
    // count them (a rest parameter, `arguments`): `f(1, undefined)` is then another call.
    while (!countsArguments && end > 0 && args[end - 1] === undefined) end--;
    let list = end === args.length ? args : args.slice(0, end);
    if (ignored.size) list = list.filter((_, index) => !ignored.has(index));
    if (usesThis && self !== undefined && self !== globalThis) list = [self, ...list];
    return list;
  }

  function argumentList(self, args) {
    let list = boundArguments(self, args);
    if (filesInKey(state)) {
      const texts = pathTexts(list);
      if (texts.length) {
        const found = native.argumentFiles(texts);
        if (found.length) list = [...list, ['hitsave:files', found]];
      }
    }
    return list;
  }

  // Before a miss computes: the digest of the call's arguments without the
  // files they name (`digest` when none are named), for `changedSync`/`changedAsync`.
  function boundDigest(s, list, digest) {
    return argumentFiles(list).length ? native.argumentsKey(s.handle, list.slice(0, -1))[1] : digest;
  }
  // After a miss computed: whether the call changed its arguments (read
  // again, they digest differently from `before`). A hit would return the
  // result without changing them, so the host declines to store it. An
  // argument that can no longer be read changed too.
  function changedSync(s, self, args, before) {
    try {
      return native.argumentsKey(s.handle, boundArguments(self, args))[1] !== before;
    } catch {
      return true;
    }
  }
  // The same for async functions, read in slices like a lookup (the event
  // loop turning between them).
  async function changedAsync(s, self, args, before) {
    try {
      const { answer } = await walkedOn(native.lookupCallAsync(s.handle, boundArguments(self, args)));
      const [, after] = await answer;
      return after !== before;
    } catch {
      return true;
    }
  }

  function enabled() {
    return local && !configuredOff() && registered().mode !== 'off';
  }

  function save(s, value) {
    if (s.mode === 'read-only') return null;
    return encodeResult(value, codec, functionName);
  }

  // `recheck`: before a miss computes, digest what the checks before each
  // call compare only in part (`stale`), once: the call made again after it
  // registered anew does not (a value digesting differently each time would
  // otherwise register forever).
  function callSync(self, args, recheck = true) {
    fresh();
    if (!enabled()) return fn.apply(self, args);
    const s = state;
    const list = argumentList(self, args);
    let key, digest, status, payload;
    try {
      [key, digest, status, payload] = native.lookupCall(s.handle, list);
    } catch (error) {
      throw locate(error, functionName);
    }
    if (status === HIT_VALUE || status === HIT_DATA) {
      const value = decodeHit(status, payload, functionName);
      return promised ? Promise.resolve(value) : value;
    }
    if (status === STORE_ERROR) warnOnce(payload);
    if (recheck && stale(s)) return callSync(self, args, false);
    // A promise this function returned for the same key is still pending in
    // this process: share it (waiting for its lock here would block the
    // event loop it needs).
    const running = pending.get(key);
    if (running) return running;
    // Another process or thread may be computing this key: wait for it, then
    // look again (docs/configuration.md, HITSAVE_LOCK_WAIT).
    const [lock, again, found] = native.lockCompute(s.handle, key);
    let releaseLater = false;
    try {
      if (again === HIT_VALUE || again === HIT_DATA) {
        const value = decodeHit(again, found, functionName);
        return promised ? Promise.resolve(value) : value;
      }
      const before = boundDigest(s, list, digest);
      const start = process.hrtime.bigint();
      const value = fn.apply(self, args);
      if (value !== null && typeof value === 'object' && typeof value.then === 'function') {
        // A plain function that returned a promise: store what it resolves to.
        promised = true;
        releaseLater = lock !== null;
        const settled = settle(s, key, digest, value, start, () => changedAsync(s, self, args, before));
        const done = () => {
          pending.delete(key);
          if (releaseLater) native.releaseLock(lock);
        };
        settled.then(done, done);
        pending.set(key, settled);
        return settled;
      }
      const micros = Number((process.hrtime.bigint() - start) / 1000n);
      const encoded = save(s, value);
      if (encoded) {
        const changed = changedSync(s, self, args, before);
        stored(native.put(s.handle, key, digest, encoded[0], encoded[1], micros, changed));
        const created = !changed && createdKey(s, self, args, list);
        const copy = created && save(s, value);
        if (copy) stored(native.put(s.handle, created[0], created[1], copy[0], copy[1], micros));
      }
      return value;
    } finally {
      if (lock !== null && !releaseLater) native.releaseLock(lock);
    }
  }

  const pending = new Map();

  // What the host's `finish` did: `[outcome, warning]`. The host remembers
  // declined results for `why` and says, once per function, what to warn.
  function stored([, warning]) {
    if (warning !== null) process.emitWarning(warning, { type: 'HitSaveNotStoredWarning', code: 'HITSAVE_NOT_STORED' });
  }

  // `changed`: whether the call changed its arguments (`changedAsync`).
  async function settle(s, key, digest, promise, start, changed) {
    const value = await promise;
    const micros = Number((process.hrtime.bigint() - start) / 1000n);
    const encoded = save(s, value);
    if (encoded) stored(await native.putAsync(s.handle, key, digest, encoded[0], encoded[1], micros, await changed()));
    return value;
  }

  function callAsync(self, args, recheck = true) {
    fresh();
    if (state === null && local && name === undefined && !configuredOff()) return registeredAsync().then(() => callAsync(self, args, recheck));
    let first, list;
    try {
      if (!enabled()) return (async () => fn.apply(self, args))();
      list = argumentList(self, args);
      first = native.lookupCallAsync(state.handle, list);
      // A repeated hit comes back at once (nothing left that could block).
      if (Array.isArray(first)) return Promise.resolve(decodeHit(first[2], first[3], functionName));
    } catch (error) {
      return Promise.reject(locate(error, functionName));
    }
    if (typeof first === 'number') return walking(self, args, first, recheck, list);
    return lookedUp(self, args, first, recheck, list);
  }

  // What `lookupCallAsync` answered (`next`), once its walk is done: a paused
  // walk (a number) goes on after each turn of the event loop. Boxed as
  // `{ answer }`: an async function would otherwise settle the lookup's own
  // promise, which callers tell from a hit's array.
  async function walkedOn(next) {
    while (typeof next === 'number') {
      await new Promise(setImmediate);
      next = native.lookupCallResume(next);
    }
    return { answer: next };
  }

  // Arguments that take long to read are read in slices (a few ms each),
  // the event loop turning between them; `id` is the paused walk.
  async function walking(self, args, id, recheck, list) {
    let next;
    try {
      ({ answer: next } = await walkedOn(id));
    } catch (error) {
      throw locate(error, functionName);
    }
    if (Array.isArray(next)) return decodeHit(next[2], next[3], functionName);
    return lookedUp(self, args, next, recheck, list);
  }

  async function lookedUp(self, args, lookup, recheck, list) {
    const s = state;
    let key, digest, status, payload;
    try {
      [key, digest, status, payload] = await lookup;
    } catch (error) {
      throw locate(error, functionName);
    }
    if (status === HIT_VALUE || status === HIT_DATA) return decodeHit(status, payload, functionName);
    if (status === STORE_ERROR) warnOnce(payload);
    if (recheck && stale(s)) return callAsync(self, args, false);
    const running = pending.get(key);
    if (running) return running;
    const computation = (async () => {
      // The compute lock, polled with timers so that waiting for another
      // process holds neither this thread nor a libuv worker.
      let lock = null, again = MISS_STATUS, found = null;
      const started = Date.now();
      for (let tries = 0; ; tries++) {
        const [attempt, id, status, payload] = await native.tryLockComputeAsync(s.handle, key);
        // The host's schedule of pauses (`hitsave_host::function::lock_pause`).
        const pause = attempt === LOCK_BUSY ? native.lockPause(tries, Date.now() - started, s.lockWait) : null;
        if (pause !== null) {
          await new Promise((resolve) => setTimeout(resolve, pause));
          continue;
        }
        if (attempt === LOCK_HELD) [lock, again, found] = [id, status, payload];
        break;
      }
      try {
        if (again === HIT_VALUE || again === HIT_DATA) return decodeHit(again, found, functionName);
        // From before the call: an async function's synchronous part is compute time too.
        const before = boundDigest(s, list, digest);
        const start = process.hrtime.bigint();
        let changed = false;
        const value = await settle(s, key, digest, fn.apply(self, args), start, async () => (changed = await changedAsync(s, self, args, before)));
        const created = !changed && createdKey(s, self, args, list);
        const copy = created && save(s, value);
        if (copy) {
          const micros = Number((process.hrtime.bigint() - start) / 1000n);
          stored(await native.putAsync(s.handle, created[0], created[1], copy[0], copy[1], micros));
        }
        return value;
      } finally {
        if (lock !== null) native.releaseLock(lock);
      }
    })();
    pending.set(key, computation);
    try {
      return await computation;
    } finally {
      pending.delete(key);
    }
  }

  const memoized = isAsync
    ? function (...args) {
        return callAsync(this, args);
      }
    : function (...args) {
        return callSync(this, args);
      };

  Object.defineProperty(memoized, 'name', { value: fn.name, configurable: true });
  Object.defineProperty(memoized, 'length', { value: fn.length, configurable: true });
  memoized[IDENTITY] = () => {
    // Its own module state holds it (`const f = memo(…)` read by code it
    // runs): the cycle is cut at its source.
    if (registering) return native.sourceFingerprint(source, fn.name || '');
    const s = registered();
    return s.fingerprint ?? native.sourceFingerprint(`${functionName}@${String(version)}`, functionName);
  };
  /** The function's name in the store (`hitsave ls`). */
  memoized.functionName = functionName;
  // `f.key(x)`, `f.lookup(x)`, `f.why(x)` run with `f` as their receiver:
  // that is no receiver of the call they describe (`f.key.call(obj, x)`
  // gives one), or a method's keys would differ from its calls' keys.
  const receiver = (self) => (self === memoized ? undefined : self);
  /** `[key, argument digest]` of a call with this receiver and these arguments. */
  function keyOf(self, args) {
    fresh();
    try {
      return native.argumentsKey(registered().handle, argumentList(receiver(self), args));
    } catch (error) {
      throw locate(error, functionName);
    }
  }
  /** The stored result for a key, or `MISS` (a store error is a warning and a miss). */
  function lookupKey(key) {
    const [status, payload] = native.lookupKey(state.handle, key);
    if (status === STORE_ERROR) {
      warnOnce(payload);
      return MISS;
    }
    return status === MISS_STATUS ? MISS : decodeHit(status, payload, functionName);
  }
  /** The eval key (`key2_…`) these arguments have. */
  memoized.key = function (...args) {
    return keyOf(this, args)[0];
  };
  /** The stored result for these arguments, or `MISS`, without running the function. */
  memoized.lookup = function (...args) {
    if (!enabled()) return MISS;
    return lookupKey(keyOf(this, args)[0]);
  };
  /** Removes this function's stored results; returns how many. */
  memoized.clear = function () {
    if (!enabled()) return 0;
    return native.clear(state.handle);
  };
  /** `'hit'`, or why these arguments miss (which dependencies changed since results were stored). */
  memoized.why = function (...args) {
    if (!enabled()) return 'the cache is off';
    const [key, digest] = keyOf(this, args);
    if (lookupKey(key) !== MISS) return 'hit';
    // The sentence is the host's (hitsave_host::why), the same in Python.
    return native.whyMiss(state.handle, key, digest);
  };
  /** Fetches this function's cloud results in bulk (in parallel, off the JS thread); resolves to how many. */
  memoized.download = async function () {
    if (!enabled()) return 0;
    return native.download(state.handle);
  };
  /** The dependency graph HitSave fingerprints (automatic identity only). */
  memoized.graph = function () {
    const s = registered();
    return s.graph;
  };
  return memoized;
}

let flushing = false;
function flushAtExit() {
  if (flushing) return;
  flushing = true;
  process.once('exit', () => {
    try {
      native.drainUploads();
      native.flush();
    } catch {
      // Hit counts are advisory; a store that cannot take them was warned about already.
    }
  });
}

/** Writes buffered hit counts now (they are also written in the background). */
function flush() {
  native.flush();
}

/** The `val2` digest of a value (what an argument contributes to a key). */
function valueDigest(value) {
  return native.valueDigest(value);
}

module.exports = {
  memo,
  MISS,
  File,
  NDArray,
  HitSaveError,
  valueDigest,
  flush,
  errorCodes: () => native.errorCodes(),
  componentDigest: () => native.componentDigest(),
  configuration: () => {
    const [mode, cacheDir] = native.configuration();
    return { mode, cacheDir };
  },
  /** @internal for tests and the CLI */
  _native: native,
};
