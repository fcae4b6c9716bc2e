// Packaging: what `npm publish` ships and what a user's `npm install` gets.
//
// Packs the main package the way the release job publishes it (`napi prepublish` adds the
// eight `@authful-mcp-proxy/binding-*` optionalDependencies at publish time) and this
// machine's platform package with the built `.node` in it, installs both tarballs into an
// empty project with npm offline, then runs the CLI and the API from there. Also checks the
// error a user gets when no binary matches. Nothing is written inside the repository.
//
//   node --test __test__/packaging.test.mjs      (needs a built `authful-mcp-proxy.*.node`)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const { binaryName, packageName } = pkg.napi;
const isWindows = process.platform === 'win32';

// The platform-arch-abi names napi uses for npm/<dir> and the `.node` file (see binding.js).
const SUPPORTED = [
  'linux-x64-gnu', 'linux-arm64-gnu', 'linux-x64-musl', 'linux-arm64-musl',
  'darwin-x64', 'darwin-arm64', 'win32-x64-msvc', 'win32-arm64-msvc',
];

function isMusl() {
  if (process.platform !== 'linux') return false;
  const report = process.report?.getReport?.();
  return !report?.header?.glibcVersionRuntime;
}

function localAbi() {
  const { platform, arch } = process;
  if (platform === 'linux') return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`;
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

const abi = localAbi();
const nodeFile = `${binaryName}.${abi}.node`;
const platformDir = join(root, 'npm', abi);
const missing =
  (!SUPPORTED.includes(abi) && `${abi} is not a configured napi target`) ||
  (!existsSync(join(root, nodeFile)) && `no ${nodeFile} in the repo root (run \`npm run build\` first)`) ||
  (!existsSync(join(platformDir, 'package.json')) && `no npm/${abi}/package.json (run \`npx napi create-npm-dirs\`)`);

// The child processes get no npm_* variables from an outer `npm test`: npm would read them as
// configuration (cache, prefix, …) and act on the wrong folders.
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));

/** Run a command with a bounded timeout; npm/npx are .cmd files on Windows (need a shell). */
function run(cmd, args, { cwd, env = {}, timeout = 120_000 } = {}) {
  const shell = isWindows && (cmd === 'npm' || cmd === 'npx');
  const quoted = shell ? args.map((a) => `"${a}"`) : args;
  const r = spawnSync(cmd, quoted, { cwd, env: { ...cleanEnv, ...env }, encoding: 'utf8', timeout, shell });
  if (r.error) throw r.error;
  return r;
}

