'use strict';
// memo() the way a user uses it: a real project on disk, edited between
// runs of fresh Node processes sharing one store.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { Project, PACKAGE } = require('./helpers');

// A project whose memoized function reaches a helper module and a constant.
const MAIN = `
const fs = require('node:fs');
const { memo } = require(HITSAVE);
const { scale } = require('./lib/helper');
const OFFSET = 10;
function mark() { fs.appendFileSync(__dirname + '/runs.log', 'x'); }
const slow = memo(function slow(x) {
  mark();
  return scale(x) + OFFSET;
});
if (process.env.ONLY_WHY) console.log(JSON.stringify({ why: slow.why(2) }));
else console.log(JSON.stringify({ value: slow(2) }));
`;
const HELPER = `
const FACTOR = 3;
// scale multiplies by FACTOR
function scale(x) { return x * FACTOR; }
function unrelated() { return 'not reached'; }
module.exports = { scale, unrelated };
`;

function runs(project) {
  const file = path.join(project.root, 'runs.log');
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').length : 0;
}

test('a second run hits; edits to reached code miss; other edits and reverts hit', () => {
  const project = new Project({ 'main.js': MAIN, 'lib/helper.js': HELPER });
  assert.strictEqual(project.run('main.js').out.value, 16);
  assert.strictEqual(runs(project), 1);
  assert.strictEqual(project.run('main.js').out.value, 16);
  assert.strictEqual(runs(project), 1, 'the second process hits');

  // Comments, formatting and an unreached function do not count.
  project.write({
    'lib/helper.js': HELPER.replace('// scale multiplies by FACTOR', '/* a different comment */')
      .replace('function scale(x) { return x * FACTOR; }', 'function scale(x) {\n  return x   *   FACTOR;\n}')
      .replace("'not reached'", "'still not reached'"),
  });
  assert.strictEqual(project.run('main.js').out.value, 16);
  assert.strictEqual(runs(project), 1, 'comments, whitespace and unreached edits hit');

  // An edit in the imported module that the function reaches misses.
  project.write({ 'lib/helper.js': HELPER.replace('const FACTOR = 3;', 'const FACTOR = 4;') });
  const edited = project.run('main.js').out;
  assert.strictEqual(edited.value, 18);
  assert.strictEqual(runs(project), 2);

  // Reverting finds the old result.
  project.write({ 'lib/helper.js': HELPER });
  assert.strictEqual(project.run('main.js').out.value, 16);
  assert.strictEqual(runs(project), 2, 'a revert hits');

  // An edit to the function itself and to a module constant miss.
  project.write({ 'main.js': MAIN.replace('const OFFSET = 10;', 'const OFFSET = 11;') });
  assert.strictEqual(project.run('main.js').out.value, 17);
  assert.strictEqual(runs(project), 3);
  project.write({ 'main.js': MAIN.replace('return scale(x) + OFFSET;', 'return scale(x) + OFFSET + 1;') });
  assert.strictEqual(project.run('main.js').out.value, 17);
  assert.strictEqual(runs(project), 4);
});

test('why names the changed dependency', () => {
  const project = new Project({ 'main.js': MAIN, 'lib/helper.js': HELPER });
  project.run('main.js');
  project.write({ 'lib/helper.js': HELPER.replace('FACTOR = 3', 'FACTOR = 5') });
  const why = project.run('main.js', { env: { ONLY_WHY: '1' } }).out.why;
  assert.match(why, /^miss: code changed/);
  assert.match(why, /lib\/helper\.js:FACTOR/);
  project.write({ 'lib/helper.js': HELPER });
  assert.strictEqual(project.run('main.js', { env: { ONLY_WHY: '1' } }).out.why, 'hit');
});

test('ES modules: imports of the project followed, packages by version', () => {
  const project = new Project({
    'main.mjs': `
      import { memo } from ESM_ENTRY;
      import { double } from './math.mjs';
      import * as text from './text.mjs';
      import leftpad from 'leftpad';
      import fs from 'node:fs';
      const compute = memo((x) => { fs.appendFileSync('runs.log', 'x'); return text.label(double(x)) + leftpad(); });
      console.log(JSON.stringify({ value: compute(4) }));
    `,
    'math.mjs': 'export const double = (x) => x * 2;\nexport function triple(x) { return x * 3; }\n',
    'text.mjs': "export function label(x) { return 'n=' + x; }\nexport function other() { return 1; }\n",
    'node_modules/leftpad/package.json': JSON.stringify({ name: 'leftpad', version: '1.0.0', main: 'index.js', type: 'module' }),
    'node_modules/leftpad/index.js': "export default function leftpad() { return '!'; }\n",
  });
  // ESM imports the package by path (a file URL).
  const main = fs.readFileSync(path.join(project.root, 'main.mjs'), 'utf8');
  fs.writeFileSync(
    path.join(project.root, 'main.mjs'),
    main.replace('ESM_ENTRY', JSON.stringify(require('node:url').pathToFileURL(path.join(__dirname, '..', 'index.mjs')).href)),
  );
  assert.strictEqual(project.run('main.mjs').out.value, 'n=8!');
  assert.strictEqual(project.run('main.mjs').out.value, 'n=8!');
  assert.strictEqual(runs(project), 1);
  project.write({ 'math.mjs': 'export const double = (x) => x * 2;\nexport function triple(x) { return x * 3 + 0; }\n' });
  project.write({ 'text.mjs': "export function label(x) { return 'n=' + x; }\nexport function other() { return 2; }\n" });
  project.run('main.mjs');
  assert.strictEqual(runs(project), 1, 'edits to exports the function does not use hit');
  project.write({ 'text.mjs': "export function label(x) { return 'N=' + x; }\nexport function other() { return 2; }\n" });
  assert.strictEqual(project.run('main.mjs').out.value, 'N=8!');
  assert.strictEqual(runs(project), 2, 'an edit through a namespace import misses');
  project.write({ 'node_modules/leftpad/package.json': JSON.stringify({ name: 'leftpad', version: '1.0.1', main: 'index.js', type: 'module' }) });
  project.run('main.mjs');
  assert.strictEqual(runs(project), 3, 'a package version change misses');
});

test('workspace packages linked into node_modules are followed as the project\'s code', () => {
  // npm, yarn and pnpm workspaces (and `npm link`) link the team's own
  // packages into node_modules: edited in place under an unchanged version,
  // so counting them by version kept hitting results of the old code.
  const project = new Project({
    'main.js': `
      const fs = require('node:fs');
      const { memo } = require(HITSAVE);
      const { k } = require('@acme/utils');
      const { m } = require('@acme/utils/extra');
      const compute = memo((x) => { fs.appendFileSync('runs.log', 'x'); return x * k() + m(); });
      console.log(JSON.stringify({ value: compute(2) }));
    `,
    'packages/utils/package.json': JSON.stringify({
      name: '@acme/utils', version: '1.0.0', exports: { '.': { require: './lib/index.js' }, './extra': './lib/extra.js' },
    }),
    'packages/utils/lib/index.js': 'exports.k = () => 2;\nexports.unused = () => 0;\n',
    'packages/utils/lib/extra.js': 'exports.m = () => 1;\n',
  });
  fs.mkdirSync(path.join(project.root, 'node_modules', '@acme'), { recursive: true });
  fs.symlinkSync(path.join(project.root, 'packages', 'utils'), path.join(project.root, 'node_modules', '@acme', 'utils'));
  assert.strictEqual(project.run('main.js').out.value, 5);
  assert.strictEqual(project.run('main.js').out.value, 5);
  assert.strictEqual(runs(project), 1);
  project.write({ 'packages/utils/lib/index.js': 'exports.k = () => 2;\nexports.unused = () => 1;\n' });
  project.run('main.js');
  assert.strictEqual(runs(project), 1, 'an edit the function does not reach hits');
  project.write({ 'packages/utils/lib/index.js': 'exports.k = () => 3;\nexports.unused = () => 1;\n' });
  assert.strictEqual(project.run('main.js').out.value, 7, 'an edit in the linked package misses');
  project.write({ 'packages/utils/lib/extra.js': 'exports.m = () => 10;\n' });
  assert.strictEqual(project.run('main.js').out.value, 16, 'and through a subpath export');
  assert.strictEqual(runs(project), 3);
});

test('a broken tsconfig.json does not hide the project\'s imports', () => {
  // Invalid JSON, or an extends of a package not installed, failed every
  // resolution: relative imports counted as unresolved, edits behind them hit.
  for (const tsconfig of ['{"compilerOptions": {', '{"extends": "@tsconfig/not-installed/tsconfig.json"}']) {
    const project = new Project({
      'tsconfig.json': tsconfig,
      'lib.js': 'exports.k = () => 2;\n',
      'main.js': `
        const fs = require('node:fs');
        const { memo } = require(HITSAVE);
        const { k } = require('./lib');
        const compute = memo((x) => { fs.appendFileSync('runs.log', 'x'); return x * k(); });
        console.log(JSON.stringify({ value: compute(2) }));
      `,
    });
    assert.strictEqual(project.run('main.js').out.value, 4);
    project.write({ 'lib.js': 'exports.k = () => 3;\n' });
    assert.strictEqual(project.run('main.js').out.value, 6, tsconfig);
    assert.strictEqual(runs(project), 2);
  }
});

