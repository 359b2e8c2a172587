import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { buildCpu, CpuRunner } from '../../src/backends/cpu/runner.ts';
import { sharedDevice } from '../../src/backends/webgpu/device.ts';
import { webGpuRunnerFactory } from '../../src/backends/webgpu/runner.ts';
import type { RunnerFactory } from '../../src/runtime/verify.ts';
import {
  checkText,
  ciFeatures,
  describeVerdict,
  generatedArb,
  verdictHolds,
  verifyGenerated,
} from '../support/planGen.ts';
import { fuzzRuns } from './runs.ts';

const cpuRunner: RunnerFactory = (plan, cfg, weights, L) => {
  const build = buildCpu(plan, cfg, L);
  return (n) => new CpuRunner(build, weights, n);
};

// Acquired while collecting, so that a missing adapter skips visibly (with its reason) instead of passing.
const gpu = await sharedDevice();
if (!gpu.ok) console.log(`WebGPU fuzz: skipped: no WebGPU adapter (${gpu.reason})`);

/** Accepted generated plans only: a compiled backend is judged on plans the checker lets through. */
const acceptedArb = fc
  .record({ g: generatedArb(ciFeatures), seed: fc.integer({ min: 1, max: 1_000_000 }) })
  .map((c) => ({ ...c, o: checkText(c.g.text) }))
  .filter((c) => c.o.kind === 'accepted');

/** Each plan compiles its own kernels (about a second in C), so fewer plans run here. */
async function differential(name: 'cpu' | 'webgpu', runnerFor: RunnerFactory, runs: number) {
  let verified = 0;
  for (const { seed, numRuns } of fuzzRuns(runs))
    await fc.assert(
      fc.asyncProperty(acceptedArb, async ({ g, o, seed: caseSeed }) => {
        if (o.kind !== 'accepted') return;
        // The budget comes from the reference interpreter's float32 mode, never from the backend.
        const v = await verifyGenerated(g.spec, o.plan, caseSeed, { name, runnerFor });
        expect(verdictHolds(v, o.warnings), `${name}: ${describeVerdict(v)}\n${g.text}`).toBe(true);
        verified++;
      }),
      { seed, numRuns },
    );
  expect(verified).toBeGreaterThanOrEqual(runs);
}

describe('compiled backends equal the reference on generated plans', () => {
  test('cpu, within the budget derived from float32 reference evaluation', async () => {
    await differential('cpu', cpuRunner, 6);
  }, 180_000);

  test.skipIf(!gpu.ok)(
    'webgpu, within the budget derived from float32 reference evaluation',
    async () => {
      await differential('webgpu', await webGpuRunnerFactory(), 8);
    },
    180_000,
  );
});
