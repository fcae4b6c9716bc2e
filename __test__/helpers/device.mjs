// A headless "second device" for the OAuth device authorization grant (RFC 8628) against
// oidc-provider (examples/idp.mjs): open the verification URI, enter or confirm the user
// code, log in and consent through devInteractions, and stop at the success page.
//
//   import { completeDeviceLogin, parseDevicePrompt } from './helpers/device.mjs';
//   const prompt = parseDevicePrompt(proxyStderr);     // { uri, userCode, complete }
//   await completeDeviceLogin(prompt.complete ?? prompt.uri, prompt.userCode);
//
// oidc-provider's pages, in order:
//   GET  /device?user_code=X  → an auto-submitting form (xsrf, user_code)
//   GET  /device              → the code input form (xsrf, user_code to type)
//   POST /device              → the confirm form (xsrf, user_code, confirm=yes; abort=yes denies)
//   POST /device confirm=yes  → redirects to /interaction/<uid>: login form, consent form
//   ...                       → /device/resume/... → "Sign-in Success" page

import { CookieJar, fetchHop, parseForm } from './browser.mjs';

/**
 * Find the device login prompt the proxy printed on stderr:
 *   "to log in, open <verification_uri> and enter the code <user_code>"
 *   "(or open <verification_uri_complete>)"
 * @returns {{uri: string, userCode: string, complete?: string} | undefined}
 */
export function parseDevicePrompt(text) {
  const m = /to log in, open (\S+) and enter the code (\S+)/.exec(text);
  if (!m) return undefined;
  const complete = /\(or open (\S+?)\)/.exec(text)?.[1];
  return { uri: m[1], userCode: m[2], ...(complete && { complete }) };
}

/**
 * Complete a device login in a headless "browser".
 * @param {string} url        verification_uri_complete, or verification_uri
 * @param {string} [userCode] typed into the input form when `url` does not carry it
 * @param {object} [opts]
 * @param {'login'|'deny'|'deny-consent'} [opts.action='login']  deny: abort at the code
 *                            confirmation; deny-consent: abort at the consent prompt
 * @param {string} [opts.user='alice']
 * @param {string} [opts.password='secret']
 * @param {number} [opts.timeoutMs=20000]  for the whole walk
 * @returns {Promise<{outcome: 'success'|'denied', pages: string[]}>}  `pages`: titles seen
 */
export async function completeDeviceLogin(url, userCode, opts = {}) {
  const { action = 'login', user = 'alice', password = 'secret', timeoutMs = 20_000 } = opts;
  const signal = AbortSignal.timeout(timeoutMs);
  const jar = new CookieJar();
  const pages = [];
  let next = { url, method: 'GET', body: undefined };

  for (let hop = 0; hop < 30; hop += 1) {
    const hop = await fetchHop(jar, next, signal);
    if (hop.redirect) {
      next = hop.redirect;
      continue;
    }
    const { res, html } = hop;
    const title = /<title>([^<]*)<\/title>/i.exec(html)?.[1]?.trim() ?? '';
    pages.push(title);
    if (/Sign-in Success/i.test(title)) return { outcome: 'success', pages };
    const form = parseForm(html, next.url);
    if (!form) {
      if (/access_denied|interrupted|aborted/i.test(html) && action !== 'login') return { outcome: 'denied', pages };
      throw new Error(`device login: no form on ${next.url} (${res.status} "${title}"): ${html.slice(0, 300)}`);
    }
    const f = form.fields;
    const post = (fields) => ({ url: form.action, method: 'POST', body: new URLSearchParams(fields).toString() });
    if (f.prompt === 'login') {
      next = post({ ...f, login: user, password });
    } else if (f.prompt === 'consent') {
      if (action === 'deny-consent') {
        const abort = /href="([^"]*\/abort)"/.exec(html)?.[1];
        next = { url: new URL(abort ?? `${new URL(form.action).pathname.replace(/\/submit$/, '')}/abort`, next.url).href, method: 'GET' };
      } else {
        next = post(f);
      }
    } else if (f.confirm === 'yes' && 'user_code' in f) {
      // The confirmation page ("Confirm Device"): continue, or abort.
      if (action === 'deny') {
        const { confirm: _c, ...rest } = f;
        const r = await fetch(form.action, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', ...(jar.header(form.action) && { cookie: jar.header(form.action) }) },
          body: new URLSearchParams({ ...rest, abort: 'yes' }).toString(),
          redirect: 'manual',
          signal,
        });
        const body = await r.text();
        pages.push(/<title>([^<]*)<\/title>/i.exec(body)?.[1]?.trim() ?? '');
        if (!/interrupted/i.test(body)) throw new Error(`device login: abort not acknowledged (${r.status}): ${body.slice(0, 300)}`);
        return { outcome: 'denied', pages };
      }
      next = post(f);
    } else if ('xsrf' in f && 'user_code' in f) {
      // The auto-submitting form (code in the URL) or the code input form.
      if (!f.user_code) {
        if (!userCode) throw new Error('device login: the page asks for the user code, and none was given');
        f.user_code = userCode;
      }
      next = post(f);
    } else {
      throw new Error(`device login: unknown form on ${next.url} (${title}): ${JSON.stringify(Object.keys(f))}`);
    }
  }
  throw new Error('device login: too many steps');
}