test('async: concurrent calls share one computation; a rejection is not cached', () => {
  const project = new Project({
    'main.js': `
      const fs = require('node:fs');
      const { memo } = require(HITSAVE);
      let calls = 0;
      const fetchIt = memo(async (x) => {
        calls++;
        await new Promise((resolve) => setTimeout(resolve, 50));
        if (x < 0) throw new Error('negative');
        return { x, data: Buffer.from('abc'), list: [1, 2.5, 'three', null] };
      });
      (async () => {
        const results = await Promise.all([fetchIt(1), fetchIt(1), fetchIt(1)]);
        const shared = calls;
        let rejected = 0;
        for (let i = 0; i < 2; i++) await fetchIt(-1).catch(() => rejected++);
        // The event loop keeps running while a large argument is hashed off
        // the thread (hashing 256 MiB on the JS thread would leave no tick).
        const size = memo(async (buffer) => buffer.length);
        await size(Buffer.alloc(1));
        const big = Buffer.alloc(256 << 20, 1);
        let ticks = 0;
        const timer = setInterval(() => ticks++, 1);
        const length = await size(big);
        clearInterval(timer);
        console.log(JSON.stringify({ shared, calls, rejected, first: results[0], same: results.every((r) => JSON.stringify(r) === JSON.stringify(results[0])), again: await fetchIt(1), length, ticks }));
      })();
    `,
  });
  const { out } = project.run('main.js');
  assert.strictEqual(out.shared, 1, 'three concurrent calls ran once');
  assert.strictEqual(out.rejected, 2);
  assert.strictEqual(out.calls, 3, 'both rejected calls ran: a rejection is not stored');
  assert.ok(out.same);
  assert.deepStrictEqual(out.again, out.first);
  assert.deepStrictEqual(out.first.list, [1, 2.5, 'three', null]);
  assert.strictEqual(out.length, 256 << 20);
  assert.ok(out.ticks >= 2, `the event loop ticked ${out.ticks} times while 256 MiB were hashed`);
});

test('async: a large JavaScript argument is read in slices, the event loop turning between them', () => {
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      let calls = 0;
      const total = memo(async (xs) => { calls++; return xs.reduce((a, b) => a + b, 0); });
      (async () => {
        const xs = Array.from({ length: 2_000_000 }, (_, i) => i % 1000);
        let last = process.hrtime.bigint(), maxGap = 0;
        const probe = setInterval(() => {
          const now = process.hrtime.bigint();
          maxGap = Math.max(maxGap, Number(now - last) / 1e6);
          last = now;
        }, 1);
        const start = process.hrtime.bigint();
        last = start;
        const value = await total(xs);
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        clearInterval(probe);
        // A change of length between two slices is refused, never hashed half old, half new.
        const changing = Array.from({ length: 2_000_000 }, (_, i) => i);
        const pending = total(changing);
        changing.push(1);
        const refused = await pending.then(() => null, (error) => error.code);
        console.log(JSON.stringify({ value, calls, ms, maxGap, refused }));
      })();
    `,
  });
  const first = project.run('main.js').out;
  assert.strictEqual(first.value, 999_000_000);
  assert.strictEqual(first.refused, 'unhashable_value');
  // Read in one go, the whole walk is one gap; in slices, no gap is near the call's length.
  assert.ok(first.maxGap < first.ms / 3, `the longest gap between ticks was ${first.maxGap} ms of a ${first.ms} ms call`);
  const second = project.run('main.js').out;
  assert.deepStrictEqual([second.value, second.calls], [999_000_000, 0], 'a later process hits');
});

test('async: an argument read in slices has the key of the same argument read in one go', () => {
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      class Point { constructor(x) { this.x = x; this.tags = ['p', x]; } }
      function args() { return arguments; }
      const f = memo(async (value) => 'computed');
      (async () => {
        const big = [];
        for (let i = 0; i < 20_000; i++) {
          big.push({
            i, s: 'item ' + i, nested: [[i, -0.5], { deep: [i] }],
            map: new Map([[i, [i]], ['k', { v: i }]]), set: new Set([i, 'x']),
            point: new Point(i), re: /a+/g, args: args(i, [i]), none: undefined,
          });
        }
        const asyncValue = await f(big);
        // lookup reads the argument in one go (the synchronous walk) and finds what the sliced one stored.
        const hit = f.lookup(big);
        const cyclic = [];
        for (let i = 0; i < 50_000; i++) cyclic.push({ i });
        cyclic[49_999].back = cyclic;
        const refused = await f(cyclic).then(() => null, (error) => [error.code, error.path, error.message]);
        console.log(JSON.stringify({ asyncValue, hit, refused }));
      })();
    `,
  });
  const { out } = project.run('main.js');
  assert.strictEqual(out.asyncValue, 'computed');
  assert.strictEqual(out.hit, 'computed');
  assert.strictEqual(out.refused[0], 'unhashable_value');
  assert.strictEqual(out.refused[1], 'args[0][49999]["back"]');
  assert.match(out.refused[2], /cyclic Array/);
});

test('async: a repeated hit is answered without a libuv worker', () => {
  const project = new Project({
    'main.js': `
      const crypto = require('node:crypto');
      const { memo } = require(HITSAVE);
      let calls = 0;
      const f = memo(async (x) => { calls++; return { x, list: [x, 'y'] }; });
      (async () => {
        await f(1); // computed and stored
        const read = await f(1); // read from the store on the worker, kept in memory
        // Hold the only worker (UV_THREADPOOL_SIZE=1) for a while.
        let busy = true;
        crypto.pbkdf2('p', 's', 2_000_000, 32, 'sha256', () => { busy = false; });
        const hit = await f(1);
        const answeredWhileBusy = busy;
        const other = await f(2); // a new key needs the worker: it waits its turn
        console.log(JSON.stringify({ calls, read, hit, answeredWhileBusy, other, busyAfterMiss: busy }));
      })();
    `,
  });
  const { out } = project.run('main.js', { env: { UV_THREADPOOL_SIZE: '1' } });
  assert.deepStrictEqual(out.hit, { x: 1, list: [1, 'y'] });
  assert.deepStrictEqual(out.read, out.hit);
  assert.strictEqual(out.answeredWhileBusy, true, 'the repeated hit waited for the busy worker');
  assert.deepStrictEqual(out.other, { x: 2, list: [2, 'y'] });
  assert.strictEqual(out.busyAfterMiss, false, 'a miss goes through the worker');
  assert.strictEqual(out.calls, 2);
});

test("async: the first call's code analysis runs off the JS thread", () => {
  // A module large enough that reading, parsing and fingerprinting it takes a while.
  const filler = Array.from({ length: 20000 }, (_, i) => `function filler${i}(a, b) { return a * ${i} + b; }`).join('\n');
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      ${filler}
      const f = memo(async (x) => filler7(x, 1));
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      const start = process.hrtime.bigint();
      f(2).then((value) => {
        clearInterval(timer);
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        console.log(JSON.stringify({ value, ticks, ms, graph: f.graph().nodes.map((node) => node[1]) }));
      });
    `,
  });
  const { out } = project.run('main.js');
  assert.strictEqual(out.value, 15);
  assert.ok(out.graph.includes('main.js:filler7'), out.graph.join(', '));
  // A 1 ms interval ticks about once a millisecond on a free loop; analysing
  // on the JS thread leaves only the few ticks of the store's worker hops.
  assert.ok(out.ticks >= out.ms / 4, `the event loop ticked ${out.ticks} times in the ${out.ms} ms of the first call`);
});

test('a Buffer of 4 GiB is returned, not stored, with a warning, never a crash', {
  skip: !process.env.HITSAVE_SOAK && 'needs ~9 GiB of memory: HITSAVE_SOAK=1',
}, () => {
  // Node's largest Buffer is longer than a stream's inline item (4 GiB - 1).
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      let calls = 0;
      const f = memo((n) => { calls++; const b = Buffer.alloc(n); b[n - 1] = 7; return b; });
      const out = f(2 ** 32);
      console.log(JSON.stringify({ calls, len: out.length, last: out[out.length - 1] }));
    `,
  });
  for (let run = 0; run < 2; run++) {
    const { out, stderr } = project.run('main.js', { env: { HITSAVE_MAX_SIZE: '20GiB' } });
    assert.deepStrictEqual(out, { calls: 1, len: 2 ** 32, last: 7 });
    assert.match(stderr, /returned but not stored/);
  }
});

test('results come back as the values the function returned', () => {
  const project = new Project({
    'main.js': `
      const { memo, NDArray } = require(HITSAVE);
      const v8 = require('node:v8');
      const make = memo((kind) => {
        switch (kind) {
          case 'portable': return { n: 1, f: -0.5, big: 2n ** 70n, s: 'é', b: Buffer.from([0, 255]), l: [true, null, [1]],
            f64: new Float64Array([1.5, 2]), i64: new BigInt64Array([-1n]), nd: new NDArray('int32', [2, 2], new Int32Array([1, 2, 3, 4])),
            m: new Map([[1, 'one'], [2, 'two']]), sm: new Map([['a', 1]]),
            f16: new NDArray('float16', [2], new Uint16Array([15360, 16384])),
            c64: new NDArray('complex64', [1], new Float32Array([1, -1])) };
          case 'v8': return { d: new Date(0), u: undefined, s: new Set([1]), small: 5n };
          case 'undefined': return undefined;
        }
      });
      const show = (v) => v8.serialize(v).toString('hex');
      const out = {};
      for (const kind of ['portable', 'v8', 'undefined']) {
        const first = make(kind);
        const hit = make(kind);
        out[kind] = { equal: show(first) === show(hit), hitNd: kind === 'portable' ? hit.nd instanceof NDArray : null };
        if (kind === 'portable') out.carriers = [hit.f16.data.constructor.name, hit.c64.data.constructor.name, hit.sm instanceof Map];
      }
      console.log(JSON.stringify(out));
    `,
  });
  project.run('main.js');
  const { out } = project.run('main.js');
  for (const kind of ['portable', 'v8', 'undefined']) assert.ok(out[kind].equal, kind);
  assert.ok(out.portable.hitNd);
  // A dtype without a TypedArray of its own comes back in the carrier it was written with.
  assert.deepStrictEqual(out.carriers, ['Uint16Array', 'Float32Array', true]);
  const listing = project.cli('ls', '--json');
  assert.strictEqual(listing.status, 0, listing.stderr);
});

