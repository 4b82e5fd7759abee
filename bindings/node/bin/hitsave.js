#!/usr/bin/env node
'use strict';
// The `hitsave` CLI (one implementation, in Rust: docs/cli.md).
const { _native } = require('..');
process.exitCode = _native.cliMain(['hitsave', ...process.argv.slice(2)]);
