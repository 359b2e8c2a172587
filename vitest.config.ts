import './src/dsl/polyfill.ts';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    // Set-up hooks compile the native primitives into a fresh cache (gcc -O3 of the whole library,
    // per build): about 10 s on the 2-core CI machine, more when another process takes a core.
    hookTimeout: 120_000,
    globalSetup: ['./test/support/buildDist.ts'],
  },
});
