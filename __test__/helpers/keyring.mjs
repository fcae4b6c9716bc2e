// A real Secret Service for the keychain tests: gnome-keyring-daemon on a private session bus
// (`dbus-run-session`), plus the two broken buses a keychain must survive: one without a
// Secret Service (no service files, so nothing is activated) and a socket that never answers.

import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { within } from './stdio.mjs';

const TOOLS = ['dbus-run-session', 'dbus-send', 'gnome-keyring-daemon', 'secret-tool'];

/** False when the tools are there, else why the keychain tests cannot run. */
export function secretServiceMissing() {
  const missing = TOOLS.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  return missing.length > 0 && `not installed: ${missing.join(', ')} (Debian: apt-get install dbus gnome-keyring libsecret-tools)`;
}

// Runs inside dbus-run-session: start and unlock the keyring, wait until it owns its name on
// the bus (else the bus would activate a second daemon), report, and live until stdin closes.
const KEYRING_SCRIPT = `
echo -n pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1
ask() { dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus "org.freedesktop.DBus.$1" string:org.freedesktop.secrets 2>/dev/null; }
for i in $(seq 100); do ask NameHasOwner | grep -q 'boolean true' && break; sleep 0.1; done
pid=$(ask GetConnectionUnixProcessID | awk '/uint32/ { print $2 }')
echo "READY \${pid:-0} $DBUS_SESSION_BUS_ADDRESS"
read -r _
`;

const BARE_SCRIPT = `
echo "READY 0 $DBUS_SESSION_BUS_ADDRESS"
read -r _
`;

// A session bus with no service directories: nothing can be activated on it.
const BARE_CONFIG = (socket) => `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`;

/**
 * A private session bus, with an unlocked gnome-keyring on it (`keyring: true`) or nothing
 * (`keyring: false`). Stopped after the test `t`.
 * @returns {Promise<{ env: object, lock: () => object, secretTool: (args: string[]) => { code: number, stdout: string, stderr: string } }>}
 */
export async function startSessionBus(t, { keyring = true } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'authful-bus-'));
  const runtime = join(dir, 'run');
  spawnSync('mkdir', ['-m', '700', runtime]);
  const args = [];
  if (!keyring) {
    const config = join(dir, 'bus.conf');
    writeFileSync(config, BARE_CONFIG(join(dir, 'bus.sock')));
    args.push(`--config-file=${config}`);
  }
  const child = spawn('dbus-run-session', [...args, '--', 'bash', '-c', keyring ? KEYRING_SCRIPT : BARE_SCRIPT], {
    // The keyring's files go to this test's own HOME.
    env: { PATH: process.env.PATH, HOME: dir, XDG_RUNTIME_DIR: runtime, XDG_DATA_HOME: join(dir, 'data') },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const ready = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = /READY (\d+) (\S+)/.exec(out);
      if (m) resolve({ pid: Number(m[1]), address: m[2] });
    });
    child.on('exit', (code) => reject(new Error(`dbus-run-session exited (${code}): ${err}`)));
  });
  const { pid, address } = await within(ready, 15_000, `the session bus to start (stderr: ${err})`);
  t.after(async () => {
    child.stdin.end();
    await within(new Promise((r) => (child.exitCode !== null ? r() : child.on('exit', r))), 5000, 'the bus to stop')
      .catch(() => child.kill('SIGKILL'));
    // The keyring daemon ends with its bus; make sure of it (this pid is the one we started).
    if (pid > 0) { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }
    rmSync(dir, { recursive: true, force: true });
  });
  const env = { DBUS_SESSION_BUS_ADDRESS: address, XDG_RUNTIME_DIR: runtime };
  return {
    env,
    /** Lock the login keyring: unlocking it again would need a password prompt. */
    lock() {
      const r = spawnSync('dbus-send', ['--session', '--print-reply', '--dest=org.freedesktop.secrets', '/org/freedesktop/secrets',
        'org.freedesktop.Secret.Service.Lock', 'array:objpath:/org/freedesktop/secrets/collection/login'],
      { env: { PATH: process.env.PATH, HOME: dir, ...env }, encoding: 'utf8', timeout: 10_000 });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    },
    secretTool(toolArgs, input) {
      const r = spawnSync('secret-tool', toolArgs, { env: { PATH: process.env.PATH, HOME: dir, ...env }, input, encoding: 'utf8', timeout: 10_000 });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    },
  };
}

/** A "bus" that accepts connections and never says a word. Closed after the test `t`. */
export async function startSilentBus(t) {
  const dir = mkdtempSync(join(tmpdir(), 'authful-silent-bus-'));
  const socket = join(dir, 'bus.sock');
  const sockets = new Set();
  const server = net.createServer((s) => { sockets.add(s); s.on('error', () => {}); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve) => server.listen(socket, resolve));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });
  return { env: { DBUS_SESSION_BUS_ADDRESS: `unix:path=${socket}`, XDG_RUNTIME_DIR: dir }, connections: () => sockets.size };
}
