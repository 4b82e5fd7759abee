'use strict';
// The code graph is rooted at the function passed to memo(), wherever memo()
// is called from: never at the helper that called it. A real project on
// disk, fresh processes, one store.
const test = require('node:test');
const assert = require('node:assert');
const { Project } = require('./helpers');

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