test('one object reached twice is not two equal copies, in arguments and in results', () => {
  // [a, a] and [[1], [1]] are equal, but a function tells them apart (v[0] === v[1],
  // or pushing to v[0]): each has its own key, in a fresh process too, and a
  // result holding one array twice comes back holding it twice.
  const project = new Project({
    'main.mjs': `
      import { memo } from ${JSON.stringify(path.join(PACKAGE, "index.js"))};
      import fs from 'node:fs';
      const mark = () => fs.appendFileSync('runs.log', 'x');
      const shared = memo((v) => { mark(); return [v[0] === v[1], v[2] === v[3]]; });
      const pair = memo(async (n) => { mark(); const row = [n]; return { a: row, b: row }; });
      const a = [1], box = { n: 0 }, t = new Float64Array(2);
      const out = [
        shared([a, a, box, box]), shared([[1], [1], { n: 0 }, { n: 0 }]),
        shared([t, t, box, { n: 0 }]), shared([t, new Float64Array(2), new Map(), new Map()]),
        shared([new Map([[1, a]]), 0, [a, a], 0]),
      ];
      const grid = await pair(1);
      grid.a.push(2);
      out.push(grid);
      console.log(JSON.stringify(out));
    `,
  });
  const expected = [[true, true], [false, false], [true, false], [false, false], [false, false], { a: [1, 2], b: [1, 2] }];
  assert.deepStrictEqual(project.run('main.mjs').out, expected);
  assert.strictEqual(runs(project), 6);
  assert.deepStrictEqual(project.run('main.mjs').out, expected, 'a hit keeps which objects are one');
  assert.strictEqual(runs(project), 6, 'the second process hits every call');
});

test('a call that changes its arguments is returned, not stored', () => {
  // A hit returns the result without running the body, so it would not make
  // the change the call made (xs.push, d.n += 1, an in-place sort): code
  // after it would see other values. Sync and async; a function that only
  // reads its arguments hits as before.
  const project = new Project({
    'main.mjs': `
      import { memo } from ${JSON.stringify(path.join(PACKAGE, 'index.js'))};
      import fs from 'node:fs';
      const mark = () => fs.appendFileSync('runs.log', 'x');
      const warned = new Set();
      process.on('warning', (w) => { if (w.message.includes('changed its arguments')) warned.add(w.message.split(': ')[1]); });
      const push = memo(function push(xs) { mark(); xs.push(1); return xs.length; });
      const count = memo(async function count(d) { mark(); d.n = (d.n ?? 0) + 1; return d.n; });
      const smallest = memo(function smallest(xs) { mark(); return xs.sort((a, b) => a - b)[0]; });
      const total = memo(function total(xs) { mark(); return xs.reduce((a, b) => a + b, 0); });
      const v = [], d = {}, u = [3, 1, 2];
      const out = [push(v), push(v), v, await count(d), await count(d), d, smallest(u), u, total([1, 2])];
      await new Promise(setImmediate);
      console.log(JSON.stringify({ out, warned: [...warned].sort() }));
    `,
  });
  const expected = [1, 2, [1, 1], 1, 2, { n: 2 }, 1, [1, 2, 3], 3];
  const first = project.run('main.mjs').out;
  assert.deepStrictEqual(first.out, expected);
  assert.deepStrictEqual(first.warned, ['main.mjs:count', 'main.mjs:push', 'main.mjs:smallest']);
  assert.strictEqual(runs(project), 6);
  assert.deepStrictEqual(project.run('main.mjs').out.out, expected);
  assert.strictEqual(runs(project), 11, 'only total hits');
});

test('trailing undefined arguments: missing ones, unless the function counts its arguments', () => {
  // (...xs) => xs.length is 1 for f(1) and 2 for f(1, undefined); a function
  // with a default parameter cannot tell them apart and keeps one key.
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      const fs = require('node:fs');
      const mark = () => fs.appendFileSync(__dirname + '/runs.log', 'x');
      const rest = memo((...xs) => { mark(); return xs.length; });
      const args = memo(function args() { mark(); return arguments.length; });
      const plain = memo((a, b = 5) => { mark(); return [a, b]; });
      console.log(JSON.stringify([rest(1), rest(1, undefined), args(1), args(1, undefined), plain(1), plain(1, undefined)]));
    `,
  });
  const expected = [1, 2, 1, 2, [1, 5], [1, 5]];
  assert.deepStrictEqual(project.run('main.js').out, expected);
  assert.strictEqual(runs(project), 5, 'plain(1, undefined) is plain(1)');
  assert.deepStrictEqual(project.run('main.js').out, expected);
  assert.strictEqual(runs(project), 5);
});

test('lookup, key, clear, ignore and explicit identity', () => {
  const project = new Project({
    'main.js': `
      const { memo, MISS } = require(HITSAVE);
      let runs = 0;
      const f = memo(function f(a, verbose) { runs++; return a * 2; }, { ignore: ['verbose'] });
      const out = {};
      out.before = f.lookup(3) === MISS;
      out.value = f(3, true);
      out.ignored = f(3, false);
      out.runs = runs;
      out.after = f.lookup(3);
      out.sameKey = f.key(3) === f.key(3, true) && f.key(3) !== f.key(4);
      out.trailingUndefined = f.key(3, undefined) === f.key(3);
      out.cleared = f.clear();
      out.afterClear = f.lookup(3) === MISS;
      const g = memo((x) => x + 1, { name: 'shared-g', version: '1' });
      const h = memo((x) => x + 100, { name: 'shared-g', version: '1' });
      out.explicit = [g(1), h(1)];
      out.versions = memo((x) => x + 5, { name: 'shared-g', version: '2' })(1);
      console.log(JSON.stringify(out));
    `,
  });
  const { out } = project.run('main.js');
  assert.deepStrictEqual(out, {
    before: true, value: 6, ignored: 6, runs: 1, after: 6, sameKey: true, trailingUndefined: true,
    cleared: 1, afterClear: true, explicit: [2, 2], versions: 6,
  });
});

test('errors are typed with stable codes and paths; nothing stored is lost', () => {
  const project = new Project({
    'main.js': `
      const { memo, HitSaveError } = require(HITSAVE);
      const f = memo((a, b) => a + b.x);
      const out = { value: f(1, { x: 2 }) };
      try { f(1, { x: new WeakMap() }); } catch (e) {
        out.error = { isHitSave: e instanceof HitSaveError, code: e.code, path: e.path, message: e.message };
      }
      out.still = f.lookup(1, { x: 2 });
      try { memo((x) => x, { name: 'a' }); } catch (e) { out.options = e instanceof TypeError; }
      try { memo((x) => x, { name: 'bad\\u0001', version: '1' })(1); } catch (e) { out.identity = e.code; }
      try { memo((x) => x, { ignore: ['nope'] }); } catch (e) { out.ignore = e instanceof TypeError; }
      // A cycle is named where it closes; the same object twice is no cycle.
      const node = { name: 'root', children: [] };
      node.children.push({ name: 'leaf', parent: node });
      try { f.key(1, { x: node }); } catch (e) { out.cycle = [e.code, e.path, e.message.includes('cyclic Object')]; }
      // ... but not two equal copies either (pushing to one changes the other).
      const shared = { n: 1 };
      out.shared = [f.key(1, { x: [shared, shared] }) === f.key(1, { x: [shared, shared] }),
        f.key(1, { x: [shared, shared] }) === f.key(1, { x: [{ n: 1 }, { n: 1 }] })];
      console.log(JSON.stringify(out));
    `,
  });
  const { out } = project.run('main.js');
  assert.strictEqual(out.value, 3);
  assert.deepStrictEqual({ ...out.error, message: undefined }, { isHitSave: true, code: 'unhashable_value', path: 'args[1]["x"]', message: undefined });
  assert.match(out.error.message, /WeakMap/);
  assert.strictEqual(out.still, 3);
  assert.ok(out.options);
  assert.strictEqual(out.identity, 'invalid_identity');
  assert.ok(out.ignore);
  assert.deepStrictEqual(out.cycle, ['unhashable_value', 'args[1]["x"]["children"][0]["parent"]', true]);
  assert.deepStrictEqual(out.shared, [true, false]);

  // A bad setting is a typed error from sync and async functions alike.
  project.write({
    'config.js': `
      const { memo } = require(HITSAVE);
      const out = {};
      try { memo((x) => x)(1); } catch (e) { out.sync = [e.code, e.message]; }
      memo(async (x) => x)(1).catch((e) => {
        out.async = [e.code, e.message];
        console.log(JSON.stringify(out));
      });
    `,
  });
  const bad = project.run('config.js', { env: { HITSAVE_MODE: 'sometimes' } }).out;
  const message = 'invalid configuration: HITSAVE_MODE: mode must be off, local, cloud or read-only, got "sometimes"';
  assert.deepStrictEqual(bad, { sync: ['config_invalid', message], async: ['config_invalid', message] });
});

test('a result that cannot be stored is still returned, with one warning', () => {
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      const f = memo((x) => x * 2);
      console.log(JSON.stringify({ values: [f(1), f(2), f(1)] }));
    `,
  });
  fs.writeFileSync(path.join(project.root, 'blocker'), 'a file where the store directory should be');
  const { out, stderr } = project.run('main.js', { env: { HITSAVE_CACHE_DIR: path.join(project.root, 'blocker', 'cache') } });
  assert.deepStrictEqual(out.values, [2, 4, 2]);
  assert.strictEqual(stderr.match(/hitsave: warning/g).length, 1, stderr);
});

