'use strict';
// The shared vectors (tests/vectors) through the Node walker: JavaScript
// values built from the notation must give the bytes and digests Rust pins.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');
const hitsave = require('..');

const native = hitsave._native;
const VECTORS = path.join(__dirname, '..', '..', '..', 'tests', 'vectors');
const load = (name) => JSON.parse(fs.readFileSync(path.join(VECTORS, name), 'utf8'));

const { tryNotation } = require('./notation');

const values = load('values.json');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hitsave-vectors-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

test('value vectors', async (t) => {
  let checked = 0;
  for (const vector of values.cases) {
    const built = tryNotation(vector.value, tmp);
    if (built === null) continue;
    const { value } = built;
    await t.test(vector.name, () => {
      assert.strictEqual(native.canonicalBytes(value).toString('hex'), vector.canonical);
      assert.strictEqual(hitsave.valueDigest(value), vector.digest);
    });
    checked++;
  }
  // Python-only types (tuples, sets, records of pickled state) have no JavaScript value.
  assert.ok(checked > values.cases.length * 0.6, `only ${checked} of ${values.cases.length} vectors ran`);
});

test('error vectors', async (t) => {
  for (const vector of values.errors) {
    if (vector.value === null || JSON.stringify(vector.value).includes('"array"')) continue;
    if ((vector.path || '').includes('{member')) continue; // a Set's order is insertion order, not the notation's
    const built = tryNotation(vector.value, tmp);
    if (built === null) continue;
    const { value } = built;
    await t.test(vector.name, () => {
      assert.throws(() => hitsave.valueDigest(value), (error) => {
        assert.ok(error instanceof hitsave.HitSaveError, String(error));
        assert.strictEqual(error.code, vector.code);
        assert.strictEqual(error.path, vector.path);
        return true;
      });
    });
  }
});

test('key vectors', () => {
  for (const vector of load('keys.json').cases) {
    const built = tryNotation(vector.arguments, tmp);
    if (built === null) continue;
    const { value } = built;
    const args = hitsave.valueDigest(value);
    assert.strictEqual(args, vector.arguments_digest, vector.name);
    const { fingerprint, name, version } = vector.identity;
    assert.strictEqual(native.deriveKey(args, fingerprint, name, version), vector.key, vector.name);
  }
});

test('graph vectors', () => {
  for (const vector of load('graphs.json').fingerprints) {
    const nodes = vector.nodes.map((n) => [n.kind, n.name, n.content, n.deps]);
    assert.deepStrictEqual(native.fingerprints(nodes), vector.nodes.map((n) => vector.fingerprints[n.name]), vector.name);
  }
});

