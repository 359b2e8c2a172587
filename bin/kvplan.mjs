#!/usr/bin/env node
// Runs the built CLI (dist/, emitted by `npm run build`, which `npm ci`, `npm pack` and `npm test`
// run). A clone that was never built gets a one-line answer rather than a module-not-found trace.
let main;
try {
  ({ main } = await import('../dist/cli/main.js'));
} catch (e) {
  if (e?.code !== 'ERR_MODULE_NOT_FOUND' || !String(e.message).includes('dist/cli/main.js')) throw e;
  process.stderr.write('kvplan: not built: run `npm run build` (or `npm ci`) in the kvplan directory\n');
  process.exit(70);
}
process.exitCode = await main(process.argv.slice(2));
