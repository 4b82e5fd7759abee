'use strict';

// Module-level variables a memoized function's graph reads, read in the
// running program. Static analysis sees their text (`let scale = 2`), not
// what the program made of them by the time of a call (`setScale(3)`,
// `cfg.k = 7`, a value computed from input): the values count too, as
// Python's module-level values do (docs/node.md, "Module state").
//
// V8 keeps the variables a closure reads in its [[Scopes]], which only the
// inspector protocol can read; an in-process `node:inspector` session
// answers synchronously on this thread. From the memoized function, the
// functions its scopes hold (and the functions held by objects there: a
// module's exports, a namespace, an instance's methods) are followed until
// each module's scope is found, told apart from others by the names the
// module binds (the analysis lists them).

const inspector = require('node:inspector');
const { AsyncLocalStorage } = require('node:async_hooks');

const HOLD = Symbol.for('hitsave.live');
const GROUP = 'hitsave-live';
// How many functions the search for a module's scope may look into.
const SEARCH_BUDGET = 2000;
// Plain data up to this many items is compared by contents before each call;
// larger containers, up to SHALLOW_ITEMS, by the identity of what they hold;
// typed arrays up to ARRAY_WATCH_BYTES by their bytes (Python's limits).
const SNAPSHOT_ITEMS = 1000;
const SHALLOW_ITEMS = 100_000;
const ARRAY_WATCH_BYTES = 64 << 10;
// Larger typed arrays are digested before each call up to this many bytes
// within one variable's value (Python's limit is per graph); beyond it,
// before a miss computes.
const ARRAY_HASH_BYTES = 8 << 20;
const CJS_NAMES = new Set(['exports', 'require', 'module', '__filename', '__dirname']);

let session = null;

function post(method, params) {
  if (session === null) {
    session = new inspector.Session();
    session.connect();
  }
  let answered = false;
  let failure = null;
  let result;
  session.post(method, params, (error, value) => {
    answered = true;
    failure = error;
    result = value;
  });
  if (!answered) throw new Error(`the inspector did not answer ${method} on this thread`);
  if (failure) throw failure;
  return result;
}

/**
 * `use(internal, privates, local)` with `value`'s internal and private
 * properties, read through the inspector session; `local(remote)` makes a
 * remote value one of this realm (objects by reference).
 */
function withProperties(value, use) {
  globalThis[HOLD] = value;
  try {
    const { result } = post('Runtime.evaluate', { expression: 'globalThis[Symbol.for("hitsave.live")]', objectGroup: GROUP, silent: true });
    if (!result || !result.objectId) return use([], [], () => undefined);
    const { internalProperties = [], privateProperties = [] } = post('Runtime.getProperties', { objectId: result.objectId, ownProperties: true });
    const local = (remote) => {
      if (!remote) return undefined;
      if (remote.unserializableValue !== undefined) return unserializable(remote.unserializableValue);
      if (!remote.objectId) return remote.value; // a primitive (a bound `this` of undefined or a number)
      post('Runtime.callFunctionOn', {
        objectId: remote.objectId,
        functionDeclaration: 'function () { "use strict"; globalThis[Symbol.for("hitsave.live")] = this; }',
        objectGroup: GROUP,
        silent: true,
      });
      return globalThis[HOLD];
    };
    return use(internalProperties, privateProperties, local);
  } finally {
    delete globalThis[HOLD];
    post('Runtime.releaseObjectGroup', { objectGroup: GROUP });
  }
}

/** A remote primitive the protocol could not put in JSON (`NaN`, `-0`, `2n`). */
function unserializable(text) {
  if (text.endsWith('n')) return BigInt(text.slice(0, -1));
  return text === '-0' ? -0 : Number(text);
}

/** The scopes of `fn` as `[{ object }, …]` (V8's [[Scopes]], the global one last). */
function scopesOf(fn) {
  return internalsOf(fn)['[[Scopes]]'] || [];
}

/**
 * A function's internal slots, as values of this realm: a bound function's
 * `[[TargetFunction]]`, `[[BoundThis]]` and `[[BoundArgs]]`, a closure's
 * `[[Scopes]]` (`[{ description, object }, …]`, each object a copy of that
 * scope's variables, their values by reference).
 */
function internalsOf(fn) {
  return withProperties(fn, (internal, _, local) => {
    const out = {};
    for (const { name, value } of internal) {
      if (!INTERNALS.has(name) || !value) continue;
      // Where the function is (`{ scriptId, lineNumber, columnNumber }`) comes in the answer itself.
      if (name === '[[FunctionLocation]]') out[name] = value.value || null;
      else out[name] = name === '[[Scopes]]' ? Array.from(local(value) || []) : local(value);
    }
    return out;
  });
}

