// Tests that spawn the CLI run bin/kvplan.mjs, which runs dist/: a vitest run started without
// `npm test` (a single file, a watch session) must not test a stale build.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  execFileSync(
    process.execPath,
    [fileURLToPath(new URL('../../scripts/build.mjs', import.meta.url)), '--if-stale'],
    {
      stdio: 'inherit',
    },
  );
}
