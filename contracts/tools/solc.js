#!/usr/bin/env node
// forge's `solc` for machines without a native compiler: answers the two
// ways forge calls solc (`--version`, `--standard-json` on stdin) with the
// npm `solc` package (solc-js, wasm), offline. Imports are resolved against
// --base-path, --include-path and --allow-paths, like native solc.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require(path.join(__dirname, '..', 'node_modules', 'solc'));

// Writes every byte: process.stdout.write + exit truncates large outputs.
function writeAll(text) {
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(1, buf, off, buf.length - off);
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e;
    }
  }
}

const args = process.argv.slice(2);
if (args.includes('--version')) {
  writeAll('solc, the solidity compiler commandline interface\nVersion: ' + solc.version() + '\n');
  process.exit(0);
}
if (!args.includes('--standard-json')) {
  process.stderr.write('tools/solc.js: expected --version or --standard-json, found ' + args.join(' ') + '\n');
  process.exit(2);
}
const roots = [];
for (let i = 0; i < args.length; i++) {
  if (['--base-path', '--include-path', '--allow-paths'].includes(args[i]) && args[i + 1]) {
    for (const p of args[i + 1].split(',')) roots.push(p);
    i++;
  }
}
roots.push(process.cwd());
function findImports(p) {
  const candidates = path.isAbsolute(p) ? [p] : roots.map((r) => path.join(r, p));
  for (const c of candidates) {
    try {
      return { contents: fs.readFileSync(c, 'utf8') };
    } catch (_) {
      // try the next root
    }
  }
  return { error: 'file not found: ' + p + ' (searched ' + roots.join(', ') + ')' };
}
const input = fs.readFileSync(0, 'utf8');
writeAll(solc.compile(input, { import: findImports }));
