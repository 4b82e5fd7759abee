'use strict';
// The code graph is rooted at the function passed to memo(), wherever memo()
// is called from: never at the helper that called it. A real project on
// disk, fresh processes, one store.
const test = require('node:test');
const assert = require('node:assert');
const { Project } = require('./helpers');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const LIB = `
const { memo } = require(HITSAVE);
// The project's own wrapper around memo().
function cached(fn) { return memo(fn); }
module.exports = { cached };
`;

const APP = `
const { memo } = require(HITSAVE);
const { cached } = require('./lib');
function double(x) { return x * 2; }        // EDIT-double
function triple(x) { return x * 3; }
const a = cached(double);
const b = cached(triple);
// Through a local helper, a map over functions and a conditional choice.
function local(fn) { return memo(fn); }
const c = local((x) => x + 100);
const [d, e] = [(x) => x - 1, (x) => x - 2].map((fn) => memo(fn));
function pick(kind) { return memo(kind === 'a' ? function fa(x) { return x * 10; } : function fb(x) { return x * 20; }); }
const f = pick('a');
const g = pick('b');
console.log(JSON.stringify([a(1), b(1), c(1), d(1), e(1), f(1), g(1)]));
`;

test('functions memoized through a helper each keep their own results', () => {
  const project = new Project({ 'lib.js': LIB, 'app.js': APP });
  const expected = [2, 3, 101, 0, -1, 10, 20];
  assert.deepStrictEqual(project.run('app.js').out, expected);
  assert.deepStrictEqual(project.run('app.js').out, expected, 'a second process hits the right results');
  // An edit of one function changes only its results.
  project.write({ 'app.js': APP.replace('return x * 2; }        // EDIT-double', 'return x * 5; }') });
  assert.deepStrictEqual(project.run('app.js').out, [5, 3, 101, 0, -1, 10, 20]);
});

test('a function the analysis cannot place is refused, never the helper that called memo()', () => {
  const project = new Project({
    'lib.js': LIB,
    'app.js': `
      const { cached } = require('./lib');
      const made = cached(new Function('x', 'return x + 1'));
      try { made(1); console.log(JSON.stringify('computed')); }
      catch (error) { console.log(JSON.stringify(error.code)); }
    `,
  });
  assert.strictEqual(project.run('app.js').out, 'code_unavailable');
});

const MUTATIONS = `
const { memo } = require(HITSAVE);
const config = { nested: { k: 1 }, m: 1 };
config.nested.k = 2;                          // EDIT-nested
config['m'] = 3;                              // EDIT-index
const extra = {};
Object.assign(extra, { e: 4 });               // EDIT-assign
const handlers = new Map();
handlers.set('op', (x) => x + 5);             // EDIT-registry
const steps = [];
steps.push((x) => x * 6);                     // EDIT-push
class Calc { rate() { return 1; } }
Calc.prototype.rate = function () { return 7; };  // EDIT-prototype
let flag = 0;
if (true) { flag = 8; }                       // EDIT-block
const total = memo(function total(x) {
  return [config.nested.k, config.m, extra.e, handlers.get('op')(x), steps[0](x), new Calc().rate(), flag];
});
console.log(JSON.stringify(total(1)));
`;

test('top-level statements that change what a function reads count toward it', () => {
  const marks = [
    ['EDIT-nested', 'k = 2', 'k = 20'],
    ['EDIT-index', '= 3;', '= 30;'],
    ['EDIT-assign', 'e: 4', 'e: 40'],
    ['EDIT-registry', 'x + 5', 'x + 50'],
    ['EDIT-push', 'x * 6', 'x * 60'],
    ['EDIT-prototype', 'return 7', 'return 70'],
    ['EDIT-block', 'flag = 8', 'flag = 80'],
  ];
  for (const [mark, before, after] of marks) {
    const project = new Project({ 'main.js': MUTATIONS });
    const first = project.run('main.js').out;
    assert.deepStrictEqual(first, [2, 3, 4, 6, 6, 7, 8]);
    const line = MUTATIONS.split('\n').find((l) => l.includes(mark));
    project.write({ 'main.js': MUTATIONS.replace(line, line.replace(before, after)) });
    const edited = project.run('main.js').out;
    assert.notDeepStrictEqual(edited, first, `${mark}: the edit must miss, not return the old result`);
  }
});

// Functions that change a module-level binding when they run, called at the
// top of a module (here or in another one, directly or through others).
const WRITERS = {
  'rate.mjs': `
export let RATE = 1;
export function setRate(r) { RATE = r; }
`,
  'init.mjs': `
import { setRate } from './rate.mjs';
export function init() { setRate(2); }                 // EDIT-cross-caller
`,
  'cfg.js': `exports.cfg = { k: 1, j: 1 };\n`,
  'setup.js': `
const { cfg } = require('./cfg');
exports.setup = () => { cfg.k = 3; };                  // EDIT-imported-writer
`,
  'main.mjs': `
import { memo } from HITSAVE_ESM;
import { createRequire } from 'node:module';
import { appendFileSync } from 'node:fs';
import { RATE } from './rate.mjs';
import { init } from './init.mjs';
const require = createRequire(import.meta.url);
const { cfg } = require('./cfg');
let scale = 1;
function setScale(s) { scale = s; }
function configure() { setScale(4); }                  // EDIT-local-caller
configure();
const table = { t: 1 };
function load() { const alias = table; alias.t = 5; }  // EDIT-alias
load();
init();
require('./setup').setup();
// Reads cfg and scale, changes nothing: editing it changes no other result.
function describe() { return String(cfg.k) + scale; }  // EDIT-reader
const total = memo(function total(x) {
  appendFileSync(new URL('./runs.txt', import.meta.url), 'x');
  return [x * RATE, cfg.k, scale, table.t];
});
console.log(JSON.stringify([total(1), describe()]));
`,
};

test('functions that change a binding when called count toward it, wherever they are called from', () => {
  const marks = [
    ['init.mjs', 'EDIT-cross-caller', 'setRate(2)', 'setRate(20)'],
    ['setup.js', 'EDIT-imported-writer', 'k = 3', 'k = 30'],
    ['main.mjs', 'EDIT-local-caller', 'setScale(4)', 'setScale(40)'],
    ['main.mjs', 'EDIT-alias', 't = 5', 't = 50'],
  ];
  const files = Object.fromEntries(
    Object.entries(WRITERS).map(([name, text]) => [name, text.replace('HITSAVE_ESM', JSON.stringify(require.resolve('../index.mjs')))]),
  );
  for (const [file, mark, before, after] of marks) {
    const project = new Project(files);
    const first = project.run('main.mjs').out;
    assert.deepStrictEqual(first, [[2, 3, 4, 5], '34']);
    const line = files[file].split('\n').find((l) => l.includes(mark));
    project.write({ [file]: files[file].replace(line, line.replace(before, after)) });
    const edited = project.run('main.mjs').out;
    assert.notDeepStrictEqual(edited[0], first[0], `${file} ${mark}: the edit must miss, not return the old result`);
  }
  // A function that only reads those bindings is not a writer: editing it still hits.
  const project = new Project(files);
  project.run('main.mjs');
  const line = files['main.mjs'].split('\n').find((l) => l.includes('EDIT-reader'));
  project.write({ 'main.mjs': files['main.mjs'].replace(line, line.replace('+ scale', '+ scale + "!"')) });
  assert.deepStrictEqual(project.run('main.mjs').out, [[2, 3, 4, 5], '34!']);
  assert.strictEqual(fs.readFileSync(path.join(project.root, 'runs.txt'), 'utf8'), 'x', 'the edit of a reader hits');
});

test('a top-level statement that only calls a function and shows the result is not part of its code', () => {
  // `console.log(JSON.stringify([half(5), …]))` and `half(1);` call a helper
  // the memoized function uses: calling it does not change it, so editing
  // such a call (another argument) must not change the fingerprint of what
  // uses it (total(5) ran again). A call that changes what the function
  // reads (`setScale(3)`) and a change made through a returned object
  // (`getConfig().k = 3`) still count.
  const main = (n, scale, k) => `
const { memo } = require(HITSAVE);
let SCALE = 1;
const CONFIG = { k: 1 };
function setScale(s) { SCALE = s; }
function getConfig() { return CONFIG; }
function half(x) { return x / 2; }
const total = memo(function total(x) { console.error('ran:total'); return half(x) * SCALE; });
const viaConfig = memo(function viaConfig(x) { console.error('ran:viaConfig'); return x * getConfig().k; });
setScale(${scale});
getConfig().k = ${k};
half(${n});
(async () => {
  await half(${n});
  console.log(JSON.stringify([half(${n}), total(6), viaConfig(5)]));
})();
`;
  const project = new Project({ 'main.js': main(4, 3, 2) });
  assert.deepStrictEqual(resultsAndRuns(project), [2, 9, 10, 'total,viaConfig']);
  project.write({ 'main.js': main(8, 3, 2) });
  assert.deepStrictEqual(resultsAndRuns(project), [4, 9, 10, '-']);
  project.write({ 'main.js': main(8, 4, 2) });
  assert.deepStrictEqual(resultsAndRuns(project), [4, 12, 10, 'total']);
  project.write({ 'main.js': main(8, 4, 3) });
  assert.deepStrictEqual(resultsAndRuns(project), [4, 12, 15, 'viaConfig']);
});

test('a module loaded by a computed name is refused; a name bound to a constant is followed', () => {
  const project = new Project({
    'u.js': 'exports.g = (x) => x * 2;\n',
    'app.js': `
      const { memo } = require(HITSAVE);
      const NAME = './u';
      const viaConst = memo((x) => require(NAME).g(x) + require(\`./u\`).g(x));
      const computed = memo((x) => require('./' + 'u').g(x));
      let refused;
      try { computed(1); } catch (error) { refused = [error.code, /app\\.js:5 loads a module by a name only known when it runs/.test(error.message)]; }
      console.log(JSON.stringify([viaConst(5), refused]));
    `,
  });
  assert.deepStrictEqual(project.run('app.js').out, [20, ['code_unavailable', true]]);
  project.write({ 'u.js': 'exports.g = (x) => x * 3;\n' });
  assert.deepStrictEqual(project.run('app.js').out, [30, ['code_unavailable', true]], 'editing the required file misses');
});

test('a 200-module project whose functions call across modules is analysed once, quickly enough to use', () => {
  // Each module exports its functions first (`exports.f = f`, as CommonJS
  // cycles need), then requires the next: 500 functions in a cross-module
  // chain. (An analysis that treated exports as writers took minutes here.)
  const files = {};
  const modules = 200;
  const functions = 500;
  for (let m = 0; m < modules; m++) {
    const mine = [];
    for (let i = m; i < functions; i += modules) mine.push(i);
    let source = mine.map((i) => `exports.f${i} = f${i};\n`).join('');
    for (const i of mine) if (i + 1 < functions) source += `const { f${i + 1} } = require('./m${(i + 1) % modules}');\n`;
    for (const i of mine) source += `function f${i}(x) { return ${i + 1 < functions ? `f${i + 1}(x) + 1` : 'x'}; }\n`;
    files[`m${m}.js`] = source;
  }
  files['main.js'] = `
    const { memo } = require(HITSAVE);
    const { f0 } = require('./m0');
    const run = memo(function run(x) { require('node:fs').appendFileSync(__dirname + '/runs.txt', 'x'); return f0(x); });
    console.log(JSON.stringify(run(1)));
  `;
  const project = new Project(files);
  assert.strictEqual(project.run('main.js').out, 500);
  assert.strictEqual(project.run('main.js').out, 500);
  assert.strictEqual(fs.readFileSync(path.join(project.root, 'runs.txt'), 'utf8'), 'x', 'the second process hits');
  project.write({ 'm150.js': files['m150.js'].replace('f151(x) + 1', 'f151(x) + 2') });
  assert.strictEqual(project.run('main.js').out, 501, 'an edit deep in the chain misses');
});

test('a dependency chain of 10,000 functions is analysed, not a crash', () => {
  let source = 'const { memo } = require(HITSAVE);\n';
  const count = 10_000;
  // Each function refers to the next without calling it: a deep graph, a shallow run.
  for (let i = 0; i < count; i++) source += `function f${i}() { return ${i + 1 < count ? `typeof f${i + 1}` : "'end'"}; }\n`;
  source += 'const m = memo((x) => f0() + x);\nconsole.log(JSON.stringify(m(1)));\n';
  const project = new Project({ 'main.js': source });
  assert.strictEqual(project.run('main.js').out, 'function1');
  assert.strictEqual(project.run('main.js').out, 'function1');
});


/** Edits `file` by `[before, after]` and checks the call misses with a new value (not the old result). */
function editMisses(project, run, file, before, after) {
  const first = run();
  assert.deepStrictEqual(run(), first, 'a second process hits');
  const text = fs.readFileSync(path.join(project.root, file), 'utf8');
  assert.ok(text.includes(before), before);
  project.write({ [file]: text.replace(before, after) });
  const edited = run();
  assert.notDeepStrictEqual(edited, first, `${file}: ${before} -> ${after} must miss`);
}

test('module forms: CommonJS self-references and createRequire are followed', () => {
  const project = new Project({
    'lib.js': `
      exports.fmt = (x) => 'v' + x;                  // EDIT-fmt
      exports.wrap = (x) => '[' + exports.fmt(x) + ']';
      function b(x) { return x * 2; }               // EDIT-b
      function a(x) { return module.exports.b(x) + 1; }
      module.exports.a = a;
      module.exports.b = b;
    `,
    'helper.cjs': `module.exports = { k: 3 };  // EDIT-cjs\n`,
    'main.mjs': `
      import { createRequire } from 'node:module';
      import { memo } from ${JSON.stringify(path.resolve(__dirname, '..', 'index.js'))};
      const lib = createRequire(import.meta.url)('./lib.js');
      const load = createRequire(import.meta.url);
      const wrapped = memo((x) => lib.wrap(x));
      const viaA = memo((x) => lib.a(x));
      const viaLoad = memo((x) => load('./helper.cjs').k * x);
      console.log(JSON.stringify([wrapped(1), viaA(1), viaLoad(1)]));
    `,
  });
  const run = () => project.run('main.mjs').out;
  editMisses(project, run, 'lib.js', "'v' + x", "'w' + x");
  editMisses(project, run, 'lib.js', 'x * 2', 'x * 5');
  editMisses(project, run, 'helper.cjs', 'k: 3', 'k: 4');
});

const TSX = path.join(__dirname, 'typescript', 'node_modules', '.bin', 'tsx');

