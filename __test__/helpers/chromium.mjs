#!/usr/bin/env node
// A real browser for tests: Debian's Chromium driven by playwright-core.
//
//   import { chromiumLogin } from './chromium.mjs';
//   const { text, screenshot } = await chromiumLogin(authorizationUrl);
//
// As $BROWSER: BROWSER="node /abs/path/__test__/helpers/chromium.mjs" — like browser.mjs
// it returns at once and a detached worker drives Chromium (same BROWSER_USER,
// BROWSER_LOG, BROWSER_PIDS knobs; BROWSER_ACTION supports login|deny|ignore).
//
// Chromium must be at /usr/bin/chromium (apt-get install -y chromium); `npx playwright
// install` cannot download browsers here.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { browserMain, logEvent } from './browser.mjs';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const chromiumAvailable = () => existsSync(CHROMIUM_PATH);

// Without the networking flags Chromium keeps trying to reach Google services.
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const sameEndpoint = (candidate, redirectUri) => {
  try {
    const a = new URL(candidate);
    const b = new URL(redirectUri);
    return a.origin === b.origin && a.pathname === b.pathname;
  } catch {
    return false;
  }
};

/**
 * Log in through oidc-provider's devInteractions pages with a real Chromium and wait
 * for the loopback redirect_uri page.
 * @param {string} url  authorization request URL
 * @param {object} [opts]
 * @param {string} [opts.user='alice']
 * @param {'login'|'deny'} [opts.action='login']
 * @param {number} [opts.timeoutMs=30000]
 * @param {string} [opts.screenshotDir]  default: a new temp dir
 * @returns {Promise<{text: string, screenshot: string, callbackUrl: string, status?: number}>}
 */
export async function chromiumLogin(url, opts = {}) {
  const { user = 'alice', action = 'login', timeoutMs = 30_000 } = opts;
  const { chromium } = await import('playwright-core');
  const redirectUri = new URL(url).searchParams.get('redirect_uri');
  const profile = mkdtempSync(join(tmpdir(), 'authful-chromium-'));
  const shots = opts.screenshotDir ?? mkdtempSync(join(tmpdir(), 'authful-shot-'));
  // launchPersistentContext = a fresh, empty --user-data-dir we control.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: timeoutMs,
  });
  try {
    const page = context.pages()[0] ?? await context.newPage();
    page.setDefaultTimeout(timeoutMs);
    // Watch the navigation to the redirect_uri: its response, or its failure (listener
    // not up yet => connection refused => Chromium error page).
    let callbackUrl;
    let status;
    let failed = false;
    page.on('request', (req) => {
      if (req.isNavigationRequest() && sameEndpoint(req.url(), redirectUri)) callbackUrl ??= req.url();
    });
    page.on('response', (res) => {
      if (res.request().isNavigationRequest() && sameEndpoint(res.url(), redirectUri)) status = res.status();
    });
    page.on('requestfailed', (req) => {
      if (req.isNavigationRequest() && sameEndpoint(req.url(), redirectUri)) failed = true;
    });

    await page.goto(url);
    await page.fill('input[name="login"]', user);
    await page.fill('input[name="password"]', 'secret');
    await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
    // Consent page ("Authorize").
    await page.waitForSelector('input[name="prompt"][value="consent"]', { state: 'attached' });
    if (action === 'deny') await page.click('a[href$="/abort"]');
    else await page.click('button[type="submit"]');

    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const deadline = Date.now() + timeoutMs;
    while (status === undefined && !failed) {
      if (Date.now() > deadline) throw new Error('never reached the redirect_uri');
      await sleep(25);
    }
    // Retry "connection refused" for up to 10 s.
    const retryUntil = Date.now() + 10_000;
    while (status === undefined && Date.now() < retryUntil) {
      await sleep(200);
      const r = await page.goto(callbackUrl).catch(() => null);
      if (r) status = r.status();
    }
    if (status === undefined) throw new Error(`callback ${callbackUrl} unreachable`);
    await page.waitForLoadState('load').catch(() => {});
    const text = await page.evaluate(() => document.body?.innerText ?? '');
    const screenshot = join(shots, `callback-${Date.now()}.png`);
    await page.screenshot({ path: screenshot });
    return { text, screenshot, callbackUrl, status };
  } finally {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

const thisFile = fileURLToPath(import.meta.url);
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await browserMain(thisFile, process.argv.slice(2), async (url) => {
    const action = process.env.BROWSER_ACTION || 'login';
    if (action === 'ignore') return;
    const r = await chromiumLogin(url, { user: process.env.BROWSER_USER || 'alice', action });
    logEvent(process.env.BROWSER_LOG, { event: 'callback', status: r.status ?? 200, body: r.text.slice(0, 200), url: r.callbackUrl, screenshot: r.screenshot });
  });
}
