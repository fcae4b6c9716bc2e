// ESM resolve hook that lets the conformance suite 0.1.16 load on Node 20: its bundle imports
// `globSync` from `fs` (Node 22+), used only by its `tier-check` command. `fs`/`node:fs` is
// served as a re-export of the real module plus a `globSync` that throws if ever called.
// Registered by node20-fs-register.mjs; never imported directly.

const SHIM =
  "import fs from 'node:fs'; export * from 'node:fs'; export default fs;" +
  " export const globSync = () => { throw new Error('fs.globSync needs Node 22 (conformance tier-check)'); };";

export async function resolve(specifier, context, next) {
  const fromShim = context.parentURL?.startsWith('data:');
  if ((specifier === 'fs' || specifier === 'node:fs') && !fromShim) {
    return { url: `data:text/javascript,${encodeURIComponent(SHIM)}`, shortCircuit: true };
  }
  return next(specifier, context);
}