const INTERNALS = new Set(['[[TargetFunction]]', '[[BoundThis]]', '[[BoundArgs]]', '[[Scopes]]', '[[FunctionLocation]]']);
// Scopes a call made (a factory's, a block's), as V8 describes them; not a
// module's, a script's or the global one.
const CALL_SCOPE = /^(Closure|Block|Catch|With)\b/;

/**
 * What a function value holds besides its code, which its calls read: a
 * bound function's target, `this` and arguments (fixed when it was made);
 * a project closure's captured variables (`let a` in `mulberry32(a)`,
 * which every call of `rand()` changes), those of the scopes a call made,
 * never a module's own scope or the global one. null when it holds neither
 * (a module-level function, a package's closure).
 */
function heldBy(fn, projectFunction) {
  const internals = internalsOf(fn);
  if ('[[TargetFunction]]' in internals) {
    return { bound: [internals['[[TargetFunction]]'], internals['[[BoundThis]]'], Array.from(internals['[[BoundArgs]]'] || [])] };
  }
  const scopes = Array.from(internals['[[Scopes]]'] || []);
  // A CommonJS module's own scope is an anonymous closure (its wrapper's),
  // the outermost before the script's and the global one (an ES module's is
  // a `Module` scope); a factory's is named after it (`Closure (mulberry32)`),
  // an IIFE's is anonymous but inside the module's. (Not seen: an IIFE's
  // closure exported by a module no function of which captures anything, so
  // that it has no scope of its own: the IIFE's is then the outermost.)
  const outermost = scopes.findLastIndex((scope) => CALL_SCOPE.test(String((scope && scope.description) || '')));
  const picked = [];
  scopes.forEach((scope, index) => {
    const description = String((scope && scope.description) || '');
    const keys = scope && scope.object && typeof scope.object === 'object' ? Object.keys(scope.object) : [];
    if (!keys.length || !CALL_SCOPE.test(description)) return;
    if (index === outermost && description === 'Closure') return;
    picked.push(index);
  });
  if (!picked.length) return null;
  const variables = picked.map((index) => scopes[index].object);
  // Scopes a project closure being read has are the project's: a function
  // made in them is project code (no search of the sources for its text).
  if (!variables.every((variable) => readAt(variable) >= 0) && !projectFunction(fn)) return null;
  return { scopes: picked, variables, location: internals['[[FunctionLocation]]'] };
}

/** `declaredFunctions`' answer by function read (its scopes' names never change, nor where it is). */
const DECLARED = new WeakMap();

/**
 * The functions `fn`'s scopes (`inside`, `heldBy`'s) declare and nothing
 * reassigns (the analysis reads it from the file's text:
 * `declaredFunctions(source, line, column, names)`, js-analysis's
 * `declared.rs`) were made by those scopes: their own scopes are the one
 * holding them and those around it, the ones just read. Each is put in
 * `shared` with those, so that it is not read through the inspector too
 * (lodash's `_.sortBy` reaches ~110 such functions, a third of a
 * millisecond each). One whose text is not the declaration's is left to be
 * read.
 */
function shareDeclared(fn, inside, shared, declaredFunctions) {
  const location = inside.location;
  if (!location || typeof location.lineNumber !== 'number' || typeof location.columnNumber !== 'number') return;
  let found = DECLARED.get(fn);
  if (found === undefined) {
    found = declaredFunctions(Function.prototype.toString.call(fn), location.lineNumber, location.columnNumber, inside.variables.map(scopeKeys));
    if (found === null) return; // not cached: a file read later may place it
    DECLARED.set(fn, found);
  }
  found.forEach((pairs, i) => {
    const variables = inside.variables[i];
    const from = inside.scopes[i];
    for (let k = 0; k + 1 < pairs.length; k += 2) {
      const value = variables[pairs[k]];
      if (typeof value !== 'function' || shared.has(value) || Function.prototype.toString.call(value) !== pairs[k + 1]) continue;
      shared.set(value, { scopes: inside.scopes.slice(i).map((index) => index - from), variables: inside.variables.slice(i), location: null });
    }
  });
}

