#!/usr/bin/env node
// Committed launcher so `npx keyleash` is linked at install time, before the first build.
import('../dist/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    process.stderr.write('keyleash: not built yet; run `npm run build` first\n');
    process.exit(2);
  }
  throw err;
});