test('HITSAVE_MODE=off computes every time; read-only reads but never writes', () => {
  const project = new Project({ 'main.js': MAIN, 'lib/helper.js': HELPER });
  project.run('main.js', { env: { HITSAVE_MODE: 'off' } });
  project.run('main.js', { env: { HITSAVE_MODE: 'off' } });
  assert.strictEqual(runs(project), 2);
  project.run('main.js', { env: { HITSAVE_MODE: 'read-only' } });
  project.run('main.js', { env: { HITSAVE_MODE: 'read-only' } });
  assert.strictEqual(runs(project), 4, 'read-only stores nothing');
  project.run('main.js');
  project.run('main.js', { env: { HITSAVE_MODE: 'read-only' } });
  assert.strictEqual(runs(project), 5, 'read-only reads');
});

test('the hitsave CLI runs from the Node package', () => {
  const project = new Project({ 'main.js': MAIN, 'lib/helper.js': HELPER });
  project.run('main.js');
  const listing = project.cli('ls');
  assert.strictEqual(listing.status, 0, listing.stderr);
  assert.match(listing.stdout, /main\.js:slow/);
  assert.strictEqual(project.cli('stats').status, 0);
  assert.strictEqual(project.cli('no-such-command').status, 2);
});

test('a plain function that returns a promise keeps returning promises', () => {
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      const later = memo((x) => new Promise((resolve) => setTimeout(() => resolve(x * 3), 5)));
      const declared = memo((x) => Promise.resolve(x + 1), { async: true });
      (async () => {
        const first = later(2);
        const second = later(2);
        const third = declared(1);
        console.log(JSON.stringify({
          promises: [first instanceof Promise, second instanceof Promise, third instanceof Promise],
          values: [await first, await second, await third],
        }));
      })();
    `,
  });
  const computed = project.run('main.js').out;
  assert.deepStrictEqual(computed, { promises: [true, true, true], values: [6, 6, 2] });
  const { out } = project.run('main.js');
  assert.deepStrictEqual(out.values, [6, 6, 2]);
  // In a new process a hit comes before the function was seen returning a promise: a plain
  // value (await gives the same), unless the function says async: true.
  assert.deepStrictEqual(out.promises, [false, false, true]);
});

test('File arguments: hashed off the thread for async functions, by contents', () => {
  const project = new Project({
    'data.txt': 'one',
    'main.js': `
      const fs = require('node:fs');
      const { memo, File, MISS } = require(HITSAVE);
      const count = memo(async (file, big) => { fs.appendFileSync('runs.log', 'x'); return fs.readFileSync(file.path, 'utf8').length + big.length; });
      (async () => {
        const big = Buffer.alloc(1 << 20, 3);
        const value = await count(new File('data.txt'), big);
        // The key computed inline (lookup is sync) equals the one computed on the worker.
        const found = count.lookup(new File('data.txt'), Buffer.from(big));
        console.log(JSON.stringify({ value, found: found === MISS ? 'miss' : found }));
      })();
    `,
  });
  assert.deepStrictEqual(project.run('main.js').out, { value: 3 + (1 << 20), found: 3 + (1 << 20) });
  project.run('main.js');
  assert.strictEqual(runs(project), 1);
  project.write({ 'data.txt': 'three' });
  assert.strictEqual(project.run('main.js').out.value, 5 + (1 << 20));
  assert.strictEqual(runs(project), 2, 'new file contents miss');
  fs.rmSync(path.join(project.root, 'data.txt'));
  const missing = project.run('main.js', { expectFailure: true });
  assert.notStrictEqual(missing.status, 0);
  assert.match(missing.stderr, /code: 'io'/);
});

test('methods: this is part of the key when the function uses it', () => {
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      let runs = 0;
      class Scaler {
        constructor(k) { this.k = k; }
      }
      Scaler.prototype.apply = memo(function apply(x) { runs++; return this.k * x; });
      const plain = memo(function plain(x) { runs++; return x; });
      const a = new Scaler(2);
      const b = new Scaler(3);
      const out = { a: a.apply(5), b: b.apply(5), again: a.apply(5), plain: [plain(1), plain.call({ ignored: true }, 1)] };
      out.runs = runs;
      // key/lookup/why take the method's receiver through call(); called on the
      // function itself they describe a call without one (not one with the
      // memoized function as its receiver).
      out.why = [Scaler.prototype.apply.why.call(a, 5), Scaler.prototype.apply.why.call(b, 7).split(':')[0]];
      out.sameKey = Scaler.prototype.apply.key.call(a, 5) !== Scaler.prototype.apply.key.call(b, 5);
      const bare = memo(function bare(x) { return this === undefined || this === globalThis ? x : -x; });
      out.bare = [bare(4), bare.why(4)];
      // super.calc(x) calls with this instance: it counts as this does.
      class Doubler extends Scaler { twice(x) { return super.times(x) * 2; } }
      Scaler.prototype.times = function (x) { return this.k * x; };
      Doubler.prototype.twice = memo(Doubler.prototype.twice);
      out.super = [new Doubler(2).twice(5), new Doubler(3).twice(5)];
      console.log(JSON.stringify(out));
    `,
  });
  assert.deepStrictEqual(project.run('main.js').out, {
    a: 10, b: 15, again: 10, plain: [1, 1], runs: 3, why: ['hit', 'miss'], sameKey: true, bare: [4, 'hit'], super: [20, 30],
  });
});

test('a function imported from another module is analysed where it is defined', () => {
  const project = new Project({
    'lib.js': 'const RATE = 2;\nexports.cost = function cost(x) { require("node:fs").appendFileSync("runs.log", "x"); return x * RATE; };\n',
    'main.js': `
      const { memo } = require(HITSAVE);
      const { cost } = require('./lib');
      const cached = memo(cost);
      console.log(JSON.stringify({ value: cached(21), root: cached.graph().root }));
    `,
  });
  assert.deepStrictEqual(project.run('main.js').out, { value: 42, root: 'lib.js:exports.cost' });
  project.run('main.js');
  assert.strictEqual(runs(project), 1);
  project.write({ 'lib.js': 'const RATE = 3;\nexports.cost = function cost(x) { require("node:fs").appendFileSync("runs.log", "x"); return x * RATE; };\n' });
  assert.strictEqual(project.run('main.js').out.value, 63);
});

