// The mutation check of DESIGN.md section 4 (issue 14): `kvplan verify` on a compiled backend must
// be able to fail, and is shown to. The real CLI runs in a child process with one primitive
// perturbed through the test-only fault hook (src/backends/fault.ts); every plan must then FAIL
// and the command exit 1. The faulty runs go first and share the compiled-library cache with the
// normal run after them, which therefore also shows that a faulty library is never reused.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { gpuOrSkip } from '../backends/webgpu/support.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const plans = ['examples/baseline.kvp', 'examples/fast-dllm-dual.kvp'];
/**
 * The checks of each plan that a perturbed primitive must fail: against the reference running the
 * same plan at every step, and against the golden at every step (exact) or at refresh steps.
 */
const failing: Record<string, RegExp> = {
  'examples/baseline.kvp': / backend FAILED .* exact FAILED /,
  'examples/fast-dllm-dual.kvp': / backend FAILED .* refresh FAILED /,
};
// One small case of two blocks: enough for a refresh step and cached steps, a few seconds a run.
const small = ['--cases', '1', '--gen-length', '8', '--set', 'block=4'];

function verify(backend: string, fault: Record<string, string>) {
  const env = { ...process.env, ...fault };
  if (!('KVPLAN_FAULT' in fault)) delete env.KVPLAN_FAULT;
  if (!('KVPLAN_FAULT_ARMED' in fault)) delete env.KVPLAN_FAULT_ARMED;
  const r = spawnSync(
    process.execPath,
    ['bin/kvplan.mjs', 'verify', '--backend', backend, ...small, ...plans],
    {
      cwd: root,
      encoding: 'utf8',
      env,
    },
  );
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const gpu = await gpuOrSkip('mutation check on --backend webgpu');

describe.each([
  ['cpu', true],
  ['webgpu', gpu !== undefined],
] as const)('kvplan verify --backend %s', (backend, available) => {
  test.skipIf(!available).each(['rmsnorm:0.01', 'attention:0.01'])(
    'with the fault %s every plan FAILs and the exit status is 1',
    (fault) => {
      const r = verify(backend, { KVPLAN_FAULT: fault, KVPLAN_FAULT_ARMED: '1' });
      expect(r.stderr).toContain(`FAULT INJECTION ACTIVE: ${fault.split(':')[0]} outputs scaled by 1.01`);
      for (const plan of plans) {
        const line = r.stdout.split('\n').find((l) => l.includes(`  ${plan}  `));
        expect(line, r.stdout + r.stderr).toMatch(new RegExp(`^FAIL  ${plan}  `));
        expect(line).toMatch(failing[plan] as RegExp);
      }
      expect(r.code).toBe(1);
    },
    180_000,
  );

  test.skipIf(!available)(
    'an unarmed fault is ignored with a warning: every plan ok, exit status 0',
    () => {
      const r = verify(backend, { KVPLAN_FAULT: 'rmsnorm:0.01' });
      expect(r.stderr).toContain("KVPLAN_FAULT='rmsnorm:0.01' is ignored");
      expect(r.stderr).not.toContain('FAULT INJECTION ACTIVE');
      for (const plan of plans)
        expect(r.stdout, r.stdout + r.stderr).toMatch(new RegExp(`^ok  ${plan}  `, 'm'));
      expect(r.code).toBe(0);
    },
    180_000,
  );
});