test('module forms: TypeScript namespaces and import x = require() are followed', {
  skip: !fs.existsSync(TSX) && process.env.CI !== 'true' && 'tsx is not installed (npm ci --prefix bindings/node/test/typescript)',
}, () => {
  const project = new Project({
    'tools.ts': `export function tool(x: number): number { return x + 1; }  // EDIT-tool\n`,
    'main.ts': `
      import { memo } from ${JSON.stringify(path.resolve(__dirname, '..', 'index.js'))};
      import tools = require('./tools');
      namespace Scale { export const factor = 3; export function apply(x: number) { return x * factor; } }
      const f = memo((x: number) => Scale.apply(tools.tool(x)));
      console.log(JSON.stringify(f(1)));
    `,
  });
  const run = () => {
    const result = spawnSync(TSX, ['main.ts'], { cwd: project.root, env: project.env(), encoding: 'utf8' });
    assert.strictEqual(result.status, 0, result.stderr);
    return JSON.parse(result.stdout.trim().split('\n').pop());
  };
  editMisses(project, run, 'main.ts', 'factor = 3', 'factor = 4');
  editMisses(project, run, 'tools.ts', 'x + 1', 'x + 2');
});

test("an async function's compute time counts from the call, its synchronous part included", () => {
  const project = new Project({
    'main.js': `
      const { memo } = require(HITSAVE);
      const slow = memo(async function slow(x) {
        const end = Date.now() + 300;
        while (Date.now() < end);   // synchronous work before the first await
        await null;
        return x;
      });
      slow(1).then(() => console.log(JSON.stringify(slow.key(1))));
    `,
  });
  const key = project.run('main.js').out;
  const shown = project.cli('show', key, '--json');
  assert.strictEqual(shown.status, 0, shown.stderr);
  // Date.now() has millisecond steps: 300 ms of its time can be a little under 300 ms of
  // hrtime; measured from after the synchronous part it was a few microseconds.
  assert.ok(JSON.parse(shown.stdout).compute_micros >= 250_000, shown.stdout);
});

test('options and arrays that would be silently wrong are refused with a TypeError', () => {
  const hitsave = require('..');
  assert.throws(() => hitsave.memo((x) => x, { cahceDir: '/tmp/x' }), (error) => error instanceof TypeError && /unknown option cahceDir/.test(error.message));
  assert.throws(() => hitsave.memo((x) => x, { name: 'f' }), TypeError);
  assert.throws(() => new hitsave.NDArray('float64', [3], new Float64Array(2)), /holds 24 bytes, the data has 16/);
  assert.throws(() => new hitsave.NDArray('float64', [1], new DataView(new ArrayBuffer(8))), TypeError);
  assert.doesNotThrow(() => new hitsave.NDArray('float16', [2, 1], new Uint16Array(2)));
});

test('HitSave installed by link is a package in the graph, never project code', () => {
  const project = new Project({
    'main.js': `
      const { memo } = require('hitsave');
      const inner = memo((x) => x * 2);
      const outer = memo((x) => inner(x) + 1);
      const names = outer.graph().nodes.map((node) => node[1]);
      const missed = outer.lookup(1) === require('hitsave').MISS;
      console.log(JSON.stringify({ missed, value: outer(1), sdk: names.filter((n) => /hitsave|index\\.js/.test(n)) }));
    `,
  });
  fs.mkdirSync(path.join(project.root, 'node_modules'));
  fs.symlinkSync(path.resolve(__dirname, '..'), path.join(project.root, 'node_modules', 'hitsave'), 'dir');
  const first = project.run('main.js').out;
  assert.deepStrictEqual([first.missed, first.value], [true, 3]);
  assert.ok(first.sdk.length > 0 && first.sdk.every((name) => !name.includes('index.js')), JSON.stringify(first.sdk));
  // The project moved (another checkout, another machine): its code did not change, so it hits.
  const moved = `${project.root}-moved`;
  fs.renameSync(project.root, moved);
  project.root = moved;
  const again = spawnSync(process.execPath, [path.join(moved, 'main.js')], {
    cwd: moved, env: { ...process.env, HITSAVE_CACHE_DIR: path.join(moved, '.cache') }, encoding: 'utf8',
  });
  assert.strictEqual(again.status, 0, again.stderr);
  const out = JSON.parse(again.stdout.trim().split('\n').pop());
  assert.deepStrictEqual([out.missed, out.value], [false, 3], 'the moved project hits');
});

test('statements in other modules that change an imported object count toward it', () => {
  const hitsaveIndex = JSON.stringify(path.resolve(__dirname, '..', 'index.js'));
  const project = new Project({
    'config.mjs': 'export const settings = { k: 1 };\nexport const other = { j: 1 };\n',
    'setup.mjs': "import { settings } from './config.mjs';\nsettings.k = 3;  // EDIT-esm\n",
    'main.mjs': `
      import './setup.mjs';
      import { settings } from './config.mjs';
      import { memo } from ${hitsaveIndex};
      const f = memo((x) => x * settings.k);
      console.log(JSON.stringify(f(2)));
    `,
    'config.js': 'module.exports = { rate: 1 };\n',
    'setup.js': "const cfg = require('./config');\ncfg.rate = 5;  // EDIT-cjs\n",
    'main.js': `
      require('./setup');
      const cfg = require('./config');
      const { memo } = require(HITSAVE);
      const g = memo((x) => x * cfg.rate);
      console.log(JSON.stringify(g(2)));
    `,
  });
  editMisses(project, () => project.run('main.mjs').out, 'setup.mjs', 'settings.k = 3', 'settings.k = 4');
  editMisses(project, () => project.run('main.js').out, 'setup.js', 'cfg.rate = 5', 'cfg.rate = 6');
});

test('a global set by another module counts toward the functions that read it', () => {
  const project = new Project({
    'setup.js': 'globalThis.RATE = 5;  // EDIT\nglobal.OFFSET = 1;\n',
    'main.js': `
      require('./setup');
      const { memo } = require(HITSAVE);
      const f = memo((x) => x * RATE + globalThis.OFFSET);
      console.log(JSON.stringify(f(2)));
    `,
  });
  editMisses(project, () => project.run('main.js').out, 'setup.js', 'RATE = 5', 'RATE = 6');
  editMisses(project, () => project.run('main.js').out, 'setup.js', 'OFFSET = 1', 'OFFSET = 2');
});

test("a builtin's member set by another module counts toward the code that uses it", () => {
  // A setup module extending builtins: `[x].total()` names no binding and no
  // global, so the member's name in the code is what ties it to the write.
  const project = new Project({
    'setup.js': `
      Array.prototype.total = function () { return this.reduce((a, b) => a + b, 0); };  // EDIT-proto
      Object.defineProperty(String.prototype, 'shout', { value() { return this + '!'; } });  // EDIT-define
      Math.clamp = (x) => Math.min(x, 100);  // EDIT-math
    `,
    'main.js': `
      require('./setup');
      const { memo } = require(HITSAVE);
      const f = memo((x) => [x, x].total() + 'x'.shout() + Math.clamp(x * 100));
      const g = memo((x) => x + 1);
      console.log(JSON.stringify([f(2), g(1)]));
    `,
  });
  editMisses(project, () => project.run('main.js').out, 'setup.js', 'a + b, 0', 'a + b, 1');
  editMisses(project, () => project.run('main.js').out, 'setup.js', "this + '!'", "this + '?'");
  editMisses(project, () => project.run('main.js').out, 'setup.js', 'x, 100', 'x, 150');
});

test('a function calling eval depends on every binding in its scope', () => {
  const project = new Project({
    'ops.js': 'exports.double = (x) => x * 2;\n',
    'main.js': `
      const { memo } = require(HITSAVE);
      const { double } = require('./ops');
      const K = 1;
      const f = memo((x) => eval('double(x) + K'));
      console.log(JSON.stringify(f(5)));
    `,
  });
  editMisses(project, () => project.run('main.js').out, 'ops.js', 'x * 2', 'x * 3');
  editMisses(project, () => project.run('main.js').out, 'main.js', 'K = 1', 'K = 2');
});

test('a statement added elsewhere in a file renames nothing: the function keeps hitting', () => {
  const main = `
    const { memo } = require(HITSAVE);
    const config = { k: 1 };
    // ADD-HERE
    config.k = 2;
    if (true) { config.j = 1; }
    const f = memo((x) => x * config.k + config.j);
    console.log(JSON.stringify([f.lookup(1) === require(HITSAVE).MISS, f(1)]));
  `;
  const project = new Project({ 'main.js': main });
  assert.deepStrictEqual(project.run('main.js').out, [true, 3]);
  project.write({ 'main.js': main.replace('// ADD-HERE', 'for (const _ of []) {}\nconst unrelated = 1;\nunrelated + 1;') });
  assert.deepStrictEqual(project.run('main.js').out, [false, 3], 'statements above kept their names');
});

test('a memo() call added above another keeps the other one hitting', () => {
  const main = `
    const { memo, MISS } = require(HITSAVE);
    // ADD-HERE
    const results = [2, 3].map((n) => n);
    const f = [memo((x) => x + 1)][0];
    console.log(JSON.stringify([f.graph().root, f.lookup(1) === MISS, f(1)]));
  `;
  const project = new Project({ 'main.js': main });
  const [root, missed, value] = project.run('main.js').out;
  assert.deepStrictEqual([missed, value], [true, 2]);
  project.write({ 'main.js': main.replace('// ADD-HERE', 'memo((y) => y * 10)(1);') });
  assert.deepStrictEqual(project.run('main.js').out, [root, false, 2], 'the memo call kept its name, and hits');
});

test('TypeScript: type-only edits do not count, code edits do', {
  skip: !fs.existsSync(TSX) && process.env.CI !== 'true' && 'tsx is not installed (npm ci --prefix bindings/node/test/typescript)',
}, () => {
  const project = new Project({
    'shapes.ts': `
      export interface Shape { side: number }
      export class Square implements Shape {
        private unit: string = 'cm';
        constructor(public side: number) {}
        area(): number { return this.side * this.side; }   // EDIT-area
      }
      export function scale<T extends Shape>(shape: T, k: number): number { return shape.side * k; }
    `,
    'main.ts': `
      import { memo } from ${JSON.stringify(path.resolve(__dirname, '..', 'index.js'))};
      import { Square, scale, type Shape } from './shapes';
      let runs = 0;
      const f = memo((side: number): number => { runs++; const s: Shape = new Square(side); return scale(s, 2) + new Square(side).area(); });
      console.log(JSON.stringify([f(3), runs]));
    `,
  });
  const run = () => {
    const result = spawnSync(TSX, ['main.ts'], { cwd: project.root, env: project.env(), encoding: 'utf8' });
    assert.strictEqual(result.status, 0, result.stderr);
    return JSON.parse(result.stdout.trim().split('\n').pop());
  };
  assert.deepStrictEqual(run(), [15, 1]);
  assert.deepStrictEqual(run(), [15, 0], 'a second process hits');
  const edit = (file, before, after) => {
    const text = fs.readFileSync(path.join(project.root, file), 'utf8');
    assert.ok(text.includes(before), before);
    project.write({ [file]: text.replace(before, after) });
  };
  // Annotations, generics, accessibility, an interface's members: no code changes.
  edit('shapes.ts', 'scale<T extends Shape>(shape: T, k: number): number', 'scale<T extends object & Shape>(shape: T, k: number | bigint): any');
  edit('shapes.ts', 'private unit: string', 'protected unit: string | undefined');
  edit('shapes.ts', 'side: number }', 'side: number; label?: string }');
  edit('main.ts', '(side: number): number =>', '(side: number): number | string =>');
  assert.deepStrictEqual(run(), [15, 0], 'type-only edits keep hitting');
  // Code does count.
  edit('shapes.ts', 'this.side * this.side', 'this.side * this.side + 1');
  assert.deepStrictEqual(run(), [16, 1], 'a code edit misses');
});

test("a module only the entry script imports, which changes what the function reads, counts", () => {
  const project = new Project({
    'config.mjs': `export const config = { k: 2 };\n`,
    'setup.mjs': `import { config } from './config.mjs';\nconfig.k = 3;  // EDIT-setup\n`,
    'job.mjs': `
      import { memo } from ${JSON.stringify(path.resolve(__dirname, '..', 'index.js'))};
      import { config } from './config.mjs';
      export const f = memo((x) => x * config.k);
    `,
    'main.mjs': `import './setup.mjs';\nimport { f } from './job.mjs';\nconsole.log(JSON.stringify(f(1)));\n`,
    'other.cjs': `const config = require('./config.cjs');\nconfig.k = 5;  // EDIT-cjs\n`,
    'config.cjs': `module.exports = { k: 1 };\n`,
    'job.cjs': `
      const { memo } = require(${JSON.stringify(path.resolve(__dirname, '..', 'index.js'))});
      const config = require('./config.cjs');
      exports.g = memo((x) => x * config.k);
    `,
    'main.cjs': `require('./other.cjs');\nconst { g } = require('./job.cjs');\nconsole.log(JSON.stringify(g(1)));\n`,
  });
  const run = (file) => () => {
    const result = spawnSync(process.execPath, [file], { cwd: project.root, env: project.env(), encoding: 'utf8' });
    assert.strictEqual(result.status, 0, result.stderr);
    return JSON.parse(result.stdout.trim().split('\n').pop());
  };
  editMisses(project, run('main.mjs'), 'setup.mjs', 'config.k = 3', 'config.k = 4');
  editMisses(project, run('main.cjs'), 'other.cjs', 'config.k = 5', 'config.k = 6');
  // With no name bound to the module in between.
  project.write({ 'other.cjs': `require('./config.cjs').k = 7;\n` });
  editMisses(project, run('main.cjs'), 'other.cjs', '.k = 7', '.k = 8');
});

const INSTANCES = `
const RATE = 2;                                                   // EDIT-const
function helper(v) { return v + 1; }                              // EDIT-helper
class Reads { constructor(a) { this.a = a; } val() { return helper(this.a * RATE); } }
class Patched { constructor(a) { this.a = a; } }
Patched.prototype.val = function () { return this.a * 3; };       // EDIT-prototype
const mixin = { val() { return this.a * 4; } };                   // EDIT-mixin
class Mixed { constructor(a) { this.a = a; } }
Object.assign(Mixed.prototype, mixin);
function Old(a) { this.a = a; }
Old.prototype.val = function () { return this.a * 5; };           // EDIT-function-constructor
const { Base } = require('./base');
class Derived extends Base { constructor(a) { super(); this.a = a; } }
function made(k) { return class { constructor(a) { this.a = a; } val() { return this.a * k; } }; }
module.exports = { Reads, Patched, Mixed, Old, Derived, made };
`;