// `#x` outside strings, as far as a cheap test can tell (index.js's test for arguments).
const PRIVATE_NAME = /(?:^|[\s{};.(,!&|])#[A-Za-z_$]/m;
const PRIVATE_CLASSES = new WeakMap();

/** Whether `value` may keep state JavaScript cannot enumerate: #private fields (its class's, or a class's static ones), a WeakMap's or WeakSet's entries. */
function mayHide(value) {
  if (value instanceof WeakMap || value instanceof WeakSet) return true;
  const classes = [];
  if (typeof value === 'function') classes.push(value);
  else if (value !== null && typeof value === 'object') {
    for (let p = Object.getPrototypeOf(value); p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
      if (typeof p.constructor === 'function') classes.push(p.constructor);
    }
  }
  return classes.some((c) => {
    let known = PRIVATE_CLASSES.get(c);
    if (known === undefined) {
      known = PRIVATE_NAME.test(Function.prototype.toString.call(c));
      PRIVATE_CLASSES.set(c, known);
    }
    return known;
  });
}

/**
 * The state V8 keeps out of JavaScript's reach, read through the inspector:
 * `{ private: [[name, value], …], entries: [[key, value], …] }` (#private
 * fields with a value, a WeakMap's entries, a WeakSet's as `[item, true]`).
 */
function hiddenOf(value) {
  return withProperties(value, (internal, privates, local) => {
    const fields = privates.filter((property) => 'value' in property).map((property) => [property.name, local(property.value)]);
    const listed = internal.find((property) => property.name === '[[Entries]]');
    const entries = listed ? Array.from(local(listed.value) || []).map((entry) => ('key' in entry ? [entry.key, entry.value] : [entry.value, true])) : [];
    return { private: fields, entries };
  });
}

/** Whether the hidden state `before` (`hiddenOf` with snapshots of its values) still holds for `now`. */
function hiddenUnchanged(before, now) {
  const hidden = hiddenOf(now);
  if (hidden.private.length !== before.private.length || hidden.entries.length !== before.entries.length) return false;
  if (!before.private.every(([name, held], i) => hidden.private[i][0] === name && unchanged(held, hidden.private[i][1]))) return false;
  const byKey = new Map(hidden.entries);
  return before.entries.every(([key, held]) => byKey.has(key) && unchanged(held, byKey.get(key)));
}

/**
 * The copies of closure scopes being read, outermost first, by a digest
 * (index.js) or a snapshot: a scope met again further in is that scope
 * (`sameScope`), read once.
 */
const READING = [];

/** Where on `READING` the same scope as `scope` is read, or -1. */
function readAt(scope) {
  return READING.findLastIndex((on) => sameScope(on, scope));
}

/**
 * `use(outer, base)` with `scopes` being read: `outer[i]` is where on
 * `READING` the same scope is already read (-1 when it is not, and it is
 * pushed for the time of `use`, above `base`).
 */
function readingScopes(scopes, use) {
  const base = READING.length;
  const outer = scopes.map(readAt);
  scopes.forEach((scope, i) => outer[i] < 0 && READING.push(scope));
  try {
    return use(outer, base);
  } finally {
    READING.length = base;
  }
}

/**
 * Whether two copies of scopes (the inspector gives each function its own)
 * are of one scope: the same variables, bound to the same values. A
 * function's scopes are fixed when it is made, so a function defined
 * beside another shares that one's scopes for as long as both live.
 */
function sameScope(a, b) {
  if (a === b) return true;
  const names = scopeKeys(a);
  return names.length === scopeKeys(b).length && names.every((name) => Object.prototype.hasOwnProperty.call(b, name) && Object.is(a[name], b[name]));
}

/** `Object.keys` of a scope copy, by copy: its bindings are fixed (a copy is never written), and `readAt` compares one against each scope being read (lodash's has 480). */
const SCOPE_KEYS = new WeakMap();

function scopeKeys(scope) {
  let names = SCOPE_KEYS.get(scope);
  if (names === undefined) {
    names = Object.keys(scope);
    SCOPE_KEYS.set(scope, names);
  }
  return names;
}

/** `namesIn` by function (a function's text never changes). */
const NAMES_IN = new WeakMap();

/** The names a function's text mentions (identifiers, and words in its strings and comments: more, never fewer). */
function namesIn(fn) {
  let names = NAMES_IN.get(fn);
  if (names === undefined) {
    names = [...new Set(Function.prototype.toString.call(fn).match(/[A-Za-z_$][\w$]*/g))];
    NAMES_IN.set(fn, names);
  }
  return names;
}

/**
 * The variables of `fn`'s closure `scopes` (`heldBy`'s) its code can call:
 * named in its text, or in the text of a function of the scopes so named.
 * Only these functions' own closures count with `fn`'s: lodash's `_` names
 * 9 of the 274 functions in its scope; `setToString`, whose closure keeps
 * the time it was last called, is not among them and would make every
 * process miss (and every call read 600 closures again).
 */
function calledNames(fn, scopes) {
  const named = new Set(namesIn(fn));
  const pending = [...named];
  while (pending.length) {
    const name = pending.pop();
    for (const scope of scopes) {
      if (!Object.prototype.hasOwnProperty.call(scope, name) || typeof scope[name] !== 'function') continue;
      for (const word of namesIn(scope[name])) {
        if (named.has(word)) continue;
        named.add(word);
        pending.push(word);
      }
    }
  }
  return named;
}

// Own properties beyond which reading a function's scopes through the
// inspector costs more than finding another function to read them through
// (the inspector describes every property: lodash's `_` has 300 functions,
// 10 ms a read).
const READER_PROPERTIES = 16;

/**
 * A function of `fn`'s scopes `variables` (its own copies) whose scopes are
 * those same scopes and that has few properties, to read them through
 * before each call: `{ fn, scopes: [its scope indices] }`, or undefined when
 * `fn` is cheap to read or none is found among a few tried. A function's
 * scopes never change, so one found sharing them shares them for good.
 */
function readerOf(fn, variables) {
  if (Object.getOwnPropertyNames(fn).length <= READER_PROPERTIES) return undefined;
  let tries = 0;
  for (const scope of variables) {
    for (const name of Object.keys(scope)) {
      const candidate = scope[name];
      if (typeof candidate !== 'function' || candidate === fn || Object.getOwnPropertyNames(candidate).length > READER_PROPERTIES) continue;
      if (++tries > 4) return undefined;
      const theirs = scopesOf(candidate).map((entry) => (entry && entry.object && typeof entry.object === 'object' ? entry.object : null));
      const indices = variables.map((mine) => theirs.findIndex((other) => other !== null && sameScope(mine, other)));
      if (indices.every((index) => index >= 0)) return { fn: candidate, scopes: indices };
    }
  }
  return undefined;
}

/** The captured variables of `fn`'s scopes `indices` now (`heldBy`'s, read again). */
function variablesNow(fn, indices) {
  const scopes = Array.from(internalsOf(fn)['[[Scopes]]'] || []);
  return indices.map((index) => (scopes[index] && scopes[index].object) || {});
}

/** The variables of `fn`'s scope number `index`, as an object (a copy of the bindings; values by reference). */
function variablesOf(fn, index) {
  const scope = scopesOf(fn)[index];
  return scope && scope.object && typeof scope.object === 'object' ? scope.object : null;
}

/** A state variable's name as `[variable, member]`: `text.fmt` is the export `fmt` of the module bound whole to `text`; member null otherwise. */
function splitMember(name) {
  const dot = name.indexOf('.');
  return dot < 0 ? [name, null] : [name.slice(0, dot), name.slice(dot + 1)];
}

/** What an object's member holds now (MISSING when the object is not one or lacks it). */
function memberOf(object, member) {
  if (object === null || (typeof object !== 'object' && typeof object !== 'function') || !(member in object)) return MISSING;
  return object[member];
}

/** What `name` holds in a scope's (or the global object's) variables now; MISSING when it holds no such name. */
function valueIn(variables, name) {
  return variables && name in variables ? variables[name] : MISSING;
}

/** Whether `keys` (a scope's names) look like the top level of a module binding `bindings`. */
function isModuleScope(keys, bindings, names) {
  if (!names.some((name) => keys.includes(name))) return false;
  // Less CommonJS's names and a transpiler's helpers (`__defProp`, `__export`).
  const own = keys.filter((key) => !CJS_NAMES.has(key) && !key.startsWith('__'));
  const known = own.filter((key) => bindings.has(key)).length;
  return known * 2 >= own.length;
}

/**
 * Where each module's variables live: `[{ fn, index } | null, …]` in the
 * order of `modules` (`[file, bindings, variables]` from the analysis). Only
 * the variables named in `follow` (what the project's modules bind to their
 * own code and to each other) are followed, never a package's or Node's
 * internals; `import_x`, the name a transpiler gives `import … from './x'`,
 * too.
 */
function locate(root, modules, follow) {
  const wanted = modules.map(([, bindings, variables]) => ({
    bindings: new Set(bindings),
    names: variables.map(([, name]) => splitMember(name)[0]),
  }));
  const found = modules.map(() => null);
  let missing = modules.length;
  const seen = new Set();
  const queue = [root];
  let budget = SEARCH_BUDGET;
  let exportsObjects = null;
  // A module's exports (a namespace, or CommonJS exports a transpiler made
  // of getters: `__export(lib_exports, { mul: () => mul })`): what its
  // properties give is followed, getters read.
  const isModuleObject = (value) => {
    if (value.__esModule === true || value[Symbol.toStringTag] === 'Module') return true;
    exportsObjects ??= new Set(Object.values(require.cache).map((cached) => cached && cached.exports));
    return exportsObjects.has(value);
  };
  const consider = (value, depth) => {
    if (typeof value === 'function') {
      if (!seen.has(value)) queue.push(value);
      return;
    }
    if (depth > 1 || value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return;
    // A module's exports, a namespace, a registry, an instance: the functions it holds.
    const exported = isModuleObject(value);
    let items = 0;
    for (let object = value; object && object !== Object.prototype && items < 200; object = Object.getPrototypeOf(object)) {
      for (const key of Reflect.ownKeys(object)) {
        if (++items > 200) break;
        const descriptor = Object.getOwnPropertyDescriptor(object, key);
        if (!descriptor) continue;
        if ('value' in descriptor) consider(descriptor.value, depth + 1);
        else if (exported && object === value) {
          let got;
          try {
            got = value[key];
          } catch {
            continue;
          }
          consider(got, depth + 1);
        } else {
          if (descriptor.get) consider(descriptor.get, depth + 1);
          if (descriptor.set) consider(descriptor.set, depth + 1);
        }
      }
      if (Array.isArray(object) || object instanceof Map || object instanceof Set) {
        const values = object instanceof Map ? object.values() : object.values();
        let count = 0;
        for (const item of values) {
          if (++count > 200) break;
          consider(item, depth + 1);
        }
      }
    }
  };
  // Then a CommonJS module's own exports (`require('./lib').mul(x)` leaves
  // no variable to follow).
  const seeds = modules.map(([file]) => require.cache[file] && require.cache[file].exports);
  let seeded = false;
  while (missing > 0 && budget-- > 0) {
    if (!queue.length) {
      if (seeded) break;
      seeded = true;
      for (const exports of seeds) consider(exports, 0);
      continue;
    }
    const fn = queue.shift();
    if (seen.has(fn)) continue;
    seen.add(fn);
    const scopes = scopesOf(fn);
    for (let index = 0; index < scopes.length; index++) {
      const variables = scopes[index] && scopes[index].object;
      if (!variables || typeof variables !== 'object' || variables === globalThis) continue;
      const keys = Object.keys(variables);
      for (let m = 0; m < modules.length; m++) {
        if (found[m] === null && isModuleScope(keys, wanted[m].bindings, wanted[m].names)) {
          found[m] = { fn, index };
          missing--;
        }
      }
      for (const key of keys) if (follow.has(key) || key.startsWith('import_')) consider(variables[key], 0);
    }
    if (typeof fn === 'function' && fn.prototype && typeof fn.prototype === 'object') consider(fn.prototype, 0);
  }
  return found;
}

/** What an array holds at an index with no element (`[1, , 3]`), told apart from `undefined`. */
const HOLE = Symbol('hole');

/**
 * The items a container holds, and its keys (an object's), for a shallow
 * comparison: an array's holes as HOLE; an object's properties under
 * symbol keys too; what a `Date` (its time), a `RegExp` (its `lastIndex`),
 * a `URL` (its `href`), `URLSearchParams` (its text), a boxed primitive
 * (its value) and an `Error` (its name and message) hold outside their
 * properties.
 */
function itemsOf(item) {
  if (Array.isArray(item)) {
    const items = item.slice();
    // A hole reads as undefined: only then is each index asked (rarely).
    if (items.includes(undefined)) for (let index = 0; index < items.length; index++) if (!(index in items)) items[index] = HOLE;
    return [null, items];
  }
  if (item instanceof Map) return [[...item.keys()], [...item.values()]];
  if (item instanceof Set) return [null, [...item]];
  const keys = Object.keys(item);
  const symbols = Object.getOwnPropertySymbols(item);
  for (const symbol of symbols) if (Object.prototype.propertyIsEnumerable.call(item, symbol)) keys.push(symbol);
  const items = keys.map((key) => item[key]);
  if (item instanceof Date) keys.push('[[time]]'), items.push(item.getTime());
  if (item instanceof RegExp) keys.push('[[lastIndex]]'), items.push(item.lastIndex);
  if (item instanceof URL) keys.push('[[href]]'), items.push(item.href);
  if (item instanceof URLSearchParams) keys.push('[[search]]'), items.push(item.toString());
  if (item instanceof Number || item instanceof String || item instanceof Boolean) keys.push('[[value]]'), items.push(item.valueOf());
  if (item instanceof Error) keys.push('[[name]]', '[[message]]'), items.push(item.name, item.message);
  return [keys, items];
}

function sizeOf(item) {
  if (Array.isArray(item)) return item.length;
  if (item instanceof Map || item instanceof Set) return item.size;
  return Object.keys(item).length;
}

/**
 * What a value is now, to tell before a call whether it changed (as
 * Python's module-level values are watched): plain data and instances up to
 * SNAPSHOT_ITEMS items by contents; a typed array up to 64 KiB by its bytes;
 * a larger container (up to SHALLOW_ITEMS) by the identity of what it holds,
 * with each container or small typed array it holds compared the same way,
 * one level down; anything larger by identity and length.
 */
function snapshot(value, depth = 0, opaque = () => false, held = () => null, flags = {}) {
  let budget = SNAPSHOT_ITEMS;
  const copy = (item, level, closures = true) => {
    if (item === null || (typeof item !== 'object' && typeof item !== 'function')) return item;
    // A package's object (a logger, a client, a cache): by identity only.
    // An AsyncLocalStorage (a request's context) by the store of the context
    // calling, read again before each call, as Python's ContextVar: requests
    // in different contexts are different calls.
    if (item instanceof AsyncLocalStorage) return { same: item, context: true, store: copy(item.getStore(), level + 1) };
    if (opaque(item)) return { same: item };
    if (ArrayBuffer.isView(item)) {
      if (item.byteLength > ARRAY_WATCH_BYTES) {
        const hash = flags.hash;
        if (hash && (flags.hashed || 0) + item.byteLength <= ARRAY_HASH_BYTES) {
          // Digested again before each call, up to 8 MiB of them per variable's value.
          flags.hashed = (flags.hashed || 0) + item.byteLength;
          return { same: item, length: item.byteLength, hash, digest: hash(item) };
        }
        flags.partial = true; // its bytes are not compared: `Reading.deepChanged`
        return { same: item, length: item.byteLength };
      }
      return { same: item, bytes: Buffer.from(new Uint8Array(item.buffer, item.byteOffset, item.byteLength)) };
    }
    if (level > 6 || budget <= 0) {
      flags.partial = true;
      return { same: item };
    }
    const size = sizeOf(item);
    if (size > budget) {
      flags.partial = true;
      if (size > SHALLOW_ITEMS) return { same: item, length: size };
      const [keys, items] = itemsOf(item);
      const nested = depth === 0 && level === 0 ? items.map((item) => (item !== null && typeof item === 'object' ? snapshot(item, 1, opaque, () => null, flags) : undefined)) : null;
      return { same: item, prototype: Object.getPrototypeOf(item), keys, items, shallow: true, nested };
    }
    budget -= size;
    const [keys, items] = itemsOf(item);
    const copied = { same: item, prototype: Object.getPrototypeOf(item), keys, items: items.map((held) => copy(held, level + 1)) };
    if (level <= 1 && depth === 0 && mayHide(item)) {
      // #private fields (`static #rate`, `this.#k`), a WeakMap's entries:
      // read through the inspector, again before each call.
      const hidden = hiddenOf(item);
      copied.hidden = {
        private: hidden.private.map(([name, value]) => [name, copy(value, level + 1)]),
        entries: hidden.entries.map(([key, value]) => [key, copy(value, level + 1)]),
      };
    }
    if (typeof item === 'function' && level <= 1 && depth === 0 && closures) {
      // A bound function's `this` and arguments, a project closure's
      // captured variables (read again before each call: `rand()` changes them).
      const inside = held(item);
      if (inside !== null && inside.bound) copied.bound = inside.bound.map((part) => copy(part, level + 1));
      if (inside !== null && inside.scopes) {
        // Scopes a function further out shares are compared with its own:
        // read once before each call (lodash's `_` and the functions
        // beside it share two scopes of 478 variables).
        let named = null;
        readingScopes(inside.variables, (outer) => {
          const own = inside.variables.filter((_, i) => outer[i] < 0);
          copied.scopes = inside.scopes.filter((_, i) => outer[i] < 0);
          if (own.length) copied.reader = readerOf(item, own);
          // The names its code can call, only for scopes of its own (lodash's functions share theirs).
          if (own.length) named = calledNames(item, inside.variables);
          copied.variables = own.map((scope) => Object.entries(scope).map(([name, value]) => [name, copy(value, level + 1, named.has(name))]));
        });
      }
    }
    return copied;
  };
  return copy(value, 0);
}

function unchanged(before, now) {
  if (!unchangedItself(before, now)) return false;
  if (before === null || typeof before !== 'object') return true;
  if (before.hidden !== undefined && !hiddenUnchanged(before.hidden, now)) return false;
  if (before.bound !== undefined) {
    // A bound function's slots never change; the objects in them may.
    return before.bound.every((held) => held === null || typeof held !== 'object' || unchanged(held, held.same));
  }
  if (before.scopes !== undefined && before.scopes.length) {
    const scopes = before.reader ? variablesNow(before.reader.fn, before.reader.scopes) : variablesNow(now, before.scopes);
    return before.variables.every(
      (variables, i) =>
        variables.length === Object.keys(scopes[i]).length &&
        variables.every(([name, held]) => name in scopes[i] && unchanged(held, scopes[i][name])),
    );
  }
  return true;
}

function unchangedItself(before, now) {
  if (before === null || typeof before !== 'object') return Object.is(before, now);
  if (before.same !== now) return false;
  if (before.context) return unchanged(before.store, now.getStore());
  if (before.digest !== undefined) return now.byteLength === before.length && before.hash(now) === before.digest;
  if (before.bytes !== undefined) return now.byteLength === before.bytes.length && before.bytes.equals(new Uint8Array(now.buffer, now.byteOffset, now.byteLength));
  if (before.length !== undefined) return (ArrayBuffer.isView(now) ? now.byteLength : sizeOf(now)) === before.length;
  if (before.items === undefined) return true;
  if (Object.getPrototypeOf(now) !== before.prototype) return false;
  const [keys, items] = itemsOf(now);
  if (items.length !== before.items.length) return false;
  if (before.keys !== null && (keys === null || keys.some((key, i) => !Object.is(key, before.keys[i])))) return false;
  if (before.shallow) {
    for (let i = 0; i < items.length; i++) if (!Object.is(items[i], before.items[i])) return false;
    return before.nested === null || before.nested.every((held, i) => held === undefined || unchanged(held, items[i]));
  }
  return before.items.every((held, i) => unchanged(held, items[i]));
}

/**
 * The strings inside values that may be paths (object values, array, Map
 * and Set items, an instance's fields; at most 2,000 items, 6 levels deep),
 * as Python's module-level values are searched: the files a configuration
 * lists (`cfg.data`), for code reading paths only known when it runs. The
 * analysis keeps those that look like paths (`fileNodes`, the rule for the
 * paths code names).
 */
function pathsIn(values) {
  const found = new Set();
  const seen = new Set();
  const stack = values.map((value) => [value, 0]);
  let budget = 2000;
  while (stack.length && budget-- > 0) {
    const [item, depth] = stack.pop();
    if (typeof item === 'string') {
      if (item.length <= 4096) found.add(item);
      continue;
    }
    if (item === null || typeof item !== 'object' || depth >= 6 || seen.has(item) || ArrayBuffer.isView(item)) continue;
    seen.add(item);
    if (item instanceof URL && item.protocol === 'file:') {
      found.add(decodeURIComponent(item.pathname));
      continue;
    }
    const items = Array.isArray(item) || item instanceof Set ? [...item] : item instanceof Map ? [...item.values()] : Object.values(item);
    for (const child of items) stack.push([child, depth + 1]);
  }
  return [...found];
}

const MISSING = Symbol('hitsave.missing');

/**
 * Where a graph's module state lives in this process (the search, done
 * once): `read()` gives a `Reading` of the values now.
 */
class ModuleState {
  constructor(
    root,
    modules,
    follow,
    globals = [],
    { opaque = () => false, watchCurrent = () => true, projectFunction = () => false, hash = null, declaredFunctions = null } = {},
  ) {
    this.globals = globals;
    // A typed array's digest (the addon's BLAKE3), for those over 64 KiB.
    this.hash = hash;
    // Values counted by their class and identity alone (a package's objects).
    this.opaque = opaque;
    // What a function value holds (`heldBy`); while `remembering` (one
    // registration: its snapshots, then its digests), each function's
    // closure is read once, and the functions a scope read declares for
    // good (`shareDeclared`) take their scopes from it, unread.
    const nothing = new WeakSet();
    let remembered = null;
    let shared = null;
    this.remembering = (use) => {
      remembered = new Map();
      shared = new Map();
      READING.length = 0;
      try {
        return use();
      } finally {
        remembered = null;
        shared = null;
        READING.length = 0;
      }
    };
    this.held = (fn) => {
      if (nothing.has(fn)) return null;
      if (remembered !== null && remembered.has(fn)) return remembered.get(fn);
      if (shared !== null && shared.has(fn)) {
        // As `heldBy` decides: scopes being read, or a project function's.
        const inside = shared.get(fn);
        return inside.variables.every((variables) => readAt(variables) >= 0) || projectFunction(fn) ? inside : null;
      }
      let inside = null;
      try {
        inside = heldBy(fn, projectFunction);
      } catch {
        inside = null; // no inspector: the search failed too, and is refused where it matters
      }
      // A function's scopes and target are fixed when it is made: one holding nothing never will.
      if (inside === null) nothing.add(fn);
      else if (remembered !== null) {
        remembered.set(fn, inside);
        if (inside.scopes && declaredFunctions !== null) shareDeclared(fn, inside, shared, declaredFunctions);
      }
      return inside;
    };
    // Whether files watched under an id are unchanged (the addon's `watchCurrent`).
    this.watchCurrent = watchCurrent;
    try {
      this.places = locate(root, modules, new Set(follow));
      this.failure = null;
    } catch (error) {
      // No inspector in this build of Node (or it refused): nothing can be read.
      this.places = modules.map(() => null);
      this.failure = error && error.message ? error.message : String(error);
    }
    this.modules = modules;
    // A variable code may assign that is found nowhere (neither in its
    // module's scope nor where a module imports it) could hold anything.
    const found = new Set();
    const assigned = new Map();
    modules.forEach(([file, , variables], m) => {
      for (const [node, name, reassigned] of variables) {
        if (this.places[m] !== null) found.add(node);
        if ((reassigned || this.failure !== null) && !assigned.has(node)) assigned.set(node, `${name} (${file})`);
      }
    });
    this.unfound = [...assigned].filter(([node]) => !found.has(node)).map(([, described]) => described);
  }

  /**
   * This search with the variables of the code around `fn` that it uses
   * (`captures`: `[[name, reassigned], …]`, the analysis's), read from
   * `fn`'s closure and counted under the graph's node `root` as module state
   * is (a `let` code assigns read again before each call, the others by the
   * reference kept): one per memoized function, since closures of one text
   * hold different values (`make(3)`, `make(4)`). One found in no scope of
   * the closure is `unfound`.
   */
  withClosure(fn, captures, root) {
    let scopes = [];
    try {
      scopes = scopesOf(fn);
    } catch {
      scopes = []; // no inspector: all unfound, refused where it matters
    }
    const byScope = new Map();
    const missing = [];
    for (const [name, reassigned] of captures) {
      // The innermost scope binding the name is the one the code reads (the analysis resolved it so).
      const index = scopes.findIndex(
        (scope) =>
          scope &&
          CALL_SCOPE.test(String(scope.description || '')) &&
          scope.object !== null &&
          typeof scope.object === 'object' &&
          Object.prototype.hasOwnProperty.call(scope.object, name),
      );
      if (index < 0) {
        missing.push(`${name} (the code around the function)`);
        continue;
      }
      if (!byScope.has(index)) byScope.set(index, []);
      byScope.get(index).push([root, name, reassigned]);
    }
    const derived = Object.create(this);
    derived.modules = [...this.modules];
    derived.places = [...this.places];
    for (const [index, variables] of byScope) {
      derived.modules.push(['<closure>', [], variables]);
      derived.places.push({ fn, index });
    }
    derived.unfound = [...this.unfound, ...missing];
    derived.last = null;
    return derived;
  }

  /**
   * The values now, as a `Reading` whose `current()` says later whether
   * they still hold (one per registration: memo() run again at one call
   * site shares the search, never another registration's values).
   */
  read() {
    const values = [];
    this.modules.forEach(([, , variables], m) => {
      const place = this.places[m];
      if (place === null) return;
      const scope = variablesOf(place.fn, place.index);
      for (const [node, name] of variables) {
        const [base, member] = splitMember(name);
        const value = valueIn(scope, base);
        // `text.fmt`: the member now, and the object it is read from (read again before each call).
        values.push(member === null ? [node, name, value] : [node, name, memberOf(value, member), value]);
      }
    });
    // Globals the code reads (`RATE`, `globalThis.RATE`): on the global object.
    for (const name of this.globals) values.push([-1, name, valueIn(globalThis, name)]);
    return new Reading(this, values);
  }
}

/** The module state one registration counted, and whether it still holds. */
class Reading {
  constructor(state, values) {
    this.state = state;
    this.values = values;
    // The watch id of the files the values name, when the binding counted them.
    this.files = 0;
    // Whether each value's snapshot leaves part of it uncompared (a typed
    // array over 64 KiB, a large container's items beyond one level).
    this.partial = values.map(() => false);
    this.snapshots = values.map(([, , value], i) => {
      const flags = { partial: false, hash: state.hash, hashed: 0 };
      const taken = snapshot(value, 0, state.opaque, state.held, flags);
      this.partial[i] = flags.partial;
      return taken;
    });
    // The digest each value counted (`withModuleState` sets them).
    this.digests = null;
    this.changed = false;
  }

  /**
   * Before a miss computes: whether a value whose snapshot leaves part of it
   * uncompared digests differently now than when it was counted (a large
   * typed array changed in place), so the result would be stored under
   * state it was not computed from.
   */
  deepChanged(digest) {
    if (this.digests === null) return false;
    // Then it no longer holds (`current()`), for any registration sharing it.
    this.changed ||= this.values.some(([, , value], i) => this.partial[i] && digest(value) !== this.digests[i]);
    return this.changed;
  }

  /**
   * Whether every variable still holds what was read: a reassigned one is
   * read again (through the inspector), the others by the reference kept,
   * compared as `snapshot` says.
   */
  current() {
    if (this.changed) return false;
    const { modules, places, globals } = this.state;
    let index = 0;
    for (let m = 0; m < modules.length; m++) {
      const place = places[m];
      if (place === null) continue;
      const variables = modules[m][2];
      const reread = variables.some(([, , reassigned]) => reassigned) ? variablesOf(place.fn, place.index) : null;
      for (const [, name, reassigned] of variables) {
        const [base, member] = splitMember(name);
        const [, , held, object] = this.values[index];
        const now =
          member === null
            ? reassigned
              ? valueIn(reread, name)
              : held
            : memberOf(reassigned ? valueIn(reread, base) : object, member);
        if (!unchanged(this.snapshots[index], now)) return false;
        index++;
      }
    }
    for (const name of globals) {
      if (!unchanged(this.snapshots[index], valueIn(globalThis, name))) return false;
      index++;
    }
    // The files its values name (`fileNodes`), by their state when read.
    return !this.files || this.state.watchCurrent(this.files);
  }
}

module.exports = { ModuleState, MISSING, pathsIn, mayHide, hiddenOf, calledNames, readingScopes };
