// `node --import <this file> …/conformance/dist/index.js`: installs node20-fs-hook.mjs when
// this Node has no `fs.globSync` (before 22); on Node 22+ it does nothing.

import fs from 'node:fs';
import { register } from 'node:module';

if (typeof fs.globSync !== 'function') register('./node20-fs-hook.mjs', import.meta.url);