test('JavaScript values follow the logical model: equal keys only for values code cannot tell apart', () => {
  const d = hitsave.valueDigest;
  assert.notStrictEqual(d(1), d(1n), 'a bigint is not a number');
  assert.strictEqual(d(1.0), d(1), 'one JavaScript number');
  assert.notStrictEqual(d(-0), d(0), '-0 is a float, 0 an integer');
  assert.notStrictEqual(d(2 ** 60), d(2n ** 60n), 'a number beyond 2^53 is a float');
  assert.notStrictEqual(d(true), d(1));
  assert.notStrictEqual(d({ a: 1, b: [2, 3] }), d(new Map([['a', 1], ['b', [2, 3]]])), 'a Map is not a plain object');
  assert.notStrictEqual(d({ a: 1, b: 2 }), d({ b: 2, a: 1 }), 'property order is visible to Object.keys');
  assert.notStrictEqual(d({ a: 1 }), d(Object.assign(Object.create(null), { a: 1 })));
  assert.notStrictEqual(d(new Set([1, 2])), d(new Set([2, 1])), "a Set's order is visible to iteration");
  assert.strictEqual(d(new Set([1, 2])), d(new Set([1, 2, 1])));
  assert.notStrictEqual(d('ab'), d(Buffer.from('ab')));
  assert.notStrictEqual(d(undefined), d(null));
  assert.notStrictEqual(d({ a: undefined }), d({}));
  // Code tells a hole from undefined (`1 in a`, `forEach`, `map`): no key
  // for it, nor for properties under symbol keys (left out, they gave
  // `{ [s]: 1 }` and `{ [s]: 2 }` one key).
  for (const refused of [[1, , 3], new Array(2), { [Symbol.for('s')]: 1 }]) {
    assert.throws(() => d(refused), (error) => error.code === 'unhashable_value');
  }
  const bytes = Buffer.from('xy');
  assert.notStrictEqual(d(bytes), d(new DataView(bytes.buffer, bytes.byteOffset, 2)), 'a DataView is not a Buffer');
  assert.notStrictEqual(d(bytes), d(new Uint8Array([120, 121]).buffer), 'an ArrayBuffer is not a Buffer');
  assert.notStrictEqual(d(new Uint8Array([1, 2])), d(Buffer.from([1, 2])), 'a TypedArray is an array, a Buffer is bytes');
  assert.notStrictEqual(d(new Uint8Array([1, 2])), d(new Uint8ClampedArray([1, 2])), 'clamped arithmetic');
  assert.strictEqual(d(new Float64Array([1, 2, 3])), d(new hitsave.NDArray('float64', [3], new Float64Array([1, 2, 3]))));
  assert.strictEqual(d(new Date(5)), d(new Date(5)));
  assert.notStrictEqual(d(new Date(5)), d(new Date(6)));
  assert.notStrictEqual(d(new Date(0)), d({ time: 0 }));
  assert.notStrictEqual(d(/a/g), d(/a/), 'flags');
  const sticky = /a/g;
  sticky.exec('aa');
  assert.notStrictEqual(d(sticky), d(/a/g), 'lastIndex is where the next exec starts');
  class Point { constructor(x, y) { this.x = x; this.y = y; } }
  assert.strictEqual(d(new Point(1, 2)), d(new Point(1, 2)));
  assert.notStrictEqual(d(new Point(1, 2)), d(new Point(1, 3)));
  assert.notStrictEqual(d(new Point(1, 2)), d({ x: 1, y: 2 }));
  // Two classes of one name, other code: other values.
  const Other = (() => class Point { constructor(x, y) { this.x = x; this.y = y; } norm() { return 0; } })();
  assert.notStrictEqual(d(new Point(1, 2)), d(new Other(1, 2)));
  // Big buffers are hashed natively by content, not identity.
  const big = Buffer.alloc(1 << 20, 7);
  assert.strictEqual(d(big), d(Buffer.from(big)));
  assert.notStrictEqual(d(big), d(Buffer.alloc(1 << 20, 8)));
});

test('a pool of values JavaScript code can tell apart has one digest each', () => {
  class A { constructor(v) { this.v = v; } }
  class B { constructor(v) { this.v = v; } }
  const scalars = [null, undefined, true, false, 0, -0, 1, -1, 1.5, NaN, Infinity, 2 ** 60, 0n, 1n, 2n ** 70n, '', '1', 'a'];
  const pool = [...scalars];
  for (const item of scalars) {
    pool.push([item], { k: item }, new Map([['k', item]]), new A(item), new B(item),
      Object.assign(Object.create(null), { k: item }));
    if (!Object.is(item, -0)) pool.push(new Set([item])); // a Set stores -0 as 0
  }
  pool.push([], {}, new Map(), new Set(), Buffer.from([1]), new Uint8Array([1]), new Uint8ClampedArray([1]),
    new Int8Array([1]), new Float64Array([1]), new Uint8Array([1]).buffer, new DataView(new ArrayBuffer(1)),
    new Date(0), new Date(1), /a/, /a/g, (x) => x, (x) => x + 1, new Set([1, 2]), new Set([2, 1]),
    new hitsave.NDArray('float64', [1, 1], new Float64Array([1])));
  const seen = new Map();
  for (const value of pool) {
    const digest = hitsave.valueDigest(value);
    assert.ok(!seen.has(digest), `${util.inspect(value)} and ${util.inspect(seen.get(digest))} share a key`);
    seen.set(digest, value);
  }
  assert.strictEqual(seen.size, pool.length);
});