test("an argument's class counts by everything its methods run: what they read, prototype patches, mixins, bases", () => {
  const project = new Project({
    'shapes.js': INSTANCES,
    'base.js': `const K = 6;                                              // EDIT-base
class Base { val() { return this.a * K; } }
module.exports = { Base };
`,
    // The memoized function is in one file, the instances are made in
    // another: the classes are found in the modules the program imports.
    'job.js': `
const { memo } = require(HITSAVE);
exports.f = memo(function f(shape) { return shape.val(); });
`,
    'main.js': `
const { f } = require('./job');
const s = require('./shapes');
const out = [new s.Reads(1), new s.Patched(1), new s.Mixed(1), new s.Old(1), new s.Derived(1)].map((shape) => f(shape));
let refused = null;
try { f(new (s.made(7))(1)); } catch (error) { refused = error.code; }
console.log(JSON.stringify([...out, refused]));
`,
  });
  const expected = [3, 3, 4, 5, 6, 'code_unavailable'];
  assert.deepStrictEqual(project.run('main.js').out, expected);
  assert.deepStrictEqual(project.run('main.js').out, expected);
  const edits = [
    ['shapes.js', 'RATE = 2;', 'RATE = 3;', 0, 4],
    ['shapes.js', 'return v + 1;', 'return v + 10;', 0, 13],
    ['shapes.js', 'this.a * 3;', 'this.a * 30;', 1, 30],
    ['shapes.js', 'this.a * 4;', 'this.a * 40;', 2, 40],
    ['shapes.js', 'this.a * 5;', 'this.a * 50;', 3, 50],
    ['base.js', 'K = 6;', 'K = 60;', 4, 60],
  ];
  for (const [file, from, to, index, value] of edits) {
    const text = fs.readFileSync(path.join(project.root, file), 'utf8');
    project.write({ [file]: text.replace(from, to) });
    expected[index] = value;
    assert.deepStrictEqual(project.run('main.js').out, expected, `after ${file}: ${from} -> ${to}`);
  }
});

test('environment variables the code reads by name count by their value; one read by a computed name is refused', () => {
  const project = new Project({
    'settings.js': `
exports.K = Number(process.env.HS_TEST_K || 3);
const { HS_TEST_MODE } = process.env;
exports.mode = () => HS_TEST_MODE || 'dev';
exports.lookup = (name) => process.env[name];
`,
    'main.js': `
const { memo } = require(HITSAVE);
const settings = require('./settings');
let runs = 0;
const f = memo((x) => { runs++; return \`\${x * settings.K}:\${settings.mode()}\`; });
console.log(JSON.stringify([f(2), runs]));
`,
    'computed.js': `
const { memo } = require(HITSAVE);
const settings = require('./settings');
const g = memo((name) => settings.lookup(name));
try { g('HOME'); console.log('"computed"'); } catch (error) { console.log(JSON.stringify(error.code)); }
`,
  });
  const run = (env) => [...project.run('main.js', { env }).out, project.run('computed.js', { env }).out];
  assert.deepStrictEqual(run({}), ['6:dev', 1, 'code_unavailable']);
  assert.deepStrictEqual(run({}), ['6:dev', 0, 'code_unavailable'], 'the same environment hits');
  assert.deepStrictEqual(run({ HS_TEST_K: '4' }), ['8:dev', 1, 'code_unavailable']);
  assert.deepStrictEqual(run({ HS_TEST_K: '4', HS_TEST_MODE: 'prod' }), ['8:prod', 1, 'code_unavailable']);
  assert.deepStrictEqual(run({ HS_TEST_K: '4', HS_TEST_MODE: 'prod', HS_TEST_OTHER: 'x' }), ['8:prod', 0, 'code_unavailable'], 'a variable the code does not read changes nothing');
  assert.deepStrictEqual(run({}), ['6:dev', 0, 'code_unavailable'], 'back to the first environment: its results');
});

test('command-line arguments the code reads count by their value; the clock or a random value at load is refused', () => {
  // `const SCALE = Number(process.argv[2])` used to hit with the first run's
  // result for every argument (static analysis counted the code, not the value).
  const project = new Project({
    'options.js': `
exports.SCALE = Number(process.argv[2] || 1);
const { argv } = process;
exports.label = () => argv[3] || 'none';
`,
    'main.js': `
const { memo } = require(HITSAVE);
const options = require('./options');
const f = memo((x) => { console.error('ran:f'); return \`\${x * options.SCALE}:\${options.label()}\`; });
// Reading the clock inside the function is the function's own business.
const g = memo((x) => { console.error('ran:g'); const started = Date.now(); return x + (Date.now() - started >= 0 ? 1 : 0); });
console.log(JSON.stringify([f(2), g(1)]));
`,
    'esm.mjs': `
import { memo } from ${JSON.stringify(require('node:url').pathToFileURL(require.resolve('..')).href)};
import { argv } from 'node:process';
const h = memo((x) => x * Number(argv[2] || 1));
console.log(JSON.stringify(h(3)));
`,
    'clock.js': `
const { memo } = require(HITSAVE);
const STARTED = Date.now();
const SEED = Math.random();
const REMOTE = fetch('http://127.0.0.1:9/').catch(() => null); // nothing listens: refused at once
const stamp = memo((x) => x + STARTED);
const noisy = memo((x) => x * SEED);
const remote = memo((x) => [x, REMOTE !== null]);
const out = [];
for (const fn of [stamp, noisy, remote]) {
  try { fn(1); out.push('computed'); } catch (error) {
    out.push([error.code, /clock\.js:([34] computes a value from the clock or a random source|5 computes a value from the network)/.test(error.message)]);
  }
}
console.log(JSON.stringify(out));
`,
  });
  const run = (args) => [...resultsAndRuns(project, { args }), project.run('esm.mjs', { args }).out];
  assert.deepStrictEqual(run(['2']), ['4:none', 2, 'f,g', 6]);
  assert.deepStrictEqual(run(['2']), ['4:none', 2, '-', 6], 'the same arguments hit');
  assert.deepStrictEqual(run(['3']), ['6:none', 2, 'f', 9], 'another argument misses (g reads none: it hits)');
  assert.deepStrictEqual(run(['3', 'big']), ['6:big', 2, 'f', 9]);
  assert.deepStrictEqual(run(['2']), ['4:none', 2, '-', 6], 'back to the first arguments: their results');
  assert.deepStrictEqual(project.run('clock.js').out, [['code_unavailable', true], ['code_unavailable', true], ['code_unavailable', true]]);
  // Code that reads which platform it runs on counts the platform (a result
  // computed on Linux is not one for Windows); code that does not, does not.
  project.write({
    'platform.mjs': `
import { memo } from ${JSON.stringify(require('node:url').pathToFileURL(require.resolve('..')).href)};
import os, { EOL } from 'node:os';
const { platform } = process;
const SEP = platform === 'win32' ? ';' : ':';
const a = memo((x) => x + SEP);
const b = memo((x) => x + EOL);
const c = memo((x) => x + os.type());
const d = memo((x) => x + '!');
const has = (fn) => fn.graph().nodes.some((node) => node[1] === 'process:platform');
console.log(JSON.stringify([a, b, c, d].map((fn) => (fn(1), has(fn)))));
`,
  });
  assert.deepStrictEqual(project.run('platform.mjs').out, [true, true, true, false]);
});

test('code run in a worker or a child process counts: the worker module with what it imports, a script by its contents', () => {
  // Editing worker.js, a helper it requires, or a Python script a child
  // process runs used to hit with the old result.
  const project = new Project({
    'worker.js': `
const { parentPort, workerData } = require('node:worker_threads');
parentPort.postMessage(workerData * 2 + require('./helper').k);
`,
    'helper.js': 'exports.k = 10;\n',
    'tools/child.js': 'process.stdout.write(String(3));\n',
    'main.js': `
const { memo } = require(HITSAVE);
const { Worker } = require('node:worker_threads');
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const viaWorker = memo(async (x) => {
  console.error('ran:worker');
  return new Promise((resolve) => new Worker(path.join(__dirname, 'worker.js'), { workerData: x }).on('message', resolve));
});
const viaChild = memo((x) => {
  console.error('ran:child');
  return Number(execFileSync(process.execPath, ['tools/child.js']).toString()) + x;
});
(async () => console.log(JSON.stringify([await viaWorker(2), viaChild(1)])))();
`,
  });
  const run = () => resultsAndRuns(project);
  assert.deepStrictEqual(run(), [14, 4, 'worker,child']);
  assert.deepStrictEqual(run(), [14, 4, '-']);
  project.write({ 'worker.js': fs.readFileSync(path.join(project.root, 'worker.js'), 'utf8').replace('* 2', '* 3') });
  assert.deepStrictEqual(run(), [16, 4, 'worker']);
  project.write({ 'helper.js': 'exports.k = 20;\n' });
  assert.deepStrictEqual(run(), [26, 4, 'worker']);
  project.write({ 'tools/child.js': 'process.stdout.write(String(5));\n' });
  assert.deepStrictEqual(run(), [26, 6, 'child']);
  // Edited while the process runs: the next worker runs the new file, and the call misses.
  project.write({
    'inprocess.js': `
const { memo } = require(HITSAVE);
const { Worker } = require('node:worker_threads');
const fs = require('node:fs');
const path = require('node:path');
const file = path.join(__dirname, 'worker.js');
const viaWorker = memo(async (x) => new Promise((resolve) => new Worker(file, { workerData: x }).on('message', resolve)));
(async () => {
  const before = await viaWorker(2);
  fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('* 3', '* 4'));
  console.log(JSON.stringify([before, await viaWorker(2)]));
})();
`,
  });
  assert.deepStrictEqual(project.run('inprocess.js').out, [26, 28]);
});

test('a path held in a module-level object or array counts when the code reads a path it computes', () => {
  // `readFileSync(CFG.weights)`, `readFileSync(FILES[0])`: the path is a
  // property or an element, not an argument; an edit of the file used to hit.
  const project = new Project({
    'weights.txt': '2',
    'main.js': `
const { memo } = require(HITSAVE);
const fs = require('node:fs');
const path = require('node:path');
const CFG = { weights: 'weights.txt', mode: 'fast' };
const FILES = [path.join(__dirname, 'weights.txt')];
const f = memo((x) => { console.error('ran:f'); return x * Number(fs.readFileSync(CFG.weights, 'utf8')); });
const g = memo((x) => { console.error('ran:g'); return x * Number(fs.readFileSync(FILES[0], 'utf8')); });
console.log(JSON.stringify([f(1), g(1)]));
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project), [2, 2, 'f,g']);
  assert.deepStrictEqual(resultsAndRuns(project), [2, 2, '-']);
  project.write({ 'weights.txt': '3' });
  assert.deepStrictEqual(resultsAndRuns(project), [3, 3, 'f,g']);
});

test('a data file or an environment variable changed while the process runs is seen at the next call', () => {
  // The graph was built once per process: a file edited (or a variable set)
  // after the first call kept hitting the old result in that process.
  const project = new Project({
    't.txt': '2',
    'main.js': `
const { memo } = require(HITSAVE);
const fs = require('node:fs');
const sync = memo((x) => { console.error('ran:sync'); return x * Number(fs.readFileSync('t.txt', 'utf8')); });
const viaEnv = memo((x) => { console.error('ran:env'); return x * Number(process.env.HS_TEST_SCALE || 1); });
const asynchronous = memo(async (x) => { console.error('ran:async'); return x + Number(fs.readFileSync('t.txt', 'utf8')); });
(async () => {
  const out = [sync(1), viaEnv(1), await asynchronous(1)];
  fs.writeFileSync('t.txt', '3');
  process.env.HS_TEST_SCALE = '5';
  out.push(sync(1), viaEnv(1), await asynchronous(1));
  console.log(JSON.stringify(out));
})();
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project), [2, 1, 3, 3, 5, 4, 'sync,env,async,sync,env,async']);
  // What was computed after the change was stored under the fingerprint of
  // what it read: a later process (t.txt is 3 from the start) hits all six.
  assert.deepStrictEqual(resultsAndRuns(project), [3, 1, 4, 3, 5, 4, '-']);
});

test('files a glob pattern matches count', () => {
  // `fg.sync('data/*.csv')` (fast-glob's usual name; a stand-in package
  // here): the pattern names no file; a new or edited file used to hit.
  const project = new Project({
    'data/a.csv': '1',
    'node_modules/fast-glob/package.json': '{"name": "fast-glob", "version": "3.3.2", "main": "index.js"}',
    'node_modules/fast-glob/index.js': `
const fs = require('node:fs');
const path = require('node:path');
exports.sync = (pattern) => {
  const dir = path.dirname(pattern);
  return fs.readdirSync(dir).filter((name) => name.endsWith(path.extname(pattern))).map((name) => path.join(dir, name));
};
`,
    'main.js': `
const { memo } = require(HITSAVE);
const fs = require('node:fs');
const fg = require('fast-glob');
const total = memo(() => {
  console.error('ran:total');
  return fg.sync('data/*.csv').reduce((sum, file) => sum + Number(fs.readFileSync(file, 'utf8')), 0);
});
console.log(JSON.stringify([total()]));
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project), [1, 'total']);
  assert.deepStrictEqual(resultsAndRuns(project), [1, '-']);
  project.write({ 'data/b.csv': '5' });
  assert.deepStrictEqual(resultsAndRuns(project), [6, 'total']);
  project.write({ 'data/a.csv': '7' });
  assert.deepStrictEqual(resultsAndRuns(project), [12, 'total']);
});

test('a path in a class field counts', () => {
  // `readFileSync(Cfg.PATH)` with `static PATH = 'x.txt'`: an edit used to hit.
  const project = new Project({
    'x.txt': '2',
    'main.js': `
const { memo } = require(HITSAVE);
const fs = require('node:fs');
class Cfg { static PATH = 'x.txt'; }
const f = memo((k) => { console.error('ran:f'); return k * Number(fs.readFileSync(Cfg.PATH, 'utf8')); });
console.log(JSON.stringify([f(1)]));
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project), [2, 'f']);
  assert.deepStrictEqual(resultsAndRuns(project), [2, '-']);
  project.write({ 'x.txt': '3' });
  assert.deepStrictEqual(resultsAndRuns(project), [3, 'f']);
});

