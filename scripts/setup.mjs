#!/usr/bin/env node
// Set-up for `npm test`, `npm run demo` and `npm run bench` on a fresh clone: installs the
// npm dependencies when missing and (re)builds the native addon when the Rust sources are
// newer than it. `--deps`: dependencies only. `--release` / AUTHFUL_BUILD_PROFILE=debug
// choose the build profile (default: release, what users get).
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, statSync, readFileSync, writeFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const say = (m) => process.stderr.write(`setup: ${m}\n`)
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'

function mtime(p) {
  try {
    return statSync(p).mtimeMs
  } catch {
    return 0
  }
}

function newest(dir) {
  let t = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    t = Math.max(t, e.isDirectory() ? newest(p) : mtime(p))
  }
  return t
}

// 1. npm dependencies.
const lock = join(root, 'package-lock.json')
const installed = join(root, 'node_modules', '.package-lock.json')
if (!existsSync(installed) || mtime(lock) > mtime(installed)) {
  say('installing npm dependencies')
  execFileSync(npm, ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: ['ignore', 2, 2] })
}
if (args.includes('--deps')) process.exit(0)

// 2. The native addon.
const profile = args.includes('--release') ? 'release' : process.env.AUTHFUL_BUILD_PROFILE || 'release'
const node = readdirSync(root).find((f) => /^authful-mcp-proxy\..*\.node$/.test(f))
const stampFile = join(root, 'target', '.authful-build-profile')
const stamp = existsSync(stampFile) ? readFileSync(stampFile, 'utf8').trim() : ''
const sources = Math.max(newest(join(root, 'src')), mtime(join(root, 'Cargo.toml')), mtime(join(root, 'Cargo.lock')), mtime(join(root, 'build.rs')))
if (node && stamp === profile && mtime(join(root, node)) >= sources) process.exit(0)

say(`building the native addon (${profile}); the first build takes a few minutes`)
const napiArgs = ['napi', 'build', '--platform', '--js', 'binding.js', '--dts', 'binding.d.ts']
if (profile === 'release') napiArgs.push('--release')
execFileSync(process.platform === 'win32' ? 'npx.cmd' : 'npx', napiArgs, { cwd: root, stdio: ['ignore', 2, 2] })
writeFileSync(stampFile, profile)