function ok(r, what) {
  assert.equal(r.status, 0, `${what} failed (exit ${r.status}, signal ${r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

// npm must not reach a registry: --offline, an empty cache of our own (nothing can come from an
// old one) and an unroutable registry, so that a leak fails fast instead of downloading.
const OFFLINE = ['--offline', '--no-audit', '--no-fund', '--registry', 'http://127.0.0.1:9/'];

const scratch = mkdtempSync(join(tmpdir(), 'authful-packaging-test-'));
const packs = join(scratch, 'packs');
const project = join(scratch, 'project');
let packedFiles; // what `npm pack` puts in the main tarball
let mainTgz;
let platformTgz;

after(() => rmSync(scratch, { recursive: true, force: true }));

before(() => {
  if (missing) return;
  mkdirSync(packs);
  const cache = ['--cache', join(scratch, 'npm-cache')];

  // 1. The main package straight from the repo: `files` decides what goes in.
  const packed = ok(run('npm', ['pack', root, '--json', '--ignore-scripts', '--pack-destination', packs, ...cache], { cwd: scratch }), 'npm pack (repo root)');
  packedFiles = JSON.parse(packed.stdout)[0].files.map((f) => f.path).sort();

  // 2. The same files as published: `napi prepublish` writes the optionalDependencies.
  const staged = join(scratch, 'main');
  for (const f of packedFiles) cpSync(join(root, f), join(staged, f));
  const published = { ...pkg, optionalDependencies: Object.fromEntries(SUPPORTED.map((t) => [`${packageName}-${t}`, pkg.version])) };
  writeFileSync(join(staged, 'package.json'), JSON.stringify(published, null, 2));
  mainTgz = join(packs, JSON.parse(ok(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', packs, ...cache], { cwd: staged }), 'npm pack (main)').stdout)[0].filename);

  // 3. This platform's package: a copy of npm/<abi> plus the built binary (`napi artifacts`
  //    does the same in the release job), so npm/ in the repo stays free of build outputs.
  const plat = join(scratch, 'platform');
  cpSync(platformDir, plat, { recursive: true });
  copyFileSync(join(root, nodeFile), join(plat, nodeFile));
  platformTgz = join(packs, JSON.parse(ok(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', packs, ...cache], { cwd: plat, timeout: 300_000 }), 'npm pack (platform)').stdout)[0].filename);

  // 4. Install both into an empty project. The seven other platform packages are optional and
  //    not in the (empty) cache: offline npm skips them (ENOTCACHED on an optional dependency
  //    is not an error), exactly as it skips them online for a non-matching os/cpu/libc.
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'packaging-probe', version: '1.0.0', private: true }));
  ok(run('npm', ['install', ...OFFLINE, ...cache, mainTgz, platformTgz], { cwd: project, timeout: 300_000 }), 'npm install (offline)');
}, { timeout: 600_000 });

const T = { skip: missing || false, timeout: 120_000 };

test('the main tarball holds exactly what runs: no sources, build outputs, binaries or tests', T, () => {
  const expected = [...pkg.files, 'package.json'];
  // npm always adds these when they exist.
  for (const f of readdirSync(root)) if (/^(readme|license|licence)(\.|$)/i.test(f)) expected.push(f);
  assert.deepEqual(packedFiles, expected.sort());
  for (const f of packedFiles) {
    assert.ok(!/\.node$/.test(f), `binary ${f} in the main tarball`);
    assert.ok(!/^(src|target|npm|__test__|examples|scripts|bench)\//.test(f), `${f} should not ship`);
  }
  assert.ok(packedFiles.includes(pkg.bin['authful-mcp-proxy']), 'the bin script ships');
});

// The size target of the distribution issue, for the one platform this machine builds. Only a
// release build counts (`npm run build:debug` makes a much larger file on purpose).
const profile = (() => {
  try { return readFileSync(join(root, 'target', '.authful-build-profile'), 'utf8').trim(); } catch { return 'unknown'; }
})();
const sizeSkip = missing || (abi !== 'linux-x64-gnu' && 'the 8 MB limit is stated for linux-x64-gnu')
  || (profile !== 'release' && `the addon is a ${profile} build`);
test('the release linux-x64 addon is under 8 MB (the file the platform package ships)', { skip: sizeSkip || false }, () => {
  const bytes = statSync(join(root, nodeFile)).size;
  assert.ok(bytes < 8_000_000, `${nodeFile} is ${bytes} bytes`);
});

test('npm installs the main package and only this platform binding, offline', T, () => {
  const nm = join(project, 'node_modules');
  assert.ok(existsSync(join(nm, 'authful-mcp-proxy', 'cli.js')));
  const scope = packageName.split('/')[0];
  assert.deepEqual(readdirSync(join(nm, scope)), [`${packageName.split('/')[1]}-${abi}`]);
  const installed = JSON.parse(readFileSync(join(nm, packageName + '-' + abi, 'package.json'), 'utf8'));
  assert.equal(installed.main, nodeFile);
  assert.ok(existsSync(join(nm, packageName + '-' + abi, nodeFile)));
  const main = JSON.parse(readFileSync(join(nm, 'authful-mcp-proxy', 'package.json'), 'utf8'));
  assert.equal(Object.keys(main.optionalDependencies).length, SUPPORTED.length);
});

test('`npx authful-mcp-proxy --version` prints the version and exits 0', T, () => {
  const r = run('npx', ['--offline', '--no', '--cache', join(scratch, 'npm-cache'), '--', 'authful-mcp-proxy', '--version'], { cwd: project, timeout: 60_000 });
  ok(r, 'npx authful-mcp-proxy --version');
  assert.match(r.stdout, new RegExp(`authful-mcp-proxy ${pkg.version.replaceAll('.', '\\.')}\\b`));
});

test('`require("authful-mcp-proxy")` loads the binding from the platform package', T, () => {
  const probe = `
    const api = require('authful-mcp-proxy')
    const from = require.resolve('${packageName}-${abi}', { paths: [require.resolve('authful-mcp-proxy')] })
    console.log(JSON.stringify({ run: typeof api.run, shutdown: typeof api.shutdown, runProxy: typeof api.runProxy, from }))`;
  const r = ok(run(process.execPath, ['-e', probe], { cwd: project, timeout: 30_000 }), 'require');
  const got = JSON.parse(r.stdout);
  assert.deepEqual({ ...got, from: undefined }, { run: 'function', shutdown: 'function', runProxy: 'function', from: undefined });
  assert.ok(got.from.includes(join('node_modules', ...`${packageName}-${abi}`.split('/'), nodeFile)), got.from);
});

// What a user sees when no binary loads: an Error with code ERR_NO_BINARY naming this
// platform and the prebuilt list.
function assertNoBinaryError(r) {
  assert.equal(r.status, 0, r.stderr);
  const e = JSON.parse(r.stdout);
  assert.equal(e.code, 'ERR_NO_BINARY', e.message);
  assert.ok(e.isError, 'an Error instance');
  assert.ok(e.message.includes(`${process.platform}-${process.arch}`), `names the platform: ${e.message}`);
  for (const t of SUPPORTED) assert.ok(e.message.includes(t), `lists ${t}: ${e.message}`);
}

const probeError = `
  try { require('authful-mcp-proxy'); console.log(JSON.stringify({ code: 'loaded' })) }
  catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, isError: e instanceof Error })) }`;

test('a bad NAPI_RS_NATIVE_LIBRARY_PATH gives ERR_NO_BINARY naming the platform and the supported list', T, () => {
  const env = { NAPI_RS_NATIVE_LIBRARY_PATH: join(scratch, 'nonexistent', nodeFile) };
  assertNoBinaryError(run(process.execPath, ['-e', probeError], { cwd: project, env, timeout: 30_000 }));
});

test('without any platform package, the API throws ERR_NO_BINARY and the CLI exits 1 with the message', T, () => {
  // The main package alone, as after `npm install --omit=optional` (npm/cli#4828).
  const alone = join(scratch, 'alone');
  cpSync(join(project, 'node_modules', 'authful-mcp-proxy'), join(alone, 'node_modules', 'authful-mcp-proxy'), { recursive: true });
  assertNoBinaryError(run(process.execPath, ['-e', probeError], { cwd: alone, timeout: 30_000 }));

  const r = run(process.execPath, [join(alone, 'node_modules', 'authful-mcp-proxy', 'cli.js'), '--version'], { cwd: alone, timeout: 30_000 });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^authful-mcp-proxy: no native binary of authful-mcp-proxy loads on /);
  assert.ok(r.stderr.includes(`${process.platform}-${process.arch}`), r.stderr);
});

test('npm/<platform> holds exactly what `napi create-npm-dirs` generates from package.json', { timeout: 60_000 }, () => {
  // Generated in a scratch folder from a copy of package.json (napi refuses an --npm-dir
  // outside its working folder), then compared file by file with the committed npm/.
  const gen = join(scratch, 'create-npm-dirs');
  mkdirSync(gen);
  copyFileSync(join(root, 'package.json'), join(gen, 'package.json'));
  const napi = join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js');
  ok(run(process.execPath, [napi, 'create-npm-dirs'], { cwd: gen, env: { DEBUG: '' }, timeout: 60_000 }), 'napi create-npm-dirs');
  const files = (dir) => readdirSync(dir, { recursive: true }).map(String)
    .filter((f) => statSync(join(dir, f)).isFile() && !f.endsWith('.node')).sort();
  const committed = join(root, 'npm');
  const generated = join(gen, 'npm');
  assert.deepEqual(files(committed), files(generated), 'npm/ differs from what napi generates: run `npx napi create-npm-dirs`');
  for (const f of files(generated)) {
    // Windows checkouts may turn LF into CRLF.
    assert.equal(readFileSync(join(committed, f), 'utf8').replace(/\r\n/g, '\n'), readFileSync(join(generated, f), 'utf8'),
      `npm/${f} is stale: run \`npx napi create-npm-dirs\` and commit the result`);
  }
});
