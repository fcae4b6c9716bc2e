// The servers of `npm run bench`, in their own process (as they would be on another
// machine): the example identity provider, the token-validating SDK backend, the
// instant backend and the 2026-07-28 backend (bench/modern-backend.mjs), all on 127.0.0.1
// with random ports. Started by bench/run.mjs with child_process.fork; talks over IPC:
//   → { type: 'ready', issuer, sdkUrl, sdkMode, instantUrl, modernUrl }
//   ← { type: 'stats' }  → { type: 'stats', idp, instant, sdkSessions }
//   ← { type: 'stop' }   (also on disconnect) → closes everything and exits

import { startIdp } from '../examples/idp.mjs';
import { startBackend } from '../examples/backend.mjs';
import { startInstantBackend } from './instant-backend.mjs';
import { startModernBenchBackend } from './modern-backend.mjs';

const sdkMode = process.env.BENCH_SDK_MODE || 'sse';
const ttl = Number(process.env.BENCH_TOKEN_TTL || 3600);

let issuer;
const sdk = await startBackend({ mode: sdkMode, issuer: () => issuer });
const idp = await startIdp({ resource: sdk.url, accessTokenTtl: ttl });
issuer = idp.issuer;
const instant = await startInstantBackend();
const modern = await startModernBenchBackend();

// The SDK backend keeps a log entry per HTTP request; keep it from growing over the run.
const trim = setInterval(() => { if (sdk.log.length > 1000) sdk.log.splice(0, sdk.log.length - 100); }, 1000);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  clearInterval(trim);
  await Promise.allSettled([sdk.close(), idp.close(), instant.close(), modern.close()]);
  process.exit(0);
}

process.on('message', (m) => {
  if (m?.type === 'stats') {
    const { grantErrors, ...counts } = idp.stats;
    process.send({ type: 'stats', idp: { ...counts, grantErrors: grantErrors.length }, instant: { ...instant.stats, open: instant.sessions.size }, sdkSessions: sdk.sessions.size });
  } else if (m?.type === 'stop') {
    stop();
  }
});
process.on('disconnect', stop);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

process.send({ type: 'ready', issuer: idp.issuer, sdkUrl: sdk.url, sdkMode, instantUrl: instant.url, modernUrl: modern.url });