test("Node's own WebAssembly traps still work beside the embedded wasmtime", () => {
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      memo((x) => x + 1)(1); // wasmtime is loaded and its signal handlers installed
      // (module (memory 1) (func (export "f") (result i32) i32.const 0x7fffffff i32.load))
      const bytes = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 5, 3, 1, 0, 1,
        7, 5, 1, 1, 102, 0, 0, 10, 13, 1, 11, 0, 65, 255, 255, 255, 255, 7, 40, 2, 0, 11]);
      const { f } = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports;
      let caught = null;
      for (let i = 0; i < 3; i++) {
        try { f(); } catch (e) { caught = e instanceof WebAssembly.RuntimeError ? 'RuntimeError' : String(e); }
      }
      console.log(JSON.stringify({ caught, after: memo((x) => x * 2)(4) }));
    `,
  });
  assert.deepStrictEqual(project.run('main.js').out, { caught: 'RuntimeError', after: 8 });
});

test('two processes missing one key compute it once (the compute lock); with the lock off, twice', async () => {
  const project = new Project({
    'main.js': `
      const fs = require('node:fs');
      const { memo } = require(HITSAVE);
      const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      const slowSync = memo(function slowSync(x) {
        fs.appendFileSync(__dirname + '/sync.log', 'x');
        sleep(2500);
        return x * 2;
      });
      const slowAsync = memo(async function slowAsync(x) {
        fs.appendFileSync(__dirname + '/async.log', 'x');
        await new Promise((resolve) => setTimeout(resolve, 2500));
        return x * 3;
      });
      slowSync.key(0); // analysis and the core loaded before the race, so both start together
      slowAsync.key(0);
      while (!fs.existsSync(__dirname + '/go')) sleep(5);
      const a = slowSync(7);
      slowAsync(7).then((b) => console.log(JSON.stringify({ a, b })));
    `,
  });
  const count = (name) => {
    const file = path.join(project.root, name);
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').length : 0;
  };
  const race = async (env) => {
    const children = [project.spawn('main.js', env), project.spawn('main.js', env)];
    const outputs = children.map((child) => {
      let out = '';
      child.stdout.on('data', (chunk) => (out += chunk));
      return new Promise((resolve) => child.on('close', (code) => resolve({ code, out })));
    });
    await new Promise((resolve) => setTimeout(resolve, 1500)); // both ready and waiting
    fs.writeFileSync(path.join(project.root, 'go'), '');
    const done = await Promise.all(outputs);
    fs.rmSync(path.join(project.root, 'go'));
    for (const { code, out } of done) {
      assert.strictEqual(code, 0);
      assert.deepStrictEqual(JSON.parse(out.trim()), { a: 14, b: 21 });
    }
  };
  await race({});
  assert.deepStrictEqual([count('sync.log'), count('async.log')], [1, 1], 'the second process waited and hit');
  // Without the lock both compute: what the lock saves (and proof this test can fail).
  fs.rmSync(project.cache, { recursive: true, force: true });
  await race({ HITSAVE_LOCK_WAIT: '0' });
  assert.deepStrictEqual([count('sync.log'), count('async.log')], [3, 3]);
});

test('large array results are views of the memory-mapped result, writable, private', () => {
  const project = new Project({
    'main.js': `
      const fs = require('node:fs');
      const { memo } = require(HITSAVE);
      const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      const big = memo(function big(n) {
        fs.appendFileSync(__dirname + '/runs.log', 'x');
        sleep(200); // slow enough to be worth storing (docs/spec/policy.md)
        return { label: 'waves', samples: Float64Array.from({ length: n }, (_, i) => i / 2), small: new Int32Array([1, 2, 3]),
          raw: Buffer.alloc(1 << 16, 7) };
      });
      const n = 1 << 17;
      const out = big(n);
      const s = out.samples;
      const view = (a) => a.buffer.byteLength > a.byteLength && a.byteOffset % 64 === 0;
      const ok = s.length === n && s[n - 1] === (n - 1) / 2 && out.label === 'waves';
      s[0] = -1; // writable like the array the function returned
      const raw = out.raw;
      const rawOk = Buffer.isBuffer(raw) && raw.length === 1 << 16 && raw[100] === 7;
      raw[0] = 9; // a Buffer result too: writable, and the write stays in this result
      const rawView = raw.buffer.byteLength > raw.length;
      console.log(JSON.stringify({ ok, mapped: view(s), small: view(out.small), again: big(n).samples[0], rawOk, rawView, rawAgain: big(n).raw[0] }));
    `,
  });
  const first = project.run('main.js').out;
  assert.deepStrictEqual(first, { ok: true, mapped: false, small: false, again: 0, rawOk: true, rawView: first.rawView, rawAgain: 7 });
  const second = project.run('main.js').out;
  assert.deepStrictEqual(second, { ok: true, mapped: true, small: false, again: 0, rawOk: true, rawView: true, rawAgain: 7 },
    'a write never reaches the store; a large Buffer is a view of the mapped result, not a copy');
  assert.strictEqual(fs.readFileSync(path.join(project.root, 'runs.log'), 'utf8'), 'x');
});

test('a large result is stored without a copy in memory (sync and async)', () => {
  // Its TypedArray and Buffer data are written to the store from where they
  // lie (docs/node.md, "Results"): storing a 160 MiB result raises the peak
  // memory by the result and little more (before: two more copies).
  const project = new Project({
    'main.js': `
      const fs = require('node:fs');
      const { memo } = require(HITSAVE);
      const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      const n = 160 << 20;
      const make = (kind) => {
        fs.appendFileSync(__dirname + '/runs.log', 'x');
        sleep(400); // slow enough to be worth storing
        const data = new Float64Array(n / 8);
        for (let i = 0; i < data.length; i += 4096) data[i] = i;
        return kind === 'buffer' ? { raw: Buffer.from(data.buffer), label: 'b' } : [data, 'a'];
      };
      const array = memo(function array() { return make('array'); });
      const buffer = memo(async function buffer() { return make('buffer'); });
      (async () => {
        // One function per process: the peak is a high-water mark.
        const before = process.resourceUsage().maxRSS * 1024;
        const out = await (process.argv[2] === 'array' ? array : buffer)();
        const grown = Math.round(((process.resourceUsage().maxRSS * 1024 - before) / n) * 100) / 100;
        const at = (i) => (Array.isArray(out) ? out[0][i] : out.raw.readDoubleLE(8 * i));
        const length = Array.isArray(out) ? out[0].length * 8 : out.raw.length;
        if (length !== n || at(4096 * 7) !== 4096 * 7 || at(1) !== 0) throw new Error('wrong data');
        console.log(JSON.stringify({ grown }));
      })();
    `,
  });
  for (const kind of ['array', 'buffer']) {
    const { grown } = project.run('main.js', { args: [kind] }).out;
    assert.ok(grown <= 1.3, `storing a ${kind} result of n bytes grew peak memory by ${grown} n`);
    project.run('main.js', { args: [kind] });
  }
  assert.strictEqual(fs.readFileSync(path.join(project.root, 'runs.log'), 'utf8'), 'xx', 'both stored, then hits');
});

test('a result the policy declines is returned with one warning, and why says so', () => {
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      const warnings = [];
      process.on('warning', (warning) => warnings.push([warning.name, warning.code]));
      let runs = 0;
      // 4 MiB over a 1 MiB budget (HITSAVE_MAX_SIZE below): declined whatever
      // the machine's speed (cheaper-to-recompute depends on the call's time).
      // (An explicit identity: the statement below reads the command line and
      // holds \`cheap\`, so it would count toward \`cheap\`'s fingerprint.)
      const cheap = memo(function cheap(n) { runs++; return Buffer.alloc(n); }, { name: 'cheap', version: '1' });
      if (process.argv[2] === 'only-why') {
        // A later process has seen nothing itself: the store remembers the decline.
        console.log(JSON.stringify({ same: cheap.why(4 << 20), other: cheap.why(5 << 20) }));
        process.exit(0);
      }
      cheap(4 << 20);
      cheap(4 << 20);
      const small = memo(function small(n) { return n + 1; });
      small(1);
      setImmediate(() => console.log(JSON.stringify({ runs, warnings, why: cheap.why(4 << 20), small: small.why(1) })));
    `,
  });
  const budget = { HITSAVE_MAX_SIZE: '1MiB' };
  const { out } = project.run('main.js', { env: budget });
  assert.strictEqual(out.runs, 2, 'not stored, so computed again');
  assert.deepStrictEqual(out.warnings, [['HitSaveNotStoredWarning', 'HITSAVE_NOT_STORED']], 'one warning per function');
  assert.match(out.why, /^miss: the last result for these arguments \(\d+ bytes, computed in \d+ µs\) was not stored: larger than the whole size budget \(1048576 bytes\)/);
  assert.strictEqual(out.small, 'hit');

  const later = project.run('main.js', { env: budget, args: ['only-why'] }).out;
  assert.match(later.same, /^miss: the last result for these arguments \(\d+ bytes, computed in \d+ µs\) was not stored: larger than the whole size budget/);
  assert.match(later.other, /; a result of this function was not stored by the cache policy \(\d+ bytes/);
});

test('waiting for another process holds neither the event loop nor the libuv pool', async () => {
  const project = new Project({
    'slow.js': `
      const fs = require('node:fs');
      const { memo } = require(HITSAVE);
      module.exports = memo(async function slow(x) {
        fs.appendFileSync(__dirname + '/started.log', 'x');
        await new Promise((resolve) => setTimeout(resolve, 2500));
        return x * 10;
      });
    `,
    'holder.js': `
      const slow = require('./slow');
      Promise.all([0, 1, 2, 3, 4, 5].map(slow)).then((values) => console.log(JSON.stringify(values)));
    `,
    'waiter.js': `
      const fs = require('node:fs');
      const slow = require('./slow');
      const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      // Start once the holder computes all six keys (and so holds their locks).
      while (!fs.existsSync(__dirname + '/started.log') || fs.readFileSync(__dirname + '/started.log', 'utf8').length < 6) sleep(5);
      const values = Promise.all([0, 1, 2, 3, 4, 5].map(slow));
      const asked = Date.now();
      setTimeout(async () => {
        const start = Date.now();
        await fs.promises.readFile(__filename); // needs a libuv worker
        const readMs = Date.now() - start;
        const all = await values;
        console.log(JSON.stringify({ values: all, readMs, waitedMs: Date.now() - asked }));
      }, 100);
    `,
  });
  const holder = project.spawn('holder.js');
  const done = new Promise((resolve) => holder.on('close', resolve));
  const { out } = project.run('waiter.js');
  await done;
  assert.deepStrictEqual(out.values, [0, 10, 20, 30, 40, 50]);
  assert.strictEqual(fs.readFileSync(path.join(project.root, 'started.log'), 'utf8'), 'xxxxxx', 'the waiter computed nothing');
  assert.ok(out.waitedMs >= 1000, `it did wait for the holder (${out.waitedMs} ms)`);
  assert.ok(out.readMs < 1000, `a file read went through while six keys were waited for (${out.readMs} ms)`);
});

test('worker threads load the addon and share the store with the main thread', () => {
  const project = new Project({
    'main.js': `
      const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
      const { memo } = require(HITSAVE);
      let runs = 0;
      const f = memo(async function f(x) { runs++; return { x, square: x * x, data: new Float64Array(2000).fill(x) }; });
      const g = memo(function g(x) { runs++; return [x, 'g']; });
      if (isMainThread) {
        (async () => {
          const first = await f(1);
          const workers = [0, 1].map((i) => new Worker(__filename, { workerData: i }));
          const results = await Promise.all(workers.map((worker) => new Promise((resolve, reject) => {
            worker.on('message', resolve);
            worker.on('error', reject);
          })));
          console.log(JSON.stringify({ main: first.square, runs, results }));
        })();
      } else {
        (async () => {
          const shared = await f(1); // the main thread's result
          const own = await f(workerData + 10);
          parentPort.postMessage({ shared: shared.square, own: own.square, sync: g(workerData), runs, length: shared.data.length });
        })();
      }
    `,
  });
  const first = project.run('main.js').out;
  assert.deepStrictEqual(first, {
    main: 1,
    runs: 1,
    results: [
      { shared: 1, own: 100, sync: [0, 'g'], runs: 2, length: 2000 },
      { shared: 1, own: 121, sync: [1, 'g'], runs: 2, length: 2000 },
    ],
  });
  const again = project.run('main.js').out;
  assert.strictEqual(again.runs, 0);
  assert.ok(again.results.every((result) => result.runs === 0), 'every thread hits in a new process');
});

