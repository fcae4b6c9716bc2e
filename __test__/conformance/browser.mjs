#!/usr/bin/env node
// $BROWSER for the conformance scenarios: the suite's authorization servers approve at once and
// answer the authorization URL with a 302 to the redirect URI. So: GET the URL once (no
// redirect following), then GET the Location it names (the proxy's loopback callback),
// retrying "connection refused" briefly. Appends one JSON line per step to $BROWSER_LOG.

import { appendFileSync } from 'node:fs';

const DEADLINE = Date.now() + 15_000;

function log(event) {
  if (!process.env.BROWSER_LOG) return;
  try {
    appendFileSync(process.env.BROWSER_LOG, `${JSON.stringify({ time: Date.now(), ...event })}\n`);
  } catch {
    // diagnostics only
  }
}

async function get(url) {
  for (;;) {
    try {
      return await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(5_000) });
    } catch (e) {
      const refused = e?.cause?.code === 'ECONNREFUSED';
      if (!refused || Date.now() > DEADLINE) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function main() {
  const url = process.argv[2];
  log({ event: 'opened', url });
  const auth = await get(url);
  const location = auth.headers.get('location');
  log({ event: 'authorize', status: auth.status, location });
  if (!location) return;
  const callback = await get(new URL(location, url));
  log({ event: 'callback', status: callback.status, body: (await callback.text()).slice(0, 300) });
}

main().catch((e) => log({ event: 'error', message: String(e?.cause?.message ?? e?.message ?? e) }));
