'use strict';
// The shared vectors (tests/vectors) through the Node walker: JavaScript
// values built from the notation must give the bytes and digests Rust pins.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const hitsave = require('..');

const native = hitsave._native;
const VECTORS = path.join(__dirname, '..', '..', '..', 'tests', 'vectors');
const load = (name) => JSON.parse(fs.readFileSync(path.join(VECTORS, name), 'utf8'));

const { fromNotation, NotRepresentable } = require('./notation');

const values = load('values.json');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hitsave-vectors-'));

test('value vectors', async (t) => {
  let checked = 0;
  for (const vector of values.cases) {
    let value;
    try {
      value = fromNotation(vector.value, tmp);
    } catch (error) {
      if (error instanceof NotRepresentable) continue;
      throw error;
    }
    await t.test(vector.name, () => {
      assert.strictEqual(native.canonicalBytes(value).toString('hex'), vector.canonical);
      assert.strictEqual(hitsave.valueDigest(value), vector.digest);
    });
    checked++;
  }
  assert.ok(checked > values.cases.length * 0.8, `only ${checked} of ${values.cases.length} vectors ran`);
});

test('error vectors', async (t) => {
  for (const vector of values.errors) {
    if (vector.value === null || JSON.stringify(vector.value).includes('"array"')) continue;
    if ((vector.path || '').includes('{member')) continue; // a Set's order is insertion order, not the notation's
    let value;
    try {
      value = fromNotation(vector.value, tmp);
    } catch (error) {
      if (error instanceof NotRepresentable) continue;
      throw error;
    }
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
    const args = hitsave.valueDigest(fromNotation(vector.arguments, tmp));
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

test('JavaScript values follow the logical model', () => {
  const d = hitsave.valueDigest;
  assert.strictEqual(d(1), d(1n));
  assert.strictEqual(d(1.0), d(1));
  assert.strictEqual(d(-0), d(0));
  assert.notStrictEqual(d(true), d(1));
  assert.strictEqual(d({ a: 1, b: [2, 3] }), d(new Map([['b', [2, 3]], ['a', 1]])));
  assert.strictEqual(d(new Set([1, 2])), d(new Set([2, 1])));
  assert.notStrictEqual(d('ab'), d(Buffer.from('ab')));
  assert.notStrictEqual(d(undefined), d(null));
  assert.notStrictEqual(d({ a: undefined }), d({}));
  assert.strictEqual(d([1, , 3]), d([1, undefined, 3]));
  assert.strictEqual(d(Buffer.from('xy')), d(new DataView(Buffer.from('xy').buffer, Buffer.from('xy').byteOffset, 2)));
  assert.notStrictEqual(d(new Uint8Array([1, 2])), d(Buffer.from([1, 2])), 'a TypedArray is an array, a Buffer is bytes');
  assert.strictEqual(d(new Float64Array([1, 2, 3])), d(new hitsave.NDArray('float64', [3], new Float64Array([1, 2, 3]))));
  assert.strictEqual(d(new Date(5)), d(new Date(5)));
  assert.notStrictEqual(d(new Date(5)), d(new Date(6)));
  class Point { constructor(x, y) { this.x = x; this.y = y; } }
  assert.strictEqual(d(new Point(1, 2)), d(new Point(1, 2)));
  assert.notStrictEqual(d(new Point(1, 2)), d({ x: 1, y: 2 }));
  // Big buffers are hashed natively by content, not identity.
  const big = Buffer.alloc(1 << 20, 7);
  assert.strictEqual(d(big), d(Buffer.from(big)));
  assert.notStrictEqual(d(big), d(Buffer.alloc(1 << 20, 8)));
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
  for (const code of hitsave.errorCodes()) assert.ok(table.includes(`| \`${code}\` |`), code);
});