test('a class instance in a result is not stored where v8 would bring it back as a plain object', () => {
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      const warnings = [];
      process.on('warning', (warning) => warnings.push([warning.name, warning.code, warning.message]));
      class Point { constructor(x) { this.x = x; } norm() { return Math.abs(this.x); } }
      let runs = 0;
      const make = memo(function make(x) { runs++; return { label: 'p', points: [new Point(x)] }; });
      const explicit = memo(function explicit(x) { runs++; return new Point(x); }, { codec: 'v8' });
      // (An error's stack names this project's files: a result holding the
      // working directory is not stored, so this one has a stack without it.)
      const error = Object.assign(new TypeError('t'), { stack: 'TypeError: t' });
      const faithful = memo(function faithful(x) { runs++; return { d: new Date(x), e: error, b: Buffer.from([x]), m: new Map([['k', 1]]) }; });
      const first = make(3);
      const second = make(3);
      explicit(1); const kept = explicit(1);
      faithful(1); const back = faithful(1);
      setImmediate(() => console.log(JSON.stringify({
        runs, norm: second.points[0].norm(), same: first.points[0] instanceof Point && second.points[0] instanceof Point,
        keptIsPlain: !(kept instanceof Point) && kept.x === 1,
        faithful: back.d instanceof Date && back.e instanceof TypeError && Buffer.isBuffer(back.b) && back.m instanceof Map,
        warnings,
      })));
    `,
  });
  const { out } = project.run('main.js');
  assert.strictEqual(out.runs, 2 + 1 + 1, 'make computed twice (not stored); explicit and faithful once each');
  assert.strictEqual(out.norm, 3);
  assert.ok(out.same, 'every call returns Points');
  assert.ok(out.keptIsPlain, "codec: 'v8' stores what v8 keeps");
  assert.ok(out.faithful);
  assert.strictEqual(out.warnings.length, 2);
  assert.deepStrictEqual(out.warnings[0].slice(0, 2), ['HitSaveNotStoredWarning', 'HITSAVE_NOT_FAITHFUL']);
  assert.match(out.warnings[0][2], /holds Point at result\.points\[0\]/);
});

test('properties under symbol keys and array holes are not left out of a key or a stored result', () => {
  // `{ [TAG]: 1 }` and `{ [TAG]: 2 }` gave one key (the symbol-keyed
  // property was skipped), so did `[1, , 3]` and `[1, undefined, 3]`: both
  // are refused in an argument. A result holding a symbol-keyed property
  // came back without it from a hit: it is returned and not stored.
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      const TAG = Symbol.for('tag');
      const warnings = [];
      process.on('warning', (warning) => warnings.push([warning.code, warning.message]));
      let runs = 0;
      const read = memo(function read(o) { runs++; return String(o[TAG] ?? o[1]); });
      const tagged = memo(function tagged(x) { runs++; return { x, [TAG]: x * 2 }; });
      const refused = [];
      for (const arg of [{ [TAG]: 1 }, [1, , 3]]) {
        try { read(arg); } catch (e) { refused.push([e.code, e.path, /symbol keys|a hole/.test(e.message)]); }
      }
      const dense = read([1, undefined, 3]);
      const first = tagged(1);
      const second = tagged(1);
      setImmediate(() => console.log(JSON.stringify({ refused, dense, runs, kept: [first[TAG], second[TAG]], warnings })));
    `,
  });
  const { out } = project.run('main.js');
  assert.deepStrictEqual(out.refused, [['unhashable_value', 'args[0]', true], ['unhashable_value', 'args[0][1]', true]]);
  assert.strictEqual(out.dense, 'undefined');
  assert.deepStrictEqual(out.kept, [2, 2]);
  assert.strictEqual(out.runs, 1 + 2, 'tagged is computed each time (not stored)');
  assert.deepStrictEqual(out.warnings.map(([code]) => code), ['HITSAVE_NOT_FAITHFUL', 'HITSAVE_NOT_FAITHFUL']);
  assert.match(out.warnings[0][1], /properties under symbol keys at result, which v8 serialization leaves out/);
});

