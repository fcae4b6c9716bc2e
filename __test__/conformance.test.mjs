// The official MCP conformance suite (@modelcontextprotocol/conformance, pinned in
// package.json) against the proxy: every client scenario, one at a time, with
// __test__/conformance/client.mjs (an SDK Client spawning `node cli.js`) as the client.
// A scenario passes when the suite's run exits 0 with at least one SUCCESS check (and the
// ones REQUIRED below) and no FAILURE or WARNING check (the suite counts warnings as failures).
// __test__/conformance/expected-failures.json lists scenarios allowed to fail, with the
// reason; one of those that passes fails its test, so the list gets trimmed as features land.
// Env: CONFORMANCE_PROXY_CLI (the proxy's cli.js), CONFORMANCE_SCENARIOS (comma-separated
// subset), CONFORMANCE_RESULTS_DIR (keep the suite's per-scenario output there).

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = join(dirname(fileURLToPath(import.meta.url)), 'conformance');
const SUITE = join(
  dirname(createRequire(import.meta.url).resolve('@modelcontextprotocol/conformance/package.json')),
  'dist',
  'index.js',
);
const REGISTER = join(HERE, 'node20-fs-register.mjs');
const CLIENT = join(HERE, 'client.mjs');
const EXPECTED = JSON.parse(readFileSync(join(HERE, 'expected-failures.json'), 'utf8'));
/** SUCCESS checks we insist on where the suite's own verdict can pass vacuously. */
const REQUIRED = {
  // The suite adds no check at all when initialize never arrives.
  initialize: ['mcp-client-initialization'],
  // "No authorization request" also holds for a proxy that never started: it must have read
  // the mismatched metadata and refused.
  'auth/resource-mismatch': ['prm-pathbased-requested'],
};
const RUNNER_TIMEOUT_MS = 25_000; // the suite kills the client after this
const TEST_TIMEOUT_MS = 60_000;

/** `conformance …` with the Node 20 shim; resolves to { code, stdout, stderr }. */
function suite(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', REGISTER, SUITE, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code, signal) => resolve({ code: code ?? signal, stdout, stderr }));
  });
}

function listScenarios() {
  const r = spawnSync(process.execPath, ['--import', REGISTER, SUITE, 'list', '--client'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `conformance list failed: ${r.stderr}`);
  return [...r.stdout.matchAll(/^\s+- (\S+)/gm)].map((m) => m[1]);
}

function findChecks(dir) {
  const hit = readdirSync(dir, { recursive: true }).find((p) => String(p).endsWith('checks.json'));
  return hit ? JSON.parse(readFileSync(join(dir, String(hit)), 'utf8')) : null;
}

const ALL = listScenarios();
const ONLY = process.env.CONFORMANCE_SCENARIOS?.split(',').map((s) => s.trim()).filter(Boolean);
const SCENARIOS = ONLY ? ALL.filter((s) => ONLY.includes(s)) : ALL;
const RESULTS = process.env.CONFORMANCE_RESULTS_DIR || mkdtempSync(join(tmpdir(), 'authful-conformance-results-'));
mkdirSync(RESULTS, { recursive: true });
const table = [];

for (const c of [CLIENT, REGISTER, SUITE]) {
  // The suite splits --command on spaces and runs it with `sh -c`.
  assert.ok(!/\s/.test(c) && !/\s/.test(process.execPath), `conformance harness paths may not contain spaces: ${c}`);
}

test('conformance: the suite lists client scenarios and expected-failures.json names only those', () => {
  assert.ok(ALL.length >= 20, `scenarios: ${ALL.join(', ')}`);
  for (const [name, reason] of Object.entries(EXPECTED)) {
    assert.ok(ALL.includes(name), `expected-failures.json names an unknown scenario: ${name}`);
    assert.ok(typeof reason === 'string' && reason.length > 10, `expected failure ${name} needs a reason`);
  }
});

for (const scenario of SCENARIOS) {
  test(`conformance: ${scenario}`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const out = join(RESULTS, scenario.replaceAll('/', '_'));
    mkdirSync(out, { recursive: true });
    const r = await suite([
      'client',
      '--command', `exec ${process.execPath} ${CLIENT}`,
      '--scenario', scenario,
      '--timeout', String(RUNNER_TIMEOUT_MS),
      '-o', out,
    ]);
    const checks = findChecks(out) ?? [];
    const bad = checks.filter((c) => c.status === 'FAILURE' || c.status === 'WARNING');
    const good = checks.filter((c) => c.status === 'SUCCESS');
    const problems = bad.map((c) => `${c.status} ${c.id}: ${c.description}${c.errorMessage ? ` (${c.errorMessage})` : ''}`);
    if (/CLIENT TIMED OUT/.test(r.stderr)) problems.push(`client timed out after ${RUNNER_TIMEOUT_MS} ms`);
    const exited = r.stderr.match(/Client exited with code (\S+)/);
    if (exited) problems.push(`client exited with code ${exited[1]}`);
    if (r.code !== 0 && problems.length === 0) problems.push(`suite exited ${r.code}`);
    if (good.length === 0) problems.push('no SUCCESS check');
    const missing = (REQUIRED[scenario] ?? []).filter((id) => !good.some((c) => c.id === id));
    for (const id of missing) problems.push(`missing SUCCESS check ${id}`);
    const passed = r.code === 0 && bad.length === 0 && good.length > 0 && missing.length === 0;
    const expected = EXPECTED[scenario];
    const verdict = passed ? (expected ? 'PASS (listed as expected failure!)' : 'pass') : expected ? 'expected-fail' : 'FAIL';
    table.push({ scenario, verdict, ok: good.length, bad: bad.length });
    t.diagnostic(`${verdict}: ${good.length} ok, ${bad.length} failed/warned`);
    for (const p of problems) t.diagnostic(p);

    if (passed && expected) {
      assert.fail(`${scenario} now passes: remove it from __test__/conformance/expected-failures.json (was: ${expected})`);
    }
    if (!passed && !expected) {
      const tail = r.stderr.split('\n').slice(-40).join('\n');
      assert.fail(`${scenario} failed:\n  ${problems.join('\n  ')}\n--- suite stderr (tail) ---\n${tail}`);
    }
  });
}

function summary() {
  const w = Math.max(...table.map((r) => r.scenario.length), 8);
  const passed = table.filter((r) => r.verdict === 'pass').length;
  return [
    `MCP conformance (client scenarios): ${passed}/${table.length} pass`,
    ...table.map((r) => `  ${r.scenario.padEnd(w)}  ${r.verdict}  (${r.ok} ok, ${r.bad} failed/warned)`),
  ];
}

// The table, in the report (diagnostics) and on stderr, so a CI log shows it either way.
test('conformance: summary table', (t) => {
  const lines = summary();
  for (const l of lines) process.stderr.write(`${l}\n`);
  for (const l of lines) t.diagnostic(l);
  assert.equal(table.length, SCENARIOS.length, 'every scenario ran');
});

after(() => {
  if (!process.env.CONFORMANCE_RESULTS_DIR && existsSync(RESULTS)) rmSync(RESULTS, { recursive: true, force: true });
  else process.stderr.write(`conformance results kept in ${RESULTS}\n`);
});