test('a path in a parameter default counts', () => {
  // `function load(p = 'w.txt')` called as `load()`, and a memoized
  // function's own default: an edit of the file used to hit.
  const project = new Project({
    'w.txt': '2',
    'main.js': `
const { memo } = require(HITSAVE);
const fs = require('node:fs');
function load(p = 'w.txt') { return Number(fs.readFileSync(p, 'utf8')); }
const helper = memo((x) => { console.error('ran:helper'); return x * load(); });
const own = memo((x, p = 'w.txt') => { console.error('ran:own'); return x * Number(fs.readFileSync(p, 'utf8')); });
console.log(JSON.stringify([helper(1), own(1)]));
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project), [2, 2, 'helper,own']);
  assert.deepStrictEqual(resultsAndRuns(project), [2, 2, '-']);
  project.write({ 'w.txt': '3' });
  assert.deepStrictEqual(resultsAndRuns(project), [3, 3, 'helper,own']);
});

test('a file the code reads at a path known without running it counts by its contents', () => {
  const project = new Project({
    'config.json': '{"k": 2}',
    'data/scale.txt': '10',
    'lib/config.js': `
const fs = require('node:fs');
const path = require('node:path');
const FILE = path.join(__dirname, '..', 'config.json');
exports.cfg = JSON.parse(fs.readFileSync(FILE, 'utf8'));
`,
    'main.js': `
const { memo } = require(HITSAVE);
const { readFileSync } = require('node:fs');
const { cfg } = require('./lib/config');
let runs = 0;
// Relative to the working directory, read in the body.
const f = memo((x) => { runs++; return x * cfg.k + Number(readFileSync('data/scale.txt', 'utf8')); });
console.log(JSON.stringify([f(1), runs]));
`,
    'esm.mjs': `
import { memo } from ${JSON.stringify(require('node:url').pathToFileURL(require.resolve('..')).href)};
import { readFileSync } from 'node:fs';
const data = JSON.parse(readFileSync(new URL('./config.json', import.meta.url)));
const g = memo((x) => x * data.k);
console.log(JSON.stringify(g(3)));
`,
  });
  assert.deepStrictEqual(project.run('main.js').out, [12, 1]);
  assert.deepStrictEqual(project.run('main.js').out, [12, 0], 'unchanged files hit');
  assert.strictEqual(project.run('esm.mjs').out, 6);
  project.write({ 'config.json': '{"k": 5}' });
  assert.deepStrictEqual(project.run('main.js').out, [15, 1]);
  assert.strictEqual(project.run('esm.mjs').out, 15);
  project.write({ 'data/scale.txt': '20' });
  assert.deepStrictEqual(project.run('main.js').out, [25, 1]);
  project.write({ 'data/scale.txt': '10', 'config.json': '{"k": 2}' });
  assert.deepStrictEqual(project.run('main.js').out, [12, 0], 'the first contents again: their results');
  // A function that writes a file it names (an output, a log) is left out of
  // the rule: that file would change its fingerprint, and it would never hit.
  project.write({
    'writes.js': `
const { memo } = require(HITSAVE);
const fs = require('node:fs');
let runs = 0;
const train = memo((x) => {
  runs++;
  const seen = fs.existsSync('out/log.txt') ? fs.readFileSync('out/log.txt', 'utf8') : '';
  fs.mkdirSync('out', { recursive: true });
  fs.appendFileSync('out/log.txt', seen.length + ';');
  return x * 2;
});
console.log(JSON.stringify([train(3), runs]));
`,
  });
  assert.deepStrictEqual(project.run('writes.js').out, [6, 1]);
  assert.deepStrictEqual(project.run('writes.js').out, [6, 0]);
  assert.deepStrictEqual(project.run('writes.js').out, [6, 0]);
});

/** Runs main.js in a fresh process: what it prints, then which bodies ran (their `ran:NAME` stderr lines; `-` for none). */
function resultsAndRuns(project, options = {}, file = 'main.js') {
  const { out, stderr } = project.run(file, options);
  return [...out, stderr.split('\n').filter((line) => line.startsWith('ran:')).map((line) => line.slice(4)).join(',') || '-'];
}

test('a namespace re-exported by name and exports assigned in one call count by the export used', () => {
  // `export * as text from './text.mjs'` then `text.fmt(x)`, and
  // `Object.assign(module.exports, { fmt, other })` then `fmt(x)`: both
  // depended on the whole module, so editing `other`, which neither calls,
  // missed. Editing `fmt` still does.
  const text = (a, b) => `export function fmt(x) { return '${a}' + x; }\nexport function other() { return ${b}; }\n`;
  const assigned = (a, b) => `function fmt(x) { return '${a}' + x; }\nfunction other() { return ${b}; }\nObject.assign(module.exports, { fmt, other });\n`;
  const project = new Project({
    'lib/text.mjs': text('v', 1),
    'lib/index.mjs': "export * as text from './text.mjs';\n",
    'lib/assigned.js': assigned('v', 1),
    'main.mjs': `
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { memo } = require(HITSAVE);
import { text } from './lib/index.mjs';
const { fmt } = require('./lib/assigned.js');
const viaNamespace = memo(function viaNamespace(x) { console.error('ran:viaNamespace'); return text.fmt(x); });
const viaAssign = memo(function viaAssign(x) { console.error('ran:viaAssign'); return fmt(x); });
console.log(JSON.stringify([viaNamespace(1), viaAssign(2)]));
`,
  });
  const results = () => resultsAndRuns(project, {}, 'main.mjs');
  assert.deepStrictEqual(results(), ['v1', 'v2', 'viaNamespace,viaAssign']);
  project.write({ 'lib/text.mjs': text('v', 2), 'lib/assigned.js': assigned('v', 2) });
  assert.deepStrictEqual(results(), ['v1', 'v2', '-'], 'other() is not called');
  project.write({ 'lib/text.mjs': text('w', 2) });
  assert.deepStrictEqual(results(), ['w1', 'v2', 'viaNamespace']);
  project.write({ 'lib/assigned.js': assigned('w', 2) });
  assert.deepStrictEqual(results(), ['w1', 'w2', 'viaAssign']);
});

test('a constant holding a primitive passed to a call is not changed by it: other code using it stays out', () => {
  // \`const BASE = 'v'\` passed to \`label(BASE, x)\` by two functions: a
  // call given a binding may change it (an object it holds), so each
  // function became a writer of BASE and part of the graph of every
  // function reading it: editing b() missed a(). A string never changes.
  const main = (suffix) => `
const { memo } = require(HITSAVE);
const BASE = 'v';
function label(prefix, x) { return prefix + x; }
const a = memo(function a(x) { console.error('ran:a'); return label(BASE, x); });
const b = memo(function b(x) { console.error('ran:b'); return label(BASE, x) + '${suffix}'; });
console.log(JSON.stringify([a(1), b(2)]));
`;
  const project = new Project({ 'main.js': main('!') });
  assert.deepStrictEqual(resultsAndRuns(project), ['v1', 'v2!', 'a,b']);
  project.write({ 'main.js': main('?') });
  assert.deepStrictEqual(resultsAndRuns(project), ['v1', 'v2?', 'b']);
});

test('the code that calls memo() is not part of the memoized function: renaming its variable or editing a handler hits', () => {
  // A call given a binding may change it, so \`const cachedWork =
  // memo(work)\` and a request handler running \`hs.memo(twice)(x)\` were
  // writers of the function they memoize, in its graph: renaming the
  // variable, or any edit of the handler, missed. memo() changes nothing.
  const main = (name, tag, k) => `
const { memo } = require(HITSAVE);
const hs = require(HITSAVE);
function work(x) { console.error('ran:work'); return x * ${k}; }
function twice(x) { console.error('ran:twice'); return x + x; }
const ${name} = memo(work);
function handle(x) { const tag = '${tag}'; return hs.memo(twice)(x); }
console.log(JSON.stringify([${name}(2), handle(3)]));
`;
  const project = new Project({ 'main.js': main('cachedWork', 'a', 2) });
  assert.deepStrictEqual(resultsAndRuns(project), [4, 6, 'work,twice']);
  project.write({ 'main.js': main('fastWork', 'b', 2) });
  assert.deepStrictEqual(resultsAndRuns(project), [4, 6, '-']);
  project.write({ 'main.js': main('fastWork', 'b', 3) });
  assert.deepStrictEqual(resultsAndRuns(project), [6, 6, 'work']);
});

test('a module bound whole (require, import * as) counts by the members the code reads, read before each call', () => {
  // \`const text = require('./lib/text'); text.fmt(x)\`: the whole exports
  // object was read as module state, every function it holds by its text,
  // so editing \`other\` (never called) missed. Now \`text.fmt\` and
  // \`text.rate\` are read, again before each call: a member replaced or
  // changed while the program runs still counts.
  const lib = (b) => `function fmt(x) { return 'v' + x; }\nfunction other() { return ${b}; }\n` +
    'exports.fmt = fmt;\nexports.other = other;\nexports.rate = 2;\nexports.setRate = (r) => { exports.rate = r; };\n';
  const project = new Project({
    'lib/text.js': lib(1),
    'main.js': `
const { memo } = require(HITSAVE);
const text = require('./lib/text');
const f = memo(function f(x) { console.error('ran:f'); return text.fmt(x) + text.rate; });
const out = [f(1)];
text.setRate(5);
out.push(f(1));
text.fmt = (x) => 'z' + x;
out.push(f(1));
console.log(JSON.stringify(out));
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project), ['v12', 'v15', 'z15', 'f,f,f']);
  assert.deepStrictEqual(resultsAndRuns(project), ['v12', 'v15', 'z15', '-']);
  project.write({ 'lib/text.js': lib(2) });
  assert.deepStrictEqual(resultsAndRuns(project), ['v12', 'v15', 'z15', '-'], 'other() is not read');
});