test('state besides the elements and enumerable fields is not left out of a key or a stored result', () => {
  // \`'abcb'.match(/b/)\` and \`'bbcd'.match(/b/)\` are both ['b']: their
  // \`index\` (and \`input\`, \`groups\`) was left out of the key, so
  // \`(m) => m.index\` returned 1 for the second: an array's own enumerable
  // properties are now part of its key. A non-enumerable property, a function
  // argument's own properties and a prototype patched after its declaration,
  // an Array, Map or TypedArray subclass's methods, a Map's, Date's or
  // TypedArray's own properties were left out too: each is refused in an
  // argument. A result array's own properties came back without them
  // from a fresh process's hit (the portable form is a list); a non-enumerable
  // property or an object without a prototype (v8 gives it Object's) came
  // back changed: such results are returned and not stored.
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      const warnings = [];
      process.on('warning', (warning) => warnings.push([warning.code, warning.message]));
      let runs = 0;
      const read = memo(function read(m) { runs++; return typeof m === 'function' ? String(m.k ?? m.prototype.calc) : String(m.index ?? m.h ?? m.length); });
      function P() {}
      P.prototype.calc = function calc(x) { return x; };
      function Q() {}
      Q.prototype = { calc(x) { return x; } };
      class Tags extends Array {}
      const long = Array.from({ length: 1000 }, (_, i) => i);
      long.index = 5;
      class DefaultMap extends Map { get(k) { return super.get(k) ?? 0; } }
      class Vec extends Float64Array {}
      const refused = [];
      // An array's own properties are part of its key (\`js:Array\` around its elements and them).
      const matched = [read('abcb'.match(/b/)), read('bbcd'.match(/b/)), read(long), read(Object.assign([0], { index: 7 }))];
      for (const arg of [Object.defineProperty([1], 'h', { value: 9 }), Object.defineProperty({ a: 1 }, 'h', { value: 9 }),
        Object.assign(function g() {}, { k: 2 }), P, Q, Tags.from([1]),
        Object.assign(new Map(), { index: 1 }), new DefaultMap(), Object.assign(new Date(0), { tz: 'x' }),
        Object.assign(new Float64Array(1000), { index: 2 }), Object.assign(Buffer.from('b'), { index: 3 }), Vec.from([1])]) {
        try { read(arg); refused.push('read'); } catch (e) { refused.push([e.code, e.path, e.message.match(/type (.*) cannot be hashed/)[1]]); }
      }
      const plain = [read(['b']), read(Array.from({ length: 1000 }, (_, i) => i))];
      // An \`arguments\` object is a list (\`js:Arguments\`), not the map of its indices.
      const size = memo(function size(a) { return String(a.length); });
      const sizes = [size({ 0: 1, 1: 2 }), size((function () { return arguments; })(1, 2))];
      const match = memo(function match(s) { runs++; return s.match(/b/); });
      const hidden = memo(function hidden(x) { runs++; return Object.defineProperty({ x }, 'h', { value: 9 }); });
      const bare = memo(function bare(x) { runs++; return Object.assign(Object.create(null), { x }); });
      const tagged = memo(function tagged(x) { runs++; return Object.assign(new Map([[x, 1]]), { tag: 'x' }); });
      const t = [tagged(1), tagged(1)];
      const got = match('abcb');
      const h = [hidden(1), hidden(1)];
      const b = [bare(1), bare(1)];
      setImmediate(() => console.log(JSON.stringify({
        matched, refused, plain, sizes, runs, index: got.index, input: got.input,
        hidden: h.map((o) => o.h), bare: b.map((o) => Object.getPrototypeOf(o) === null), tags: t.map((m) => m.tag),
        warnings: warnings.map(([code]) => code),
      })));
    `,
  });
  const first = project.run('main.js').out;
  assert.deepStrictEqual(first.matched, ['1', '0', '5', '7']);
  assert.deepStrictEqual(first.refused, [
    ['unhashable_value', 'args[0]', 'Array (own non-enumerable properties: h)'],
    ['unhashable_value', 'args[0]', 'Object (non-enumerable properties: h)'],
    ['unhashable_value', 'args[0]', 'function g (it carries state its source leaves out (k); pass memo(fn) or the values instead)'],
    ['unhashable_value', 'args[0]', 'function P (it carries state its source leaves out (prototype.calc); pass memo(fn) or the values instead)'],
    ['unhashable_value', 'args[0]', 'function Q (it carries state its source leaves out (prototype.calc); pass memo(fn) or the values instead)'],
    ['unhashable_value', 'args[0]', 'Tags (an Array whose prototype is not Array.prototype)'],
    ['unhashable_value', 'args[0]', 'Map (own properties its contents leave out: index)'],
    ['unhashable_value', 'args[0]', 'DefaultMap (a Map whose prototype is not Map.prototype)'],
    ['unhashable_value', 'args[0]', 'Date (own properties its contents leave out: tz)'],
    ['unhashable_value', 'args[0]', 'TypedArray (own properties besides its elements: index)'],
    ['unhashable_value', 'args[0]', 'TypedArray (own properties besides its elements: index)'],
    ['unhashable_value', 'args[0]', 'Vec (a Float64Array whose prototype is not Float64Array.prototype)'],
  ]);
  assert.deepStrictEqual(first.plain, ['1', '1000']);
  assert.deepStrictEqual(first.sizes, ['undefined', '2']);
  assert.deepStrictEqual(first.hidden, [9, 9]);
  assert.deepStrictEqual(first.bare, [true, true]);
  assert.deepStrictEqual(first.tags, ['x', 'x']);
  assert.strictEqual(first.runs, 4 + 2 + 1 + 2 + 2 + 2, 'hidden, bare and tagged are computed each time (not stored)');
  assert.deepStrictEqual(first.warnings, Array(6).fill('HITSAVE_NOT_FAITHFUL'));
  const second = project.run('main.js').out;
  assert.deepStrictEqual([second.index, second.input], [1, 'abcb'], "a hit's match keeps its index and input");
  assert.strictEqual(second.runs, 2 + 2 + 2, 'read and match are hits');
});

test('a result holding the working directory is returned and not stored', () => {
  // `path.resolve(name)` returns a path under the working directory: the
  // result computed in `a/` was served in `b/` (and to a teammate through
  // the cloud). It is returned and not stored, with a warning; a relative
  // path is stored as before.
  const { spawnSync } = require('node:child_process');
  const project = new Project({
    'paths.js': `
      const path = require('node:path');
      const { memo } = require(HITSAVE);
      const where = memo(function where(name) { console.error('ran:where'); return path.resolve(name); });
      const relative = memo(function relative(name) { console.error('ran:relative'); return path.join('data', name); });
      console.log(JSON.stringify([where('x.csv'), relative('x.csv')]));
    `,
  });
  const runIn = (directory) => {
    const cwd = path.join(project.root, directory);
    fs.mkdirSync(cwd, { recursive: true });
    const done = spawnSync(process.execPath, [path.join(project.root, 'paths.js')], { cwd, env: project.env(), encoding: 'utf8' });
    assert.strictEqual(done.status, 0, done.stderr);
    const runs = done.stderr.split('\n').filter((line) => line.startsWith('ran:')).map((line) => line.slice(4)).join(',') || '-';
    return [...JSON.parse(done.stdout), runs, done.stderr];
  };
  const first = runIn('a');
  assert.deepStrictEqual(first.slice(0, 3), [path.join(project.root, 'a', 'x.csv'), 'data/x.csv', 'where,relative']);
  assert.match(first[3], /HITSAVE_NOT_STORED/);
  assert.ok(first[3].includes(`holds the working directory ${path.join(project.root, 'a')} as text`), first[3]);
  assert.deepStrictEqual(runIn('a').slice(0, 3), [path.join(project.root, 'a', 'x.csv'), 'data/x.csv', 'where']);
  assert.deepStrictEqual(runIn('b').slice(0, 3), [path.join(project.root, 'b', 'x.csv'), 'data/x.csv', 'where']);
});

test('node -e and a script piped to node - are analysed from their text', () => {
  const { spawnSync } = require('node:child_process');
  const project = new Project({ 'lib.js': 'exports.K = 3;\n' });
  const script = `
    const { memo } = require(${JSON.stringify(PACKAGE)});
    const { K } = require('./lib');
    let runs = 0;
    const f = memo((x) => { runs++; return x * K; });
    console.log(JSON.stringify({ value: f(2), runs }));
  `;
  const run = (how) => {
    const args = how === 'eval' ? ['-e', script] : ['-'];
    const result = spawnSync(process.execPath, args, {
      cwd: project.root, env: project.env(), encoding: 'utf8', input: how === 'stdin' ? script : undefined,
    });
    assert.strictEqual(result.status, 0, result.stderr);
    return JSON.parse(result.stdout.trim());
  };
  assert.deepStrictEqual(run('eval'), { value: 6, runs: 1 });
  assert.deepStrictEqual(run('eval'), { value: 6, runs: 0 }, 'a second node -e hits');
  assert.deepStrictEqual(run('stdin'), { value: 6, runs: 1 }, 'stdin is its own script name');
  assert.deepStrictEqual(run('stdin'), { value: 6, runs: 0 });
  project.write({ 'lib.js': 'exports.K = 4;\n' });
  assert.deepStrictEqual(run('eval'), { value: 8, runs: 1 }, 'an edit of an imported module misses');
});

const TSX = path.join(__dirname, 'typescript', 'node_modules', '.bin', 'tsx');

/** Runs a file of the project through tsx; returns its last line of JSON. */
function runTsx(project, file) {
  const { spawnSync } = require('node:child_process');
  const result = spawnSync(TSX, [file], { cwd: project.root, env: project.env(), encoding: 'utf8' });
  assert.strictEqual(result.status, 0, result.stderr);
  return JSON.parse(result.stdout.trim().split('\n').pop());
}

test('TypeScript run through tsx: positions come from source maps; types do not count', {
  skip: !fs.existsSync(TSX) && process.env.CI !== 'true' && 'tsx is not installed (npm ci --prefix bindings/node/test/typescript)',
}, () => {
  const project = new Project({
    'lib.ts': 'export const SCALE: number = 3;\nexport function scale(x: number): number { return x * SCALE; }\n',
    'main.ts': `
      import { memo } from ${JSON.stringify(path.join(PACKAGE, 'index.js'))};
      import { scale } from './lib';

      interface Options { offset: number }
      let runs = 0;
      const compute = memo((x: number, options: Options): number => {
        runs++;
        return scale(x) + options.offset;
      });
      console.log(JSON.stringify({ value: compute(2, { offset: 1 }), runs }));
    `,
    'esm.mts': `
      import { memo } from ${JSON.stringify(path.join(PACKAGE, 'index.mjs'))};
      import { scale } from './lib.ts';
      let runs = 0;
      const compute = memo((x: number): number => { runs++; return scale(x); });
      console.log(JSON.stringify({ value: compute(5), runs }));
    `,
  });
  const run = (file) => runTsx(project, file);
  assert.deepStrictEqual(run('main.ts'), { value: 7, runs: 1 });
  assert.deepStrictEqual(run('main.ts'), { value: 7, runs: 0 });
  assert.deepStrictEqual(run('esm.mts'), { value: 15, runs: 1 });
  assert.deepStrictEqual(run('esm.mts'), { value: 15, runs: 0 });
  // A type-only edit does not count; an edit of code the function reaches does.
  const main = fs.readFileSync(path.join(project.root, 'main.ts'), 'utf8');
  project.write({ 'main.ts': main.replace('interface Options { offset: number }', 'interface Options { offset: number; label?: string }') });
  assert.deepStrictEqual(run('main.ts'), { value: 7, runs: 0 });
  project.write({ 'lib.ts': 'export const SCALE: number = 4;\nexport function scale(x: number): number { return x * SCALE; }\n' });
  assert.deepStrictEqual(run('main.ts'), { value: 9, runs: 1 });
  assert.deepStrictEqual(run('esm.mts'), { value: 20, runs: 1 });
});

test('tsconfig paths aliases (through tsx) and package.json imports (#aliases) are followed as project code', {
  skip: !fs.existsSync(TSX) && process.env.CI !== 'true' && 'tsx is not installed (npm ci --prefix bindings/node/test/typescript)',
}, () => {
  // Both name the project's own files with bare-looking specifiers; counted as
  // packages that are not installed, edits to them kept hitting old results.
  const project = new Project({
    'tsconfig.json': '{\n  // comments are allowed here\n  "compilerOptions": { "baseUrl": ".", "paths": { "@/*": ["src/*"] } },\n}\n',
    'src/rate.ts': 'export const rate = (): number => 2;\n',
    'main.ts': `
      import { memo } from ${JSON.stringify(path.join(PACKAGE, 'index.js'))};
      import { rate } from '@/rate';
      let runs = 0;
      const compute = memo((x: number): number => { runs++; return x * rate(); });
      console.log(JSON.stringify({ value: compute(5), runs }));
    `,
  });
  project.write({
    'package.json': JSON.stringify({ name: 'project', private: true, imports: { '#config': './config.js' } }),
    'config.js': 'exports.offset = 1;\n',
    'imports.js': `
      const { memo } = require(HITSAVE);
      const { offset } = require('#config');
      let runs = 0;
      const compute = memo((x) => { runs++; return x + offset; });
      console.log(JSON.stringify({ value: compute(5), runs }));
    `,
  });
  const run = (file) => runTsx(project, file);
  assert.deepStrictEqual(run('main.ts'), { value: 10, runs: 1 });
  assert.deepStrictEqual(run('main.ts'), { value: 10, runs: 0 });
  project.write({ 'src/rate.ts': 'export const rate = (): number => 3;\n' });
  assert.deepStrictEqual(run('main.ts'), { value: 15, runs: 1 }, 'an edit behind a paths alias misses');

  assert.deepStrictEqual(project.run('imports.js').out, { value: 6, runs: 1 });
  assert.deepStrictEqual(project.run('imports.js').out, { value: 6, runs: 0 });
  project.write({ 'config.js': 'exports.offset = 2;\n' });
  assert.deepStrictEqual(project.run('imports.js').out, { value: 7, runs: 1 }, 'an edit behind an imports alias misses');
});

test('a function made by an expression (a bound method, a factory) counts that expression and what it reaches', () => {
  const files = {
    'model.js': `
      class Model {
        constructor(k) { this.k = k; }
        predict(x) { return x * this.k; }
      }
      function makeScaler(k) { return (x) => x * k + 1; }
      function unrelated() { return 1; }
      module.exports = { Model, makeScaler, unrelated };
    `,
    'main.js': `
      const fs = require('node:fs');
      const { memo } = require(HITSAVE);
      const { Model, makeScaler } = require('./model');
      const model = new Model(3);
      const predict = memo(model.predict.bind(model));
      const scale = memo(makeScaler(2));
      const out = { predict: predict(2), scale: scale(2) };
      console.log(JSON.stringify({ ...out, keys: [predict.graph().root, scale.graph().root] }));
    `,
  };
  const project = new Project(files);
  const runs = () => project.run('main.js').out;
  const first = runs();
  assert.deepStrictEqual([first.predict, first.scale], [6, 5]);
  assert.deepStrictEqual(first.keys, ['main.js:predict/memo', 'main.js:scale/memo']);
  const hitsAfter = (edit) => {
    project.write(edit);
    return project.run('main.js').out;
  };
  // Stored results counted after each run: a miss adds one.
  const stored = () => JSON.parse(project.cli('stats', '--json').stdout).evals;
  assert.strictEqual(stored(), 2);
  runs();
  assert.strictEqual(stored(), 2, 'a second run hits both');
  hitsAfter({ 'model.js': files['model.js'].replace('return 1;', 'return 2;') });
  assert.strictEqual(stored(), 2, 'an edit the expressions do not reach changes nothing');
  const edited = hitsAfter({ 'model.js': files['model.js'].replace('x * this.k', 'x * this.k + 10') });
  assert.strictEqual(edited.predict, 16);
  assert.strictEqual(stored(), 3, 'an edit of the bound method misses');
  const factory = hitsAfter({ 'main.js': files['main.js'].replace('makeScaler(2)', 'makeScaler(5)') });
  assert.strictEqual(factory.scale, 11);
  assert.strictEqual(factory.predict, 16);
  assert.strictEqual(stored(), 4, 'an edit of the factory call misses that function only');
});

test('a function that uses run-time values of the code around it counts them by value; a lexical this is refused', () => {
  // \`[2, 3].map((k) => memo((x) => x * k))\` makes two functions of one
  // text: refused before, now each counts the \`k\` its closure holds (read
  // in the running program, as Python counts a closure's cells). A \`const\`
  // of the code around holding an object, an array or a function counted as
  // code: \`cfg.k = 5\` by a method of the factory was not seen (2 where the
  // code computes 10). Primitive literal \`const\`s stay code.
  const main = `
      const { memo } = require(HITSAVE);
      function makeScaler(k) { return (x) => { console.error('ran:scaler'); return x * k; }; }
      const BASE = 10;
      const out = {};
      const attempt = (label, make) => {
        try { out[label] = make(); } catch (e) { out[label] = [e.code, e.message]; }
      };
      attempt('loop', () => [2, 3].map((k) => memo((x) => { console.error('ran:loop'); return x * k; })).map((f) => f(5)));
      attempt('factory', () => [2, 3].map((k) => memo(makeScaler(k))).map((f) => f(5)));
      attempt('parameter', () => { const wrap = (offset) => memo((x) => x + offset); return [wrap(1)(1), wrap(2)(1)]; });
      class Scaler { constructor(k) { this.k = k; this.scale = memo((x) => x * this.k); } }
      attempt('this', () => new Scaler(2).scale(5));
      attempt('code', () => {
        const K = 3;
        const DERIVED = K * BASE;
        function helper(x) { return x + 1; }
        const f = memo((x) => helper(x) * K + DERIVED);
        return f(1);
      });
      // Objects, arrays and functions of the code around, changed after memo(): seen.
      attempt('mutated', () => {
        function build() {
          const cfg = { k: 1 };
          const weights = [1];
          function helper(x) { return x * helper.k; }
          helper.k = 1;
          const f = memo((x) => { console.error('ran:mutated'); return x * cfg.k + x * weights[0] + helper(x); });
          return { f, set(v) { cfg.k = v; weights[0] = v; helper.k = v; } };
        }
        const b = build();
        const first = b.f(2);
        b.set(5);
        return [first, b.f(2)];
      });
      // A let the code around assigns: read again before each call.
      attempt('let', () => {
        function counter() { let step = 1; return { f: memo((x) => x * step), set(v) { step = v; } }; }
        const c = counter();
        const first = c.f(3);
        c.set(4);
        return [first, c.f(3)];
      });
      attempt('call', () => { const k = Math.max(2, BASE); return memo((x) => x * k)(1); });
      attempt('explicit', () => [2, 3].map((k) => memo((x) => x * k, { name: 'times-' + k, version: '1' })).map((f) => f(5)));
      // Made by a factory of another file: the call's \`k\` is the caller's, not
      // what the closure holds (its own \`k\` is 1 for both): refused.
      const { makeScaled } = require('./lib');
      attempt('imported', () => [2, 3].map((k) => memo(makeScaled(k))(5)));
      console.log(JSON.stringify(out));
    `;
  const project = new Project({ 'main.js': main, 'lib.js': 'exports.makeScaled = (n) => { const k = 1; return (x) => x * n * k; };\n' });
  const expected = { loop: [10, 15], factory: [10, 15], parameter: [2, 3], code: 36, mutated: [6, 30], let: [3, 12], call: 10, explicit: [10, 15] };
  const first = project.run('main.js');
  const { this: refused, imported, ...rest } = first.out;
  assert.deepStrictEqual(rest, expected);
  assert.strictEqual(refused[0], 'code_unavailable');
  assert.match(refused[1], /uses this from/);
  assert.strictEqual(imported[0], 'code_unavailable');
  assert.match(imported[1], /uses k from/);
  const ran = (stderr) => stderr.split('\n').filter((line) => line.startsWith('ran:')).sort().join(',');
  assert.strictEqual(ran(first.stderr), 'ran:loop,ran:loop,ran:mutated,ran:mutated,ran:scaler,ran:scaler');
  // A fresh process: every value hits, none computed again.
  const again = project.run('main.js');
  assert.deepStrictEqual({ ...again.out, this: undefined, imported: undefined }, { ...expected, this: undefined, imported: undefined });
  assert.strictEqual(ran(again.stderr), '');
});

test('memo() run again for the same function (a handler, a loop) shares one registration', () => {
  const project = new Project({
    'main.js': `
      const hitsave = require(HITSAVE);
      let runs = 0;
      function handle(request) {
        // An anti-pattern, but common: memo() inside the code that calls it.
        const lookup = hitsave.memo((x) => { runs++; return x * 2; });
        const lookupAsync = hitsave.memo(async (x) => { runs++; return x * 3; });
        return Promise.all([lookup(request % 3), lookupAsync(request % 3)]);
      }
      (async () => {
        const before = hitsave._native.registeredFunctions();
        const results = [];
        for (let i = 0; i < 300; i++) results.push(await handle(i));
        const added = hitsave._native.registeredFunctions() - before;
        console.log(JSON.stringify({ added, runs, last: results[299] }));
      })();
    `,
  });
  const { out } = project.run('main.js');
  assert.strictEqual(out.added, 2, 'two functions, two registrations');
  assert.strictEqual(out.runs, 6, 'three keys each, computed once');
  assert.deepStrictEqual(out.last, [4, 6]);
});

test('locals of a top-level statement (an async IIFE) that the function reads count', () => {
  const MAIN_IIFE = `
    const fs = require('node:fs');
    const { memo } = require(HITSAVE);
    function unrelated() { return 1; }
    (async () => {
      const K = 3;
      const f = memo((x) => { fs.appendFileSync('runs.log', 'x'); return x * K; });
      console.log(JSON.stringify({ value: f(2) }));
    })();
  `;
  const project = new Project({ 'main.js': MAIN_IIFE });
  assert.strictEqual(project.run('main.js').out.value, 6);
  assert.strictEqual(project.run('main.js').out.value, 6);
  assert.strictEqual(runs(project), 1);
  project.write({ 'main.js': MAIN_IIFE.replace('return 1;', 'return 2;') });
  assert.strictEqual(project.run('main.js').out.value, 6);
  assert.strictEqual(runs(project), 1, 'an edit outside the statement hits');
  project.write({ 'main.js': MAIN_IIFE.replace('const K = 3;', 'const K = 4;') });
  assert.strictEqual(project.run('main.js').out.value, 8, 'the edited local is seen (it returned 6 before)');
  assert.strictEqual(runs(project), 2);
});

test("the package's hitsave serves (the server itself, one definition with hitsave-server)", async () => {
  const project = new Project();
  const { spawn } = require('node:child_process');
  const server = spawn(
    process.execPath,
    [path.join(PACKAGE, 'bin', 'hitsave.js'), 'serve', '--listen', '127.0.0.1:0', '--create-project', 'team', '--data', path.join(project.root, 'server')],
    { env: { ...project.env(), HITSAVE_SERVER_LOG: 'off' }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    let out = '';
    for await (const chunk of server.stdout) {
      out += chunk;
      if (out.split('\n').length > 2) break;
    }
    const [first, second] = out.split('\n');
    const key = first.replace('project team: ', '');
    const url = second.replace('listening on ', '');
    assert.ok(key.startsWith('hs_') && url.startsWith('http://127.0.0.1:'), out);
    const answer = await fetch(`${url}/v1/whoami`, { headers: { authorization: `Bearer ${key}` } });
    assert.strictEqual((await answer.json()).project, 'team');
    const exited = new Promise((resolve) => server.on('exit', resolve));
    server.kill('SIGTERM');
    assert.strictEqual(await exited, 0);
  } finally {
    server.kill('SIGKILL');
  }
});
