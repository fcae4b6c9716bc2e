#!/usr/bin/env node
// The Python virtual environment the modern-era tests drive the proxy with: the official
// Python MCP SDK 2.x client (`mcp`). Idempotent: a venv whose stamp names the wanted
// packages is reused; anything else is rebuilt. Prints the venv's python path.
//
//   node scripts/pyenv.mjs            create or reuse target/pyenv, print its python
//   import { pythonEnv } from '../scripts/pyenv.mjs'; const py = await pythonEnv();

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Exact versions, as for npm devDependencies. */
export const PY_PACKAGES = ['mcp==2.3.0'];
const DIR = join(ROOT, 'target', 'pyenv');
const STAMP = join(DIR, 'authful-stamp.txt');
const PYTHON = process.platform === 'win32' ? join(DIR, 'Scripts', 'python.exe') : join(DIR, 'bin', 'python');

/** The venv's python, after creating or updating the venv if needed. Throws with pip's output. */
export function pythonEnv({ quiet = true } = {}) {
  const want = PY_PACKAGES.join('\n');
  if (existsSync(PYTHON) && existsSync(STAMP) && readFileSync(STAMP, 'utf8') === want) return PYTHON;
  rmSync(DIR, { recursive: true, force: true });
  const stdio = quiet ? ['ignore', 'pipe', 'pipe'] : 'inherit';
  const python3 = process.env.PYTHON || 'python3';
  execFileSync(python3, ['-m', 'venv', DIR], { stdio });
  execFileSync(PYTHON, ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '-q', ...PY_PACKAGES], {
    stdio, timeout: 600_000,
  });
  writeFileSync(STAMP, want);
  return PYTHON;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    console.log(pythonEnv({ quiet: false }));
  } catch (e) {
    console.error(`pyenv: ${e.message}`);
    process.exitCode = 1;
  }
}
