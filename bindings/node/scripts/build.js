#!/usr/bin/env node
'use strict';
// Builds the native addon with cargo and puts it where index.js loads it.
//
//   node scripts/build.js          release build (`npm run build`: a source build, when asked)
//   node scripts/build.js --dev    dev profile, sharing the workspace's target/
//                                  with `cargo test` (what scripts/test.sh runs)
//
// CARGO_TARGET_DIR is honoured, so one target directory serves the
// workspace, maturin and this build.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const dev = process.argv.includes('--dev') || process.env.HITSAVE_NODE_PROFILE === 'dev';
const root = path.resolve(__dirname, '..', '..', '..');
const args = ['build', '--locked', '-p', 'hitsave-node'];
if (!dev) args.push('--release');
const probe = spawnSync('cargo', ['--version'], { encoding: 'utf8' });
const version = /cargo (\d+)\.(\d+)/.exec(probe.stdout || '');
if (!version || Number(version[1]) < 1 || (Number(version[1]) === 1 && Number(version[2]) < 95)) {
  const found = probe.error ? 'no cargo on PATH' : `found ${String(probe.stdout).trim() || 'a cargo that does not run'}`;
  console.error(`hitsave: building the addon from source needs Rust 1.95 or newer (${found}): install it from https://rustup.rs`);
  process.exit(1);
}
const built = spawnSync('cargo', args, { cwd: root, stdio: 'inherit' });
if (built.status !== 0) {
  console.error(`hitsave: cargo ${args.join(' ')} failed`);
  process.exit(built.status || 1);
}
const target = process.env.CARGO_TARGET_DIR
  ? path.resolve(root, process.env.CARGO_TARGET_DIR)
  : path.join(root, 'target');
const library = path.join(target, dev ? 'debug' : 'release',
  process.platform === 'darwin' ? 'libhitsave_node.dylib'
    : process.platform === 'win32' ? 'hitsave_node.dll' : 'libhitsave_node.so');
const destination = path.join(__dirname, '..', 'hitsave.node');
// Copy to a temporary name and rename, so a running process never loads half a file.
fs.copyFileSync(library, `${destination}.tmp`);
fs.renameSync(`${destination}.tmp`, destination);
console.log(`hitsave: built ${path.relative(process.cwd(), destination)} (${dev ? 'dev' : 'release'})`);
