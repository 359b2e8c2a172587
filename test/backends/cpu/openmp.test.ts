/**
 * The OpenMP wait of the compiled libraries (src/backends/cpu/openmp.ts), as libgomp itself reports
 * it (OMP_DISPLAY_ENV) when it loads: a bounded spin by default, whichever library loads first (a
 * plan's, through the runner, or the primitives alone, as the hardware probe and the benchmarks
 * load them), and the user's own setting when there is one. Each case is a child Node process,
 * since libgomp reads its environment once per process.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { SPIN_COUNT } from '../../../src/backends/cpu/openmp.ts';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

const loaders = {
  primitives: `
    const { loadPrimitives } = await import('./src/backends/cpu/primitives.ts');
    await loadPrimitives();`,
  runner: `
    const { examplePlan, backendConfigs } = await import('./test/runtime/support.ts');
    const { buildCpu, CpuRunner } = await import('./src/backends/cpu/runner.ts');
    const { randomWeights } = await import('./src/model/weights.ts');
    const { modelFor } = await import('./src/runtime/modelFor.ts');
    const plan = examplePlan('baseline');
    const config = modelFor(plan, backendConfigs[0]);
    new CpuRunner(buildCpu(plan, config, 8), randomWeights(config, 3), 8);`,
};

/** libgomp's report of its wait policy and spin count, from a child that loads `what`. */
function reported(what: keyof typeof loaders, env: NodeJS.ProcessEnv): { policy: string; spin: string } {
  const code = `
    import { register } from 'tsx/esm/api';
    register();
    ${loaders[what]}`;
  const { OMP_WAIT_POLICY: _, GOMP_SPINCOUNT: __, ...rest } = process.env;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    cwd: REPO,
    env: { ...rest, OMP_DISPLAY_ENV: 'verbose', ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  expect(r.status, r.stderr).toBe(0);
  const out = `${r.stdout}${r.stderr}`;
  return {
    policy: /OMP_WAIT_POLICY = '(\w+)'/.exec(out)?.[1] ?? 'unreported',
    spin: /GOMP_SPINCOUNT = '(\d+)'/.exec(out)?.[1] ?? 'unreported',
  };
}

describe('OpenMP wait', () => {
  test.each(Object.keys(loaders) as (keyof typeof loaders)[])(
    'a bounded spin by default, the %s loaded first',
    (what) => {
      expect(reported(what, {}).spin).toBe(String(SPIN_COUNT));
    },
    180_000,
  );

  test("the user's own setting is kept", () => {
    expect(reported('runner', { OMP_WAIT_POLICY: 'ACTIVE' }).policy).toBe('ACTIVE');
    expect(reported('primitives', { GOMP_SPINCOUNT: '1234' }).spin).toBe('1234');
  }, 180_000);
});