test('a function argument counts by its source only when its source is all it reads', () => {
  const d = hitsave.valueDigest;
  assert.strictEqual(d((x) => Math.max(x, 1)), d((x) => Math.max(x, 1)), 'globals are not state');
  assert.notStrictEqual(d((x) => x * 2), d((x) => x * 3));
  // A closure's variables are not in its source: [2, 3].map((k) => (x) => x * k) would share one key.
  const closures = [2, 3].map((k) => (x) => x * k);
  function helper(x) { return x + 1; }
  for (const [fn, name] of [[closures[0], 'k'], [(x) => helper(x), 'helper']]) {
    assert.throws(() => d([fn]), (error) => {
      assert.strictEqual(error.code, 'unhashable_value');
      assert.strictEqual(error.path, '[0]');
      assert.match(error.message, new RegExp(`reads ${name} from around it`));
      return true;
    });
  }
  // A memoized function carries everything it reads.
  assert.doesNotThrow(() => d(hitsave.memo(helper)));
});

test('instances whose state JavaScript cannot read are refused, never hashed without it', () => {
  class Secret { #value; constructor(v) { this.#value = v; } get value() { return this.#value; } }
  class Child extends Secret {}
  for (const value of [new Secret(1), new Child(1), new URL('http://a/'), new URLSearchParams('a=1')]) {
    assert.throws(() => hitsave.valueDigest([value]), (error) => {
      assert.strictEqual(error.code, 'unhashable_value');
      assert.strictEqual(error.path, '[0]');
      return true;
    });
  }
});

test('unfaithful values raise typed errors naming the path', () => {
  const net = require('node:net');
  const cases = [
    [[1, { x: [0, Symbol('s')] }], '[1]["x"][1]'],
    [[new WeakMap()], '[0]'],
    [[Promise.resolve(1)], '[0]'],
    [[new net.Socket()], '[0]'],
    [[{ f: Math.max.bind(null) }], '[0]["f"]'],
    [['\ud800'], '[0]'],
    [[new Number(3)], '[0]'],
  ];
  for (const [value, where] of cases) {
    assert.throws(() => hitsave.valueDigest(value), (error) => {
      assert.ok(error instanceof hitsave.HitSaveError);
      assert.ok(['unhashable_value', 'invalid_utf8'].includes(error.code), error.code);
      assert.strictEqual(error.path, where);
      return true;
    });
  }
  const cycle = [];
  cycle.push(cycle);
  assert.throws(() => hitsave.valueDigest(cycle), (error) =>
    error.code === 'unhashable_value' && error.path === '[0]' && error.message.includes('cyclic Array'));
  let deep = [];
  for (let i = 0; i < 300; i++) deep = [deep];
  assert.throws(() => hitsave.valueDigest(deep), (error) => error.code === 'too_deep');
});

test('every error code is shared with Rust and Python', () => {
  const table = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'docs', 'errors.md'), 'utf8');
  // The same list, in the same order, as docs/errors.md (which Rust and Python check too).
  const documented = [...table.matchAll(/^\| `([a-z0-9_]+)` \|/gm)].map((match) => match[1]);
  assert.deepStrictEqual(hitsave.errorCodes(), documented);
});

test('index.d.ts and index.mjs declare exactly what index.js exports', async () => {
  const root = path.join(__dirname, '..');
  const declarations = fs.readFileSync(path.join(root, 'index.d.ts'), 'utf8');
  // Values only: `export type` names have no runtime counterpart.
  const declared = [...declarations.matchAll(/^export declare (?:const|function|class) ([A-Za-z_$][\w$]*)/gm)]
    .map((match) => match[1]);
  const runtime = Object.keys(hitsave).filter((name) => !name.startsWith('_'));
  assert.deepStrictEqual([...new Set(declared)].sort(), runtime.sort(), 'index.d.ts against require("hitsave")');
  const esm = await import(path.join(root, 'index.mjs'));
  const named = Object.keys(esm).filter((name) => name !== 'default');
  assert.deepStrictEqual(named.sort(), runtime.sort(), 'index.mjs against require("hitsave")');
  for (const name of runtime) assert.strictEqual(esm[name], hitsave[name], name);
});
