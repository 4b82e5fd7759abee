'use strict';
// A real project on disk, run in fresh Node processes against one store.
const { spawnSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const PACKAGE = path.resolve(__dirname, '..');

// Every project directory this test process made, removed when it exits
// (HITSAVE_KEEP_TEST_DIRS=1 keeps them to look at).
const ROOTS = [];
process.on('exit', () => {
  if (process.env.HITSAVE_KEEP_TEST_DIRS === '1') return;
  for (const root of ROOTS) fs.rmSync(root, { recursive: true, force: true, maxRetries: 2 });
});

class Project {
  constructor(files = {}) {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'hitsave-node-'));
    ROOTS.push(this.root);
    this.cache = path.join(this.root, '.cache');
    this.write({ 'package.json': JSON.stringify({ name: 'project', private: true }), ...files });
  }

  write(files) {
    for (const [name, text] of Object.entries(files)) {
      const file = path.join(this.root, name);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text.replaceAll('HITSAVE', JSON.stringify(PACKAGE)));
    }
  }

  env(extra = {}) {
    return { ...process.env, HITSAVE_CACHE_DIR: this.cache, ...extra };
  }

  /** Runs a script; returns its stdout parsed as JSON lines (or throws with stderr). */
  run(file, { env = {}, expectFailure = false, args = [] } = {}) {
    const result = spawnSync(process.execPath, [path.join(this.root, file), ...args], {
      cwd: this.root,
      env: this.env(env),
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (!expectFailure && result.status !== 0) {
      throw new Error(`${file} exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
    }
    const lines = result.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line));
    return { lines, out: lines[lines.length - 1], stderr: result.stderr, status: result.status };
  }

  /** Runs the `hitsave` CLI from the Node package. */
  cli(...args) {
    const result = spawnSync(process.execPath, [path.join(PACKAGE, 'bin', 'hitsave.js'), ...args], {
      cwd: this.root,
      env: this.env(),
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  spawn(file, env = {}) {
    return spawn(process.execPath, [path.join(this.root, file)], { cwd: this.root, env: this.env(env) });
  }
}

module.exports = { Project, PACKAGE };