test('a name the code completes into a file counts that file', () => {
  // `load('train')` reading `${name}.csv`: the text names no file, so only
  // the text was in the key and an edit of train.csv hit.
  const project = new Project({
    'train.csv': '1',
    'trainer.txt': '100',
    'main.js': `
const fs = require('node:fs');
const { memo } = require(HITSAVE);
const load = memo(function load(name) { console.error('ran:load'); return Number(fs.readFileSync(\`\${name}.csv\`, 'utf8')); });
console.log(JSON.stringify([load('train')]));
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project), [1, 'load']);
  assert.deepStrictEqual(resultsAndRuns(project), [1, '-']);
  project.write({ 'trainer.txt': '200' }); // not a file `train` begins: still a hit
  assert.deepStrictEqual(resultsAndRuns(project), [1, '-']);
  project.write({ 'train.csv': '2' });
  assert.deepStrictEqual(resultsAndRuns(project), [2, 'load']);
});

test('files read beside an ES module at names only known when the code runs count', () => {
  // ESM's ways to the module's directory: `path.dirname(fileURLToPath(
  // import.meta.url))`, `new URL(`./data/${name}`, import.meta.url)`, a
  // directory URL (`new URL(name, DATA)`), `new URL(import.meta.url).pathname`:
  // the file read at a name the caller gives was not counted, so an edit hit.
  const project = new Project({
    'package.json': JSON.stringify({ name: 'esm', private: true, type: 'module' }),
    'data/a.txt': '1',
    'main.mjs': `
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { memo } from ${JSON.stringify(require.resolve('../index.mjs'))};
const here = path.dirname(fileURLToPath(import.meta.url));
const beside = path.dirname(new URL(import.meta.url).pathname);
const DATA = new URL('./data/', import.meta.url);
const a = memo(function a(name) { console.error('ran:a'); return fs.readFileSync(path.join(here, 'data', name), 'utf8'); });
const b = memo(function b(name) { console.error('ran:b'); return fs.readFileSync(new URL(\`./data/\${name}\`, import.meta.url), 'utf8'); });
const c = memo(function c(name) { console.error('ran:c'); return fs.readFileSync(new URL(name, DATA), 'utf8'); });
const d = memo(function d(name) { console.error('ran:d'); return fs.readFileSync(path.join(beside, 'data', name), 'utf8'); });
console.log(JSON.stringify([a('a.txt'), b('a.txt'), c('a.txt'), d('a.txt')]));
`,
  });
  const run = () => {
    const { out, stderr } = project.run('main.mjs');
    return [...out, stderr.split('\n').filter((line) => line.startsWith('ran:')).map((line) => line.slice(4)).join(',') || '-'];
  };
  assert.deepStrictEqual(run(), ['1', '1', '1', '1', 'a,b,c,d']);
  assert.deepStrictEqual(run(), ['1', '1', '1', '1', '-']);
  project.write({ 'data/a.txt': '2' });
  assert.deepStrictEqual(run(), ['2', '2', '2', '2', 'a,b,c,d']);
});

test('files read from a data directory at names known only when the code runs count', () => {
  // `readFileSync(path.join(DATA, `${name}.csv`))` used to hit after the
  // file was edited (docs/node.md, data files): every file under the known
  // directory counts now.
  const project = new Project({
    'data/train.csv': 'a\n1\n2\n',
    'data/raw/extra.csv': 'a\n100\n',
    'main.js': `
const { memo } = require(HITSAVE);
const fs = require('node:fs');
const path = require('node:path');
const DATA = path.join(__dirname, 'data');
// Its own name: \`path.join(DATA, …)\` passes DATA to a call, which the
// analysis counts as a possible writer of it (docs/node.md).
const RAW = path.join(__dirname, 'data', 'raw');
const rows = (text) => text.split('\\n').slice(1).filter(Boolean).map(Number).reduce((a, b) => a + b, 0);
const joined = memo(function joined(name) { console.error('ran:joined'); return rows(fs.readFileSync(path.join(DATA, name + '.csv'), 'utf8')); });
const templated = memo(function templated(name) { console.error('ran:templated'); return rows(fs.readFileSync(\`\${RAW}/\${name}.csv\`, 'utf8')); });
console.log(JSON.stringify([joined('train'), templated('extra')]));
`,
  });
  // Which bodies ran, from stderr (a module-level array both push to would
  // tie their graphs together: docs/node.md).
  const run = () => resultsAndRuns(project);
  assert.deepStrictEqual(run(), [3, 100, 'joined,templated']);
  assert.deepStrictEqual(run(), [3, 100, '-'], 'unchanged files hit');
  project.write({ 'data/train.csv': 'a\n1\n5\n' });
  assert.deepStrictEqual(run(), [6, 100, 'joined'], 'data/ counts for joined, data/raw/ for templated');
  project.write({ 'data/raw/extra.csv': 'a\n200\n' });
  assert.deepStrictEqual(run(), [6, 200, 'joined,templated']);
  project.write({ 'data/raw/new.csv': 'a\n1\n' });
  assert.deepStrictEqual(run(), [6, 200, 'joined,templated'], 'an added file counts');
  // Too many files to hash at each first call: refused, never assumed unchanged.
  const many = {};
  for (let i = 0; i < 4100; i++) many[`data/raw/m${i}.csv`] = 'a\n1\n';
  project.write(many);
  project.write({
    'refused.js': `
const { memo } = require(HITSAVE);
const fs = require('node:fs');
const path = require('node:path');
const RAW = path.join(__dirname, 'data', 'raw');
const load = memo(function load(name) { return fs.readFileSync(path.join(RAW, name), 'utf8'); });
try { load('m1.csv'); console.log(JSON.stringify('hit or computed')); } catch (error) { console.log(JSON.stringify([error.code, /reads files from the directory/.test(error.message)])); }
`,
  });
  assert.deepStrictEqual(project.run('refused.js').out, ['code_unavailable', true]);
});

test('a file or directory an environment variable names counts by its contents', () => {
  // `readFileSync(process.env.INPUT_FILE)` and `path.join(process.env.DATA_DIR, name)`
  // counted the variable's value only, and hit after the file was edited.
  const project = new Project({
    'inputs/a.txt': '1 2',
    'main.js': `
const { memo } = require(HITSAVE);
const fs = require('node:fs');
const path = require('node:path');
const sum = (text) => text.trim().split(' ').map(Number).reduce((a, b) => a + b, 0);
const single = memo(function single() { console.error('ran:single'); return sum(fs.readFileSync(process.env.INPUT_FILE, 'utf8')); });
const inDir = memo(function inDir(name) { console.error('ran:inDir'); return sum(fs.readFileSync(path.join(process.env.DATA_DIR, name), 'utf8')); });
console.log(JSON.stringify([single(), inDir('a.txt')]));
`,
  });
  const env = { INPUT_FILE: path.join(project.root, 'inputs', 'a.txt'), DATA_DIR: path.join(project.root, 'inputs') };
  const run = () => resultsAndRuns(project, { env });
  assert.deepStrictEqual(run(), [3, 3, 'single,inDir']);
  assert.deepStrictEqual(run(), [3, 3, '-']);
  project.write({ 'inputs/a.txt': '1 5' });
  assert.deepStrictEqual(run(), [6, 6, 'single,inDir']);
});

test('a database, archive or file opened through a helper by a path the caller names counts', () => {
  // `new Database('data.db')` and `loadTable('table.csv')` read a file in
  // a helper at a path it gets as a parameter: the caller names it, but
  // only fs's own readers were taken for reads, so an edit hit.
  const project = new Project({
    'data.db': 'v=1',
    'table.csv': '1,2',
    'other.csv': '10,20',
    'lib.js': `
const fs = require('node:fs');
class Database { constructor(file) { this.text = fs.readFileSync(file, 'utf8'); } value() { return Number(this.text.split('=')[1]); } }
function loadTable(file) { return fs.readFileSync(file, 'utf8').split(',').map(Number); }
// Named like nothing that reads: the caller's path counts because this reads a path it is given.
function parse(file) { return fs.readFileSync(file, 'utf8').split(',').map(Number); }
class Table { constructor(file) { this.file = file; } total() { return fs.readFileSync(this.file, 'utf8').split(',').map(Number).reduce((a, b) => a + b, 0); } }
module.exports = { Database, loadTable, parse, Table };
`,
    'main.js': `
const { memo } = require(HITSAVE);
const { Database, loadTable, parse, Table } = require('./lib');
const fromDb = memo(function fromDb() { console.error('ran:db'); return new Database('data.db').value(); });
const fromTable = memo(function fromTable() { console.error('ran:table'); return loadTable('table.csv').reduce((a, b) => a + b, 0); });
const parsed = memo(function parsed() { console.error('ran:parsed'); return parse('other.csv').reduce((a, b) => a + b, 0); });
const method = memo(function method() { console.error('ran:method'); return new Table('other.csv').total(); });
console.log(JSON.stringify([fromDb(), fromTable(), parsed(), method()]));
`,
  });
  const run = () => resultsAndRuns(project);
  assert.deepStrictEqual(run(), [1, 3, 30, 30, 'db,table,parsed,method']);
  assert.deepStrictEqual(run(), [1, 3, 30, 30, '-']);
  project.write({ 'data.db': 'v=2', 'table.csv': '1,5' });
  assert.deepStrictEqual(run(), [2, 6, 30, 30, 'db,table']);
  project.write({ 'other.csv': '10,50' });
  assert.deepStrictEqual(run(), [2, 6, 60, 60, 'parsed,method']);
});

test("TypeScript: an argument's class counts by its graph although the text that runs is tsx's", {
  skip: !fs.existsSync(TSX) && process.env.CI !== 'true' && 'tsx is not installed (npm ci --prefix bindings/node/test/typescript)',
}, () => {
  const project = new Project({
    'consts.ts': 'export const BIAS: number = 1;\n',
    'model.ts': `
      import { BIAS } from './consts';
      export class Model {
        constructor(private readonly w: number) {}
        predict(x: number): number { return x * this.w + BIAS; }
      }
      export function make(k: number) {
        return class Local { constructor(public a: number) {} val(): number { return this.a * k; } };
      }
    `,
    // The memoized function names no class: only the instance leads to it.
    'job.ts': `
      import { memo } from ${JSON.stringify(path.resolve(__dirname, '..', 'index.js'))};
      export const run = memo((m: any, x: number) => m.predict(x));
      export const val = memo((m: any) => m.val());
    `,
    'main.ts': `
      import { run, val } from './job';
      import { Model, make } from './model';
      let refused: string | null = null;
      try { val(new (make(3))(1)); } catch (error: any) { refused = error.code; }
      console.log(JSON.stringify([run(new Model(2), 3), refused]));
    `,
  });
  const run = () => {
    const result = spawnSync(TSX, ['main.ts'], { cwd: project.root, env: project.env(), encoding: 'utf8' });
    assert.strictEqual(result.status, 0, result.stderr);
    return JSON.parse(result.stdout.trim().split('\n').pop());
  };
  assert.deepStrictEqual(run(), [7, 'code_unavailable']);
  project.write({ 'consts.ts': 'export const BIAS: number = 2;\n' });
  assert.deepStrictEqual(run(), [8, 'code_unavailable']);
});

test("a module's own helper called with constant arguments reads the file or variable each call names", () => {
  const project = new Project({
    'c.json': '{"k": 2}',
    'settings.js': `
const fs = require('node:fs');
const path = require('node:path');
function load(name) { return JSON.parse(fs.readFileSync(path.join(__dirname, name), 'utf8')); }
const num = (name, fallback) => Number(process.env[name] ?? fallback);
exports.K = load('c.json').k * num('HS_TEST_SCALE', 1);
`,
    'main.js': `
const { memo } = require(HITSAVE);
const { K } = require('./settings');
let runs = 0;
const f = memo((x) => { runs++; return x * K; });
console.log(JSON.stringify([f(3), runs]));
`,
  });
  assert.deepStrictEqual(project.run('main.js').out, [6, 1]);
  assert.deepStrictEqual(project.run('main.js').out, [6, 0]);
  project.write({ 'c.json': '{"k": 5}' });
  assert.deepStrictEqual(project.run('main.js').out, [15, 1]);
  assert.deepStrictEqual(project.run('main.js', { env: { HS_TEST_SCALE: '2' } }).out, [30, 1]);
  assert.deepStrictEqual(project.run('main.js', { env: { HS_TEST_SCALE: '2', HS_TEST_OTHER: 'x' } }).out, [30, 0]);
});

test('an imported JSON file counts by its tokens: reformatting it hits, a value edit misses', () => {
  const project = new Project({
    'data.json': '{"k": 2, "name": "a b"}',
    'main.js': `
const { memo } = require(HITSAVE);
const data = require('./data.json');
let runs = 0;
const f = memo((x) => { runs++; return x * data.k + data.name.length; });
console.log(JSON.stringify([f(3), runs]));
`,
  });
  assert.deepStrictEqual(project.run('main.js').out, [9, 1]);
  project.write({ 'data.json': '{\n  "k": 2,\n  "name": "a b"\n}\n' });
  assert.deepStrictEqual(project.run('main.js').out, [9, 0], 'whitespace between tokens changes nothing');
  project.write({ 'data.json': '{\n  "k": 2,\n  "name": "ab"\n}\n' });
  assert.deepStrictEqual(project.run('main.js').out, [8, 1], 'inside a string it is data');
  project.write({ 'data.json': '{\n  "k": 4,\n  "name": "ab"\n}\n' });
  assert.deepStrictEqual(project.run('main.js').out, [14, 1]);
});

test('module-level variables changed while the program runs count by their value at each call', () => {
  // `setScale(3)` between two calls, a `const` object mutated, an ESM
  // `export let` a setter changes: the code is the same, what it reads is
  // not. These calls used to return the first result.
  const project = new Project({
    'lib.js': `
let scale = 2;
const cfg = { k: 1 };
exports.setScale = (v) => { scale = v; };
exports.cfg = cfg;
exports.mul = (x) => x * scale + cfg.k;
`,
    'rate.mjs': 'export let RATE = 1;\nexport function setRate(r) { RATE = r; }\n',
    'main.mjs': `
import { createRequire } from 'node:module';
import { RATE, setRate } from './rate.mjs';
const require = createRequire(import.meta.url);
const { memo } = require(${JSON.stringify(path.resolve(__dirname, '..', 'index.js'))});
const lib = require('./lib.js');
let runs = 0;
const calls = [];
const f = memo(function f(x) { runs++; calls.push(x); console.error('ran:f'); return lib.mul(x) * RATE; });
const out = [f(5)];
lib.setScale(3);
out.push(f(5));
lib.cfg.k = 7;
out.push(f(5));
setRate(10);
out.push(f(5));
lib.setScale(2); lib.cfg.k = 1; setRate(1);
out.push(f(5), f(5));
console.log(JSON.stringify([...out, runs]));
`,
  });
  const run = () => {
    const result = spawnSync(process.execPath, ['main.mjs'], { cwd: project.root, env: project.env(), encoding: 'utf8' });
    assert.strictEqual(result.status, 0, result.stderr);
    const ran = result.stderr.split('\n').filter((line) => line.startsWith('ran:')).length;
    return [...JSON.parse(result.stdout.trim().split('\n').pop()), ran];
  };
  // Each state computes once; back at the first state it hits (and a
  // counter the function bumps is no input of it).
  assert.deepStrictEqual(run(), [11, 16, 22, 220, 11, 11, 4, 4]);
  // Every result was stored under the values it was computed from.
  assert.deepStrictEqual(run(), [11, 16, 22, 220, 11, 11, 0, 0]);
});

test('module state a plain walk cannot see counts: symbol-keyed properties, array holes, a URL, a Date', () => {
  // Changed between calls, each was missed: `conf[TAG] = 6` (and, once a
  // symbol-keyed property made the value unhashable, every change of it:
  // it counted as its type), `HOLES[1] = 2`, `BASE.pathname = '/v2/'` (a
  // URL counted by identity, as a package's object), `SINCE.setTime(10)`.
  const project = new Project({
    'main.js': `
const { memo } = require(HITSAVE);
const TAG = Symbol('tag');
const conf = { k: 2, [TAG]: 5 };
const HOLES = [1, , 3];
const BASE = new URL('http://api.test/v1/');
const f = memo(function f(x) { console.error('ran:f'); return x + conf.k + conf[TAG]; });
const g = memo(function g(x) { console.error('ran:g'); return HOLES.map((v) => v * x).join('/'); });
const h = memo(function h(x) { console.error('ran:h'); return BASE.href + x; });
const SINCE = new Date(0);
const d = memo(function d(x) { console.error('ran:d'); return SINCE.getTime() + x; });
const out = [f(1), g(2), h(3), d(4)];
conf[TAG] = 6; out.push(f(1));
conf.k = 3; out.push(f(1));
HOLES[1] = 2; out.push(g(2));
BASE.pathname = '/v2/'; out.push(h(3));
SINCE.setTime(10); out.push(d(4));
console.log(JSON.stringify(out));
`,
  });
  const expected = [8, '2//6', 'http://api.test/v1/3', 4, 9, 10, '2/4/6', 'http://api.test/v2/3', 14];
  assert.deepStrictEqual(resultsAndRuns(project), [...expected, 'f,g,h,d,f,f,g,h,d']);
  // A fresh process computes the first state again: hits for what it stored.
  assert.deepStrictEqual(resultsAndRuns(project), [...expected, '-']);
});

test('a closure or a bound function held in module state counts by what it holds at each call', () => {
  // `const rand = mulberry32(1)` (a seeded generator: each draw changes the
  // variable it captured), `makeRng(1)` giving `{ next }`, and `predict =
  // model.predict.bind(model)` with `model.w = 5` between calls: the second
  // call in a process computed from another state than a fresh process, and
  // its result was stored under the fresh process's fingerprint (served to
  // it: 0.0301 where the code computes 6.8978), or hit with the old `w`. A
  // package's closure (a limiter's counter) stays its own bookkeeping: calls
  // through it hit.
  const project = new Project({
    'node_modules/counterlib/package.json': JSON.stringify({ name: 'counterlib', version: '1.0.0', main: 'index.js' }),
    'node_modules/counterlib/index.js': 'exports.wrap = (fn) => { let calls = 0; return (x) => { calls++; return fn(x); }; };\n',
    'rng.mjs': `
export function mulberry32(a) {
  return function () { a |= 0; a = (a + 0x6d2b79f5) | 0; let t = Math.imul(a ^ (a >>> 15), 1 | a); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}
export function makeRng(seed) { let s = seed; return { next() { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648; } }; }
`,
    'main.mjs': `
import { createRequire } from 'node:module';
import { mulberry32, makeRng } from './rng.mjs';
const require = createRequire(import.meta.url);
const { memo } = require(${JSON.stringify(path.resolve(__dirname, '..', 'index.js'))});
const counterlib = require('counterlib');
class Model { constructor(w) { this.w = w; } predict(x) { return this.w * x; } }
const model = new Model(2);
const predict = model.predict.bind(model);
const rand = mulberry32(1);
const gen = makeRng(1);
const doubled = counterlib.wrap((x) => x * 2);
const round = (x) => Math.round(x * 1e4) / 1e4;
const drawn = memo(function drawn(n) { console.error('ran:drawn'); return round(rand() * n); });
const stepped = memo(function stepped(n) { console.error('ran:stepped'); return round(gen.next() * n); });
const scored = memo(function scored(n) { console.error('ran:scored'); return predict(n); });
const counted = memo(function counted(n) { console.error('ran:counted'); return doubled(n); });
const out = [];
for (const n of process.argv.slice(2).map(Number)) out.push(drawn(n), stepped(n), scored(n), counted(n));
model.w = 5;
out.push(scored(10));
console.log(JSON.stringify(out));
`,
  });
  const run = (args, env = {}) => {
    const result = spawnSync(process.execPath, ['main.mjs', ...args], { cwd: project.root, env: project.env(env), encoding: 'utf8' });
    assert.strictEqual(result.status, 0, result.stderr);
    const ran = result.stderr.split('\n').filter((line) => line.startsWith('ran:')).map((line) => line.slice(4));
    return [JSON.parse(result.stdout.trim().split('\n').pop()), ran.join(',') || '-'];
  };
  const [twice] = run(['10', '11']);
  assert.deepStrictEqual(twice.slice(2, 4), [20, 20]);
  assert.strictEqual(twice[8], 50); // model.w = 5: computed again
  const [fresh] = run(['11'], { HITSAVE_MODE: 'off' });
  // The first process drew n = 11 from a later state than a fresh one does.
  assert.notDeepStrictEqual(twice.slice(4, 6), fresh.slice(0, 2));
  // A fresh process gets what its code computes: the draws from the first
  // state run (never stored before), the rest hits.
  assert.deepStrictEqual(run(['11']), [fresh, 'drawn,stepped']);
  assert.deepStrictEqual(run(['11']), [fresh, '-']);
});

test('module state that holds itself, and closures sharing one scope, count (a vendored lodash.js)', () => {
  // lodash's `_` is a project closure (when vendored) whose
  // `_.templateSettings.imports._` is `_` again, and whose scope holds its
  // 600 functions, each closing over that scope: reading it recursed
  // without end (a RangeError from memo()'s first call) and then read the
  // scope once per function in it (12 s). Changes made while the program
  // runs, through the cycle or the shared scope, still count.
  const project = new Project({
    'vendor/lib.js': `
(function () {
  function makeLib() {
    let factor = 2;
    function scale(x) { return x * factor; }
    function setFactor(f) { factor = f; }
    function lib(x) { return scale(x) + lib.settings.offset; }
    lib.setFactor = setFactor;
    lib.settings = { offset: 1, imports: { lib } };
    return lib;
  }
  module.exports = makeLib();
}());
`,
    'main.js': `
const { memo } = require(HITSAVE);
const lib = require('./vendor/lib');
const f = memo(function f(x) { console.error('ran:f'); return lib(x); });
const out = [f(3)];
lib.settings.imports.lib.settings.offset = 10;
out.push(f(3));
lib.setFactor(5);
out.push(f(3));
console.log(JSON.stringify(out));
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project), [7, 16, 25, 'f,f,f']);
  // A fresh process meets the same three states: each was stored.
  assert.deepStrictEqual(resultsAndRuns(project), [7, 16, 25, '-']);
  const lib = path.join(project.root, 'vendor', 'lib.js');
  fs.writeFileSync(lib, fs.readFileSync(lib, 'utf8').replace('offset: 1,', 'offset: 2,'));
  assert.deepStrictEqual(resultsAndRuns(project), [8, 16, 25, 'f,f,f']);
});

test('a vendored library whose closure holds hundreds of functions and its own bookkeeping hits in the next process', () => {
  // lodash's shape: a factory's scope of hundreds of function declarations
  // (the inspector lists them in another order in every process), one of
  // them a closure keeping the time it was last called (\`shortOut\`), and
  // the exported function with many properties. Every process missed. What
  // the exported function can call still counts, and is checked before each
  // call (read through a function sharing its scope, not through the
  // exported one, whose 300 properties the inspector would describe).
  const helpers = Array.from({ length: 300 }, (_, i) => `    function h${i}(x) { return x + ${i}; }`).join('\n');
  const project = new Project({
    'vendor/lib.js': `
module.exports = (function () {
  function make() {
${helpers}
    let factor = 2;
    function shortOut(func) { let lastCalled = 0; return function () { lastCalled = Date.now(); return func.apply(undefined, arguments); }; }
    const label = shortOut(function (f, n) { f.label = n; return f; });
    // Functions of the scope use one another (each is then kept in the scope).
    function every(x) { return ${Array.from({ length: 300 }, (_, i) => `h${i}(x)`).join(' + ')}; }
    function relabel(f) { return label(f, every.name); }
    // A closure the exported function calls: what it holds counts.
    function makeScaler(k) { let m = k; const scale = (x) => x * m; scale.set = (v) => { m = v; }; return scale; }
    const scaler = makeScaler(1);
    function api(x) { return scaler(h1(x) * factor); }
    api.setFactor = function (f) { factor = f; };
    api.setScale = function (v) { scaler.set(v); };
    for (let i = 0; i < 300; i++) api['p' + i] = h0;
    label(api, 'api');
    return api;
  }
  return make();
}());
`,
    'main.js': `
const { memo } = require(HITSAVE);
const lib = require('./vendor/lib');
const f = memo(function f(x) { console.error('ran:f'); return lib(x); });
const out = [f(3), f(3)];
lib.setFactor(5);
out.push(f(3), f(3));
lib.setScale(10);
out.push(f(3), f(3));
console.log(JSON.stringify(out));
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project), [8, 8, 20, 20, 200, 200, 'f,f,f']);
  assert.deepStrictEqual(resultsAndRuns(project), [8, 8, 20, 20, 200, 200, '-']);
});

test('a scope\'s own function declarations are not read one by one, and a function a scope only holds still is', () => {
  // A function declared in a scope and never reassigned closes over that
  // scope, already read: it is not read again through the inspector (a
  // third of a millisecond each; lodash's \`_.sortBy\` reached ~110). What
  // the text does not prove stays read: a variable holding another scope's
  // function whose text reads like a declaration of that name, and a name a
  // sloppy block declares again (running the block assigns the function's
  // binding of that name, closing over the block). Their state counts.
  const helpers = Array.from({ length: 120 }, (_, i) => `    function h${i}(x) { return x + ${i}; }`).join('\n');
  const project = new Project({
    'vendor/counter.js': `
function makeCounter() { let n = 0; function helper(x) { return x + n; } return { helper, bump() { n++; } }; }
module.exports = makeCounter();
`,
    'vendor/lib.js': `
const counter = require('./counter');
module.exports = (function () {
  function make() {
${helpers}
    function sum(x) { return ${Array.from({ length: 120 }, (_, i) => `h${i}(x)`).join(' + ')}; }
    // Not declared here: another scope's function, read (its n counts).
    var helper = counter.helper;
    // Declared here and again in a block, which runs: the block's function is the one held.
    function twice(x) { return x + k; }
    let k = 1;
    let bumpInner;
    { let k = 100; function twice(x) { return x + k; } bumpInner = () => { k++; }; }
    function api(x) { return sum(x) + helper(x) + twice(x); }
    api.bumpInner = () => bumpInner();
    return api;
  }
  return make();
}());
`,
    'count.js': `
// Counts the inspector's reads of a value's properties (what reading a closure costs).
const inspector = require('node:inspector');
const post = inspector.Session.prototype.post;
let reads = 0;
inspector.Session.prototype.post = function (method, ...rest) {
  if (method === 'Runtime.getProperties') reads++;
  return post.call(this, method, ...rest);
};
globalThis.inspectorReads = () => reads;
`,
    'main.js': `
require('./count');
const { memo } = require(HITSAVE);
const counter = require('./vendor/counter');
const lib = require('./vendor/lib');
const f = memo(function f(x) { console.error('ran:f'); return lib(x); });
const out = [f(0)];
const reads = globalThis.inspectorReads();
counter.bump();
out.push(f(0));
lib.bumpInner();
out.push(f(0));
console.log(JSON.stringify([reads < 40 ? 'few reads' : reads, ...out]));
`,
  });
  const sum = (120 * 119) / 2;
  assert.deepStrictEqual(resultsAndRuns(project), ['few reads', sum + 100, sum + 101, sum + 102, 'f,f,f']);
  assert.deepStrictEqual(resultsAndRuns(project), ['few reads', sum + 100, sum + 101, sum + 102, '-']);
  // What the code computes with the cache off.
  assert.deepStrictEqual(resultsAndRuns(project, { env: { HITSAVE_MODE: 'off' } }).slice(1), [sum + 100, sum + 101, sum + 102, 'f,f,f']);
});

test('an AsyncLocalStorage the function reads counts by the store of the context calling', () => {
  // \`als.run({ scale }, () => f(2))\` per request, \`als.getStore()\` inside f:
  // the storage counted by its class and identity alone, so the second
  // request's call hit the first's result (4 where the code computes 10).
  // As Python's ContextVar: the store of the calling context counts, read
  // again before each call (a store changed in place too); directly, through
  // a class's static field, inside an object.
  const project = new Project({
    'ctx.js': `
const { AsyncLocalStorage } = require('node:async_hooks');
const als = new AsyncLocalStorage();
class RequestContext { static als = als; static scale() { return this.als.getStore().scale; } }
module.exports = { als, RequestContext, holder: { als } };
`,
    'main.js': `
const { memo } = require(HITSAVE);
const { als, RequestContext, holder } = require('./ctx');
const a = memo(function a(x) { console.error('ran:a'); return x * als.getStore().scale; });
const b = memo(function b(x) { console.error('ran:b'); return x * RequestContext.scale(); });
const c = memo(async function c(x) { console.error('ran:c'); await null; return x * holder.als.getStore().scale; });
(async () => {
  const out = [];
  for (const s of [2, 5]) out.push(await als.run({ scale: s }, async () => [a(2), b(2), await c(2)]));
  out.push(await Promise.all([3, 4].map((s) => als.run({ scale: s }, () => c(1)))));
  als.run({ scale: 1 }, () => { out.push(a(2)); als.getStore().scale = 9; out.push(a(2)); });
  console.log(JSON.stringify(out));
})();
`,
  });
  const expected = [[4, 4, 4], [10, 10, 10], [3, 4], 2, 18];
  assert.deepStrictEqual(resultsAndRuns(project), [...expected, 'a,b,c,a,b,c,c,c,a,a']);
  assert.deepStrictEqual(resultsAndRuns(project), [...expected, '-']);
});

test('a generator or a built-in iterator held in module state is refused; HITSAVE_MODE=off calls it', () => {
  // `const gen = idGen()` with `gen.next()` inside: a second call in a
  // process read a moved generator and its result was stored under the first
  // position's fingerprint, then served to a fresh process (11101 where the
  // code computes 11100). Where it is cannot be read: refused, naming it.
  // With the cache off nothing is analysed (as in Python), so the function runs.
  const project = new Project({
    'main.js': `
const { memo } = require(HITSAVE);
function* idGen() { let i = 100; while (true) yield i++; }
const gen = idGen();
const it = [7, 8, 9][Symbol.iterator]();
const numbered = memo((n) => n * 1000 + gen.next().value);
const taken = memo((n) => n * 1000 + it.next().value);
const out = [];
for (const f of [numbered, taken]) {
  try { out.push(f(10), f(11)); } catch (error) { out.push(error.code, error.message); }
}
console.log(JSON.stringify(out));
`,
  });
  const [code, message, code2, message2] = project.run('main.js').out;
  assert.strictEqual(code, 'code_unavailable');
  assert.match(message, /it reads gen, a Generator whose position changes/);
  assert.strictEqual(code2, 'code_unavailable');
  assert.match(message2, /it reads it, an Array Iterator/);
  assert.deepStrictEqual(project.run('main.js', { env: { HITSAVE_MODE: 'off' } }).out, [10100, 11101, 10007, 11008]);
});

test('state kept in #private fields or a WeakMap counts by its value at each call', () => {
  // `static #rate` a static setter changes, and the WeakMap "private data"
  // pattern: JavaScript cannot enumerate either, so `setRate(3)` between two
  // calls hit the first result, and a new argument's result was stored
  // under the first state's fingerprint (served later: 33 where the code
  // computes 22). They are read through the inspector now.
  const project = new Project({
    'main.js': `
const { memo } = require(HITSAVE);
class Config { static #rate = 2; static setRate(r) { Config.#rate = r; } static rate() { return Config.#rate; } }
const priv = new WeakMap();
class Acc { constructor(k) { priv.set(this, { k }); } setK(k) { priv.get(this).k = k; } k() { return priv.get(this).k; } }
const acc = new Acc(2);
const rated = memo(function rated(n) { console.error('ran:rated'); return n * Config.rate(); });
const scaled = memo(function scaled(n) { console.error('ran:scaled'); return n * acc.k(); });
if (process.argv[2] === 'change') {
  const out = [rated(10), scaled(10)];
  Config.setRate(3);
  acc.setK(3);
  console.log(JSON.stringify([...out, rated(10), scaled(10), rated(11), scaled(11)]));
} else {
  console.log(JSON.stringify([rated(11), scaled(11)]));
}
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project, { args: ['change'] }), [20, 20, 30, 30, 33, 33, 'rated,scaled,rated,scaled,rated,scaled']);
  // A fresh process at the first state gets what its code computes for 11.
  assert.deepStrictEqual(resultsAndRuns(project), [22, 22, 'rated,scaled']);
  assert.deepStrictEqual(resultsAndRuns(project), [22, 22, '-']);
});

test('a large typed array changed in place is never stored under its old contents', () => {
  // `W = new Float64Array(100000)` (800 KB, over the 64 KiB compared byte
  // for byte) then `W[0] = 5` and a new argument: the result computed from
  // the new contents was stored under the old contents' fingerprint, which a
  // fresh process then got (10 where its code computes 0). Up to 8 MiB of
  // such arrays are digested before each call; larger ones before a miss computes.
  const project = new Project({
    'main.js': `
const { memo } = require(HITSAVE);
const W = new Float64Array(100000);
const BIG = new Float64Array(2000000);
// Changed through another name, so the statement changing them (which
// reads argv) is not part of their graph: both runs share fingerprints.
const views = [W, BIG];
const scaled = memo(function scaled(n) { console.error('ran:scaled'); return W[0] * n; });
const shifted = memo(function shifted(n) { console.error('ran:shifted'); return BIG[0] + n; });
const out = [scaled(1), shifted(1)];
if (process.argv[2] === 'change') {
  for (const view of views) view[0] = 5;
  out.push(scaled(1), scaled(2), shifted(2));
} else out.push(scaled(2), shifted(2));
console.log(JSON.stringify(out));
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project, { args: ['change'] }), [0, 1, 5, 10, 7, 'scaled,shifted,scaled,scaled,shifted']);
  // A fresh process with the arrays as made: what its code computes.
  assert.deepStrictEqual(resultsAndRuns(project), [0, 1, 0, 2, 'scaled,shifted']);
  // The 800 KB array is digested before each call: its change is seen by a hit too.
  assert.deepStrictEqual(resultsAndRuns(project, { args: ['change'] }).slice(0, 4), [0, 1, 5, 10]);
});

test('the local time zone and locale count where code uses them', () => {
  // `new Date(ts).getHours()`, `date.toString()`, `n.toLocaleString()`
  // answer by the machine's zone and locale: a result computed with TZ=UTC
  // was served to a process (a teammate) in Tokyo with a German locale.
  const project = new Project({
    'main.js': `
const { memo } = require(HITSAVE);
const hour = memo((ts) => new Date(ts).getHours());
const hourOf = memo((date) => date.getHours());
const money = memo((x) => x.toLocaleString());
const out = [hour(1.7e12), hourOf(new Date(1.7e12)), money(1234567.5)];
if (process.argv[2] === 'switch') { process.env.TZ = 'Asia/Tokyo'; out.push(hour(1.7e12)); }
console.log(JSON.stringify(out));
`,
  });
  const run = (env, args = []) => project.run('main.js', { env, args }).out;
  assert.deepStrictEqual(run({ TZ: 'UTC', LANG: 'en_US.UTF-8' }), [22, 22, '1,234,567.5']);
  assert.deepStrictEqual(run({ TZ: 'Asia/Tokyo', LANG: 'de_DE.UTF-8', LC_ALL: 'de_DE.UTF-8' }), [7, 7, '1.234.567,5']);
  // `process.env.TZ = …` in a running program changes its zone: seen at the next call.
  assert.deepStrictEqual(run({ TZ: 'UTC', LANG: 'en_US.UTF-8' }, ['switch']), [22, 22, '1,234,567.5', 7]);
});

test('a file an argument names counts by its contents', () => {
  // `load('data.txt')`, `total(['a.txt', 'b.txt'])` for code reading the
  // path it is given: the key held only the text, so an edit of the file hit
  // with the old contents.
  const project = new Project({
    'data.txt': '1',
    'a.txt': '10',
    'b.txt': '20',
    'c.txt': '1',
    'main.js': `
const fs = require('node:fs');
const { memo } = require(HITSAVE);
const load = memo(function load(p) { console.error('ran:load'); return fs.readFileSync(p, 'utf8').trim(); });
const total = memo(function total(paths) { console.error('ran:total'); return paths.reduce((sum, p) => sum + Number(fs.readFileSync(p, 'utf8')), 0); });
class Dataset { constructor(p) { this.path = p; } }
Dataset.prototype.read = memo(function read() { console.error('ran:read'); return fs.readFileSync(this.path, 'utf8').trim(); });
// A path no code names as a literal: only the instance holds it.
const name = ['c', 'txt'].join('.');
console.log(JSON.stringify([load('data.txt'), total(['a.txt', 'b.txt']), new Dataset(name).read()]));
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project), ['1', 30, '1', 'load,total,read']);
  assert.deepStrictEqual(resultsAndRuns(project), ['1', 30, '1', '-']);
  // Only the file the instance names: no other file of the graph changed.
  project.write({ 'c.txt': '2' });
  assert.deepStrictEqual(resultsAndRuns(project), ['1', 30, '2', 'read']);
  project.write({ 'data.txt': '2', 'b.txt': '25' });
  assert.deepStrictEqual(resultsAndRuns(project), ['2', 35, '2', 'load,total,read']);
});

test('a directory or glob pattern an argument names counts by what it holds', () => {
  // `total('data')` listing and reading a directory, a glob pattern passed
  // to a glob function, and code that only lists, asks after or sizes a
  // path (`readdirSync(d).length`, `existsSync(p)`, `statSync(p).size`):
  // the key held only the text, so an edited, added or removed file hit.
  const project = new Project({
    'data/a.txt': '1',
    'data/b.txt': '2',
    'data/notes.md': 'x',
    'globs.js': `
const fs = require('node:fs');
const path = require('node:path');
// A small glob of the project's own (\`dir/*.ext\`), as a package's would be called.
exports.globSync = (pattern) => {
  const [dir, name] = [path.dirname(pattern), path.basename(pattern)];
  return fs.readdirSync(dir).filter((n) => n.endsWith(name.slice(1))).map((n) => path.join(dir, n));
};
`,
    'main.js': `
const fs = require('node:fs');
const path = require('node:path');
const { globSync } = require('./globs');
const { memo } = require(HITSAVE);
const total = memo(function total(d) {
  console.error('ran:total');
  return fs.readdirSync(d).sort().filter((n) => n.endsWith('.txt')).reduce((s, n) => s + Number(fs.readFileSync(path.join(d, n), 'utf8')), 0);
});
const loadAll = memo(function loadAll(pattern) {
  console.error('ran:loadAll');
  return globSync(pattern).reduce((s, p) => s + Number(fs.readFileSync(p, 'utf8')), 0);
});
const count = memo(function count(d) { console.error('ran:count'); return fs.readdirSync(d).length; });
const there = memo(function there(p) { console.error('ran:there'); return fs.existsSync(p); });
const size = memo(function size(p) { console.error('ran:size'); return fs.statSync(p).size; });
console.log(JSON.stringify([total('data'), loadAll('data/*.txt'), count('data'), there('data/c.txt'), size('data/a.txt')]));
`,
  });
  const every = 'total,loadAll,count,there,size';
  assert.deepStrictEqual(resultsAndRuns(project), [3, 3, 3, false, 1, every]);
  assert.deepStrictEqual(resultsAndRuns(project), [3, 3, 3, false, 1, '-']);
  project.write({ 'data/a.txt': '10' }); // edited
  assert.deepStrictEqual(resultsAndRuns(project), [12, 12, 3, false, 2, 'total,loadAll,count,size']);
  project.write({ 'data/c.txt': '5' }); // added
  assert.deepStrictEqual(resultsAndRuns(project), [17, 17, 4, true, 2, 'total,loadAll,count,there']);
  project.write({ 'data/notes.md': 'y' }); // no match of the pattern
  assert.deepStrictEqual(resultsAndRuns(project), [17, 17, 4, true, 2, 'total,count']);
  fs.unlinkSync(path.join(project.root, 'data/b.txt')); // removed
  assert.deepStrictEqual(resultsAndRuns(project), [15, 15, 3, true, 2, 'total,loadAll,count']);
});

test('a directory the call creates at a path its argument names does not make the next call miss', () => {
  // `exportTo('data.txt', 'out')` writing into a directory it creates: the
  // directory counts at the next call, so the result is stored under that
  // key too. An output directory that already existed makes one more call
  // run. A directory too large to count is refused, naming the argument.
  const project = new Project({
    'data.txt': '3',
    'main.js': `
const fs = require('node:fs');
const path = require('node:path');
const { memo, HitSaveError } = require(HITSAVE);
const exportTo = memo(async function exportTo(source, out) {
  console.error('ran:exportTo');
  const total = Number(fs.readFileSync(source, 'utf8')) * 2;
  await fs.promises.mkdir(out, { recursive: true });
  await fs.promises.writeFile(path.join(out, 'total.txt'), String(total));
  return total;
});
const count = memo(function count(d) { return fs.readdirSync(d).length; });
(async () => {
  let refused = '-';
  if (fs.existsSync('big')) try { count('big'); } catch (error) { refused = error instanceof HitSaveError && error.code; }
  console.log(JSON.stringify([await exportTo('data.txt', 'out'), refused]));
})();
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project), [6, '-', 'exportTo']);
  assert.deepStrictEqual(resultsAndRuns(project), [6, '-', '-']);
  project.write({ 'data.txt': '4' });
  assert.deepStrictEqual(resultsAndRuns(project), [8, '-', 'exportTo']);
  assert.deepStrictEqual(resultsAndRuns(project), [8, '-', 'exportTo']); // `out` existed: its contents changed
  assert.deepStrictEqual(resultsAndRuns(project), [8, '-', '-']);
  fs.mkdirSync(path.join(project.root, 'big'));
  for (let i = 0; i < 4100; i++) fs.writeFileSync(path.join(project.root, 'big', `${i}.txt`), '1');
  assert.deepStrictEqual(resultsAndRuns(project), [8, 'unhashable_value', '-']);
});

test('a value digesting differently each time registers again once per miss, not forever', () => {
  // A module-level object with a getter answering anew at each read, beside
  // a large array (so the checks before each call compare it only in part):
  // before a miss computes it is digested again, differs, and the function
  // registers again; the call made again must not check again (it recursed
  // until the stack overflowed).
  const project = new Project({
    'main.js': `
const { memo } = require(HITSAVE);
const STATE = { get tick() { return process.hrtime.bigint().toString(); }, pad: new Array(5000).fill(0) };
const f = memo(function f(x) { console.error('ran:f'); return x + STATE.pad.length; });
console.log(JSON.stringify([f(1), f(2)]));
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project), [5001, 5002, 'f,f']);
});

test('a file the call creates at a path its argument names does not make the next call miss', () => {
  // `report('data.txt', 'out.txt')` reads one file and writes the other:
  // `out.txt` exists at the next call and counts there by contents, so
  // without the result stored under that key too every second process ran
  // the body again. The same for an async function.
  const project = new Project({
    'data.txt': '3',
    'main.js': `
const fs = require('node:fs');
const { memo } = require(HITSAVE);
const report = memo(function report(source, out) {
  console.error('ran:report');
  const total = Number(fs.readFileSync(source, 'utf8')) * 2;
  fs.writeFileSync(out, 'total ' + total);
  return total;
});
const reportAsync = memo(async function reportAsync(source, out) {
  console.error('ran:reportAsync');
  const total = Number(await fs.promises.readFile(source, 'utf8')) * 3;
  await fs.promises.writeFile(out, 'total ' + total);
  return total;
});
(async () => console.log(JSON.stringify([report('data.txt', 'out.txt'), await reportAsync('data.txt', 'out2.txt')])))();
`,
  });
  assert.deepStrictEqual(resultsAndRuns(project), [6, 9, 'report,reportAsync']);
  assert.deepStrictEqual(resultsAndRuns(project), [6, 9, '-']);
  project.write({ 'data.txt': '4' });
  assert.deepStrictEqual(resultsAndRuns(project), [8, 12, 'report,reportAsync']);
});

test('a counter or a log the function only adds to is no input: repeated calls hit in the process', () => {
  const project = new Project({
    'node_modules/minilog/package.json': JSON.stringify({ name: 'minilog', version: '1.0.0', main: 'index.js' }),
    'node_modules/minilog/index.js': `
class Logger { constructor() { this.pid = process.pid; this.lines = []; } info(line) { this.lines.push(line); } }
exports.create = () => new Logger();
`,
    'main.js': `
const { memo } = require(HITSAVE);
const log = require('minilog').create();  // a package's object: its class, not its contents
let runs = 0, total = 0, last;
const calls = [], seen = new Set(), byKey = new Map();
const stats = { calls: 0, by: {} };
const f = memo((x) => {
  runs++; total += x; calls.push(x); seen.add(x); byKey.set(x, 1); last = x;
  stats.calls += 1; stats.by[x] = 1; log.info('f ' + x);
  console.error('ran:f');
  return x * 2;
});
const g = memo((x) => x + runs);  // reads the counter: an input
console.log(JSON.stringify([f(3), f(3), f(4), f(3), runs, g(1), f(5), g(1)]));
`,
  });
  // g(1) after f(5) ran reads runs = 3: computed again, not 1 + 2.
  const first = project.run('main.js');
  assert.deepStrictEqual(first.out, [6, 6, 8, 6, 2, 3, 10, 4]);
  // Another process (another pid in the logger) hits f's results.
  const again = project.run('main.js');
  assert.deepStrictEqual(again.out, [6, 6, 8, 6, 0, 1, 10, 1]);
  assert.strictEqual(again.stderr.split('\n').filter((line) => line === 'ran:f').length, 0);
});

test("a class's static data or a global changed while the program runs counts at the next call", () => {
  const project = new Project({
    'lib.js': `
class Config { static k = 2; }
exports.Config = Config;
exports.setRate = (r) => { globalThis.RATE = r; };
function helper(x) { return x * helper.factor; }
helper.factor = 1;
exports.helper = helper;
`,
    'main.js': `
const { memo } = require(HITSAVE);
const { Config, setRate, helper } = require('./lib');
setRate(1);
const f = memo(function f(x) { return x * Config.k; });
const g = memo(function g(x) { return x * RATE + globalThis.RATE; });
const h = memo(function h(x) { return helper(x); });
const out = [f(5), g(5), h(5)];
Config.k = 3;
setRate(4);
helper.factor = 7;
out.push(f(5), g(5), h(5));
console.log(JSON.stringify(out));
`,
  });
  assert.deepStrictEqual(project.run('main.js').out, [10, 6, 5, 15, 24, 35]);
  assert.deepStrictEqual(project.run('main.js').out, [10, 6, 5, 15, 24, 35]);
});

test('TypeScript: module state changed while the program runs counts, through what tsx makes of the modules', {
  skip: !fs.existsSync(TSX) && process.env.CI !== 'true' && 'tsx is not installed (npm ci --prefix bindings/node/test/typescript)',
}, () => {
  // tsx compiles a CommonJS project's imports to getters on an exports
  // object, with helpers (`__defProp`) in each module's scope.
  for (const type of ['commonjs', 'module']) {
    const project = new Project({
      'package.json': JSON.stringify({ type }),
      'lib.ts': 'let scale = 2;\nexport function setScale(v: number) { scale = v; }\nexport const mul = (x: number): number => x * scale;\n',
      'main.ts': `
        import { memo } from ${JSON.stringify(path.resolve(__dirname, '..', 'index.js'))};
        import { mul, setScale } from './lib${type === 'module' ? '.ts' : ''}';
        const run = memo(function run(x: number) { return mul(x); });
        const first = run(5);
        setScale(3);
        console.log(JSON.stringify([first, run(5)]));
      `,
    });
    const result = spawnSync(TSX, ['main.ts'], { cwd: project.root, env: project.env(), encoding: 'utf8' });
    assert.strictEqual(result.status, 0, result.stderr);
    assert.deepStrictEqual(JSON.parse(result.stdout.trim().split('\n').pop()), [10, 15], type);
  }
});

test('large module-level values and small typed arrays changed in place are seen at the next call', () => {
  // Too large to copy at every call (over 1,000 items), a container is
  // compared by what it holds, one level down; a typed array up to 64 KiB by
  // its bytes (Python's limits). These calls returned the first result.
  const project = new Project({
    'main.js': `
const { memo } = require(HITSAVE);
const W = new Float64Array(1000);
const CFG = { rows: Array.from({ length: 5000 }, (_, i) => i) };
const ROWS = Array.from({ length: 5000 }, (_, i) => i);
const BIG = { ...Object.fromEntries(Array.from({ length: 2000 }, (_, i) => ['k' + i, i])), list: [1, 2] };
const f = memo((x) => W.reduce((a, b) => a + b, 0) + x);
const g = memo((x) => CFG.rows[CFG.rows.length - 1] + ROWS[ROWS.length - 1] + x);
const h = memo((x) => BIG.k5 + BIG.list.length + x);
const out = [f(1), g(1), h(1)];
W.fill(1);
CFG.rows[CFG.rows.length - 1] = 7;
ROWS[ROWS.length - 1] = 9;
BIG.list.push(3);
out.push(f(1), g(1), h(1));
BIG.k5 = 50;
out.push(h(1));
console.log(JSON.stringify(out));
`,
  });
  assert.deepStrictEqual(project.run('main.js').out, [1, 9999, 8, 1001, 17, 9, 54]);
});

test('a path built on process.cwd() counts like the relative path it is', () => {
  // `path.resolve(process.cwd(), 'data', name)` read a file under a known
  // directory, but process.cwd() was no known text: an edit used to hit.
  const project = new Project({
    'data/a.txt': '2',
    'main.js': `
const { memo } = require(HITSAVE);
const fs = require('node:fs');
const path = require('node:path');
const read = memo((name) => Number(fs.readFileSync(path.resolve(process.cwd(), 'data', name + '.txt'), 'utf8')));
const whole = memo(() => Number(fs.readFileSync(path.join(process.cwd(), 'data/a.txt'), 'utf8')));
console.log(JSON.stringify([read('a'), whole()]));
`,
  });
  editMisses(project, () => project.run('main.js').out, 'data/a.txt', '2', '3');
});

test('a file named by a command-line argument or by a value a configuration file holds counts', () => {
  // `readFileSync(process.argv[2])`, `--config other.txt` through a parser,
  // `readFileSync(cfg.data)` with cfg read from JSON: paths known only when
  // the code runs, which no text of the code names; an edit used to hit.
  const project = new Project({
    'cfg.json': '{"data": "data.csv"}',
    'data.csv': '2',
    'other.txt': '7',
    'main.js': `
const { memo } = require(HITSAVE);
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { values: args } = parseArgs({ options: { config: { type: 'string' } }, allowPositionals: true, strict: false });
const cfg = JSON.parse(fs.readFileSync('cfg.json', 'utf8'));
const fromArgv = memo(() => Number(fs.readFileSync(args.config, 'utf8')));
const fromPositional = memo(() => Number(fs.readFileSync(process.argv[4], 'utf8')));
const fromConfig = memo((x) => Number(fs.readFileSync(cfg.data, 'utf8')) * x);
console.log(JSON.stringify([fromArgv(), fromPositional(), fromConfig(5)]));
`,
  });
  const run = () => {
    const result = spawnSync(process.execPath, ['main.js', '--config', 'other.txt', 'data.csv'], { cwd: project.root, env: project.env(), encoding: 'utf8' });
    assert.strictEqual(result.status, 0, result.stderr);
    return JSON.parse(result.stdout.trim().split('\n').pop());
  };
  assert.deepStrictEqual(run(), [7, 2, 10]);
  editMisses(project, run, 'other.txt', '7', '8');
  editMisses(project, run, 'data.csv', '2', '3');
});

test('memo() run again at one call site (a request handler) sees module state change between requests', () => {
  const project = new Project({
    'main.js': `
const { memo } = require(HITSAVE);
let scale = 2;
function setScale(value) { scale = value; }
const cfg = { k: 1 };
function handle(x) { return memo((y) => y * scale + cfg.k)(x); }
const out = [handle(5), handle(5)];
setScale(3);
out.push(handle(5));
cfg.k = 10;
out.push(handle(5), handle(5));
console.log(JSON.stringify(out));
`,
  });
  assert.deepStrictEqual(project.run('main.js').out, [11, 11, 16, 25, 25]);
});

test('module state of a workspace package imported under another name is found', () => {
  // `import { mul as m } from '@acme/lib'` (an npm workspace, linked into
  // node_modules): the search follows imports that resolve to the project's
  // files, whatever their names; it used to refuse the call.
  const project = new Project({
    'package.json': JSON.stringify({ name: 'mono', private: true, workspaces: ['packages/*'] }),
    'packages/lib/package.json': JSON.stringify({ name: '@acme/lib', version: '1.0.0', type: 'module', exports: './index.js' }),
    'packages/lib/index.js': 'let scale = 2;\nexport function setScale(v) { scale = v; }\nexport const mul = (x) => x * scale;\n',
    'packages/app/package.json': JSON.stringify({ name: 'app', version: '1.0.0', type: 'module' }),
    'packages/app/main.js': `
import { memo } from ${JSON.stringify(require('node:url').pathToFileURL(path.join(__dirname, '..', 'index.mjs')).href)};
import { mul as m } from '@acme/lib';
const f = memo((x) => m(x));
const { setScale } = await import('@acme/lib');
const first = f(5);
setScale(3);
console.log(JSON.stringify([first, f(5)]));
`,
  });
  fs.mkdirSync(path.join(project.root, 'node_modules', '@acme'), { recursive: true });
  fs.symlinkSync(path.join(project.root, 'packages', 'lib'), path.join(project.root, 'node_modules', '@acme', 'lib'));
  assert.deepStrictEqual(project.run('packages/app/main.js').out, [10, 15]);
});

test('a fresh process parses again only the modules that changed since the last one', () => {
  // Module summaries are kept in the store by each file's exact state: the
  // next process reads them, and after one file is edited only that file
  // (and the file that called memo(), whose call is located anew) is parsed.
  // Files modified in the last two seconds are never kept, hence the waits.
  const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  const project = new Project({
    'm0.js': 'exports.f = (x) => x * 2;\n',
    'm1.js': "const { f } = require('./m0');\nexports.g = (x) => f(x) + 10;\n",
    'm2.js': "const { g } = require('./m1');\nexports.h = (x) => g(x) * 3;\n",
    'main.js': `
      const { memo, MISS, _native } = require(HITSAVE);
      const { h } = require('./m2');
      const path = require('node:path');
      const run = memo(function run(x) { return h(x); });
      const missed = run.lookup(4) === MISS;
      const value = run(4);
      const parsed = _native.summarizedFiles().map((file) => path.basename(file)).sort();
      console.log(JSON.stringify([missed, value, [...new Set(parsed)]]));
    `,
  });
  sleep(2100);
  const first = project.run('main.js').out;
  assert.deepStrictEqual(first, [true, 54, ['m0.js', 'm1.js', 'm2.js', 'main.js']]);
  assert.deepStrictEqual(project.run('main.js').out, [false, 54, ['main.js']], 'nothing parsed again but the caller');
  project.write({ 'm0.js': 'exports.f = (x) => x * 5;\n' });
  sleep(2100);
  assert.deepStrictEqual(project.run('main.js').out, [true, 90, ['m0.js', 'main.js']], 'only the edited module again');
  assert.deepStrictEqual(project.run('main.js').out, [false, 90, ['main.js']]);
  // A kept file damaged (cut short) is read as none: everything parsed again, same answer.
  const analysis = path.join(project.cache, 'analysis');
  const kept = fs.readdirSync(analysis).filter((name) => name.startsWith('js-modules-'));
  assert.strictEqual(kept.length, 1);
  const file = path.join(analysis, kept[0]);
  fs.writeFileSync(file, fs.readFileSync(file).subarray(0, -5));
  assert.deepStrictEqual(project.run('main.js').out, [false, 90, ['m0.js', 'm1.js', 'm2.js', 'main.js']]);
});

test('the class of an instance argument is not parsed again in a fresh process until its file changes', () => {
  // An instance's key holds its class's code fingerprint, found by
  // analysing the class in its file: kept by the file's exact state like
  // the module summaries (every process parsed shape.js, and a vendored
  // lodash.js twice, for classes whose instances module state holds).
  const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  const shape = (k) => `class Shape { constructor(w) { this.w = w; } area(x) { return x * this.w * ${k}; } }\nexports.Shape = Shape;\n`;
  const project = new Project({
    'shape.js': shape(1),
    'main.js': `
      const { memo, _native } = require(HITSAVE);
      const path = require('node:path');
      const { Shape } = require('./shape');
      const area = memo(function area(s, x) { console.error('ran:area'); return s.area(x); });
      const value = area(new Shape(2), 3);
      const parsed = _native.summarizedFiles().map((file) => path.basename(file)).sort();
      console.log(JSON.stringify([value, [...new Set(parsed)]]));
    `,
  });
  sleep(2100);
  assert.deepStrictEqual(resultsAndRuns(project), [6, ['main.js', 'shape.js'], 'area']);
  assert.deepStrictEqual(resultsAndRuns(project), [6, ['main.js'], '-'], 'nothing parsed again but the caller');
  project.write({ 'shape.js': shape(10) });
  sleep(2100);
  assert.deepStrictEqual(resultsAndRuns(project), [60, ['main.js', 'shape.js'], 'area'], 'the edited class is analysed again');
  assert.deepStrictEqual(resultsAndRuns(project), [60, ['main.js'], '-']);
});

test("CommonJS re-exports as TypeScript, Babel and esbuild emit them count the code they re-export", () => {
  // `export { helper } from './b'` compiled by tsc: `exports.helper = void 0`
  // then a getter defined on `exports` (taking the `void 0` statement for
  // the export hit after b.js changed); `export *` through tslib and Babel;
  // an esbuild bundle's `__export(target, { name: () => name })`.
  const tsc = (body) => `"use strict";\nObject.defineProperty(exports, "__esModule", { value: true });\n${body}`;
  const project = new Project({
    'dist/b.js': tsc('exports.helper = void 0;\nconst K = 2;\nfunction helper(x) { return x * K; }\nexports.helper = helper;\n'),
    'dist/c.js': tsc(
      'exports.helper = void 0;\nvar b_1 = require("./b");\n' +
        'Object.defineProperty(exports, "helper", { enumerable: true, get: function () { return b_1.helper; } });\n',
    ),
    'dist/r.js': tsc(
      'exports.renamed = void 0;\nvar b_1 = require("./b");\n' +
        'Object.defineProperty(exports, "renamed", { enumerable: true, get: function () { return b_1.helper; } });\n',
    ),
    'dist/d.js': tsc('var c_1 = require("./c");\nfunction twice(x) { return (0, c_1.helper)(x) * 2; }\nexports.twice = twice;\n'),
    'dist/e.js': tsc('var r_1 = require("./r");\nfunction once(x) { return (0, r_1.renamed)(x); }\nexports.once = once;\n'),
    'dist/babel.js': tsc(
      'var _b = require("./b");\nObject.keys(_b).forEach(function (key) {\n  if (key === "default" || key === "__esModule") return;\n' +
        '  Object.defineProperty(exports, key, { enumerable: true, get: function () { return _b[key]; } });\n});\n',
    ),
    'dist/esb.js':
      '"use strict";\nvar __defProp = Object.defineProperty;\n' +
      'var __export = (target, all) => { for (var name in all) __defProp(target, name, { get: all[name], enumerable: true }); };\n' +
      'var src_exports = {};\n__export(src_exports, { scale: () => scale });\nmodule.exports = src_exports;\nvar F = 10;\nfunction scale(x) { return x * F; }\n',
    'main.js': `
      const { memo } = require(HITSAVE);
      const fs = require('node:fs');
      const { twice } = require('./dist/d');
      const { once } = require('./dist/e');
      const babel = require('./dist/babel');
      const esb = require('./dist/esb');
      const runs = () => fs.appendFileSync(__dirname + '/runs.txt', 'x');
      const f = memo(function f(x) { runs(); return twice(x); });
      const g = memo(function g(x) { runs(); return once(x); });
      const h = memo(function h(x) { runs(); return babel.helper(x); });
      const k = memo(function k(x) { runs(); return esb.scale(x); });
      console.log(JSON.stringify([f(1), g(1), h(1), k(1)]));
    `,
  });
  const runs = () => fs.readFileSync(path.join(project.root, 'runs.txt'), 'utf8').length;
  assert.deepStrictEqual(project.run('main.js').out, [4, 2, 2, 10]);
  assert.deepStrictEqual(project.run('main.js').out, [4, 2, 2, 10]);
  assert.strictEqual(runs(), 4, 'the second process hits');
  project.write({ 'dist/b.js': tsc('exports.helper = void 0;\nconst K = 3;\nfunction helper(x) { return x * K; }\nexports.helper = helper;\n') });
  assert.deepStrictEqual(project.run('main.js').out, [6, 3, 3, 10], 'an edit of the re-exported code misses');
  project.write({ 'dist/esb.js': fs.readFileSync(path.join(project.root, 'dist/esb.js'), 'utf8').replace('F = 10', 'F = 20') });
  assert.deepStrictEqual(project.run('main.js').out, [6, 3, 3, 20], 'an edit inside the bundle misses');
  assert.strictEqual(runs(), 8);
});

test('a package installed again at the same version with other contents misses', () => {
  // A team's own library packed and installed from a tarball (no registry):
  // edited and installed again without a version bump. npm's record of the
  // installed tree (node_modules/.package-lock.json) holds each package's
  // integrity, which counts with its name and version.
  const project = new Project({
    'lib/package.json': JSON.stringify({ name: 'teamlib', version: '1.0.0', main: 'index.js' }),
    'lib/index.js': 'exports.scale = (x) => x * 2;\n',
    'app/package.json': JSON.stringify({ name: 'app', private: true }),
    'app/main.js': `
      const { memo } = require(HITSAVE);
      const { scale } = require('teamlib');
      const f = memo(function f(x) { require('node:fs').appendFileSync(__dirname + '/runs.txt', 'x'); return scale(x); });
      console.log(JSON.stringify(f(3)));
    `,
  });
  const npm = (cwd, ...args) => {
    const result = spawnSync('npm', [...args, '--offline', '--no-audit', '--no-fund', '--silent'], {
      cwd: path.join(project.root, cwd),
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.strictEqual(result.status, 0, `npm ${args.join(' ')}: ${result.stderr}`);
  };
  const install = () => {
    npm('lib', 'pack');
    npm('app', 'install', '../lib/teamlib-1.0.0.tgz');
  };
  install();
  assert.strictEqual(project.run('app/main.js').out, 6);
  assert.strictEqual(project.run('app/main.js').out, 6);
  project.write({ 'lib/index.js': 'exports.scale = (x) => x * 5;\n' });
  install();
  assert.strictEqual(project.run('app/main.js').out, 15, 'the package installed again is another package');
  assert.strictEqual(fs.readFileSync(path.join(project.root, 'app', 'runs.txt'), 'utf8'), 'xx');
});

test("a native addon the project builds counts by the built file's contents", (t) => {
  // `require('./build/Release/addon.node')` (node-gyp, napi-rs output): it
  // was refused with code_unavailable (not text); rebuilt with other
  // behaviour it must miss.
  const include = ['/usr/include/node', path.join(path.dirname(process.execPath), '..', 'include', 'node')].find((dir) =>
    fs.existsSync(path.join(dir, 'node_api.h')),
  );
  const compiler = ['cc', 'gcc'].find((name) => spawnSync(name, ['--version']).status === 0);
  if (!include || !compiler) {
    t.skip('no C compiler or Node headers');
    return;
  }
  const project = new Project({
    'addon.c': `#include <node_api.h>
static napi_value Scale(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value args[1]; napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  double x; napi_get_value_double(env, args[0], &x);
  napi_value out; napi_create_double(env, x * FACTOR, &out); return out;
}
static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn; napi_create_function(env, "scale", NAPI_AUTO_LENGTH, Scale, NULL, &fn);
  napi_set_named_property(env, exports, "scale", fn); return exports;
}
NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
`,
    'main.js': `
      const { memo } = require(HITSAVE);
      const addon = require('./build/Release/addon.node');
      const f = memo(function f(x) { require('node:fs').appendFileSync(__dirname + '/runs.txt', 'x'); return addon.scale(x); });
      console.log(JSON.stringify(f(3)));
    `,
  });
  const build = (factor) => {
    fs.mkdirSync(path.join(project.root, 'build', 'Release'), { recursive: true });
    const result = spawnSync(
      compiler,
      ['-shared', '-fPIC', '-O1', `-DFACTOR=${factor}`, '-DNODE_GYP_MODULE_NAME=addon', `-I${include}`, 'addon.c', '-o', 'build/Release/addon.node'],
      { cwd: project.root, encoding: 'utf8' },
    );
    assert.strictEqual(result.status, 0, result.stderr);
  };
  build(2);
  assert.strictEqual(project.run('main.js').out, 6);
  assert.strictEqual(project.run('main.js').out, 6);
  build(5);
  assert.strictEqual(project.run('main.js').out, 15, 'the rebuilt addon misses');
  assert.strictEqual(fs.readFileSync(path.join(project.root, 'runs.txt'), 'utf8'), 'xx');
});
