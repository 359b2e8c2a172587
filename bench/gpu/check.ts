/**
 * The PTX checks of test/backends/cuda-ptx/runner.test.ts on a real CUDA device, without vitest:
 * the primitives against float64 references, and every example plan's generation through
 * PtxRunner (koffi → libcuda) against the float64 golden within the derived float32 budget.
 * bench/gpu/pack.sh bundles it into one file for GPU machines that have no Node install.
 *
 *   node check.mjs [--out result.json] [--emulator]
 *
 * Run from the repository root (plans are read from examples/). `--emulator` runs the same checks
 * on the JS emulator of the kernels, to try the bundle where there is no GPU.
 */
import { writeFileSync } from 'node:fs';
import { cudaAvailable } from '../../src/backends/cuda-ptx/driver.ts';
import { sharedCudaDevice } from '../../src/backends/cuda-ptx/runner.ts';
import {
  type Comparison,
  checkPlan,
  checkPrimitive,
  primitiveCases,
} from '../../test/backends/cuda-ptx/checks.ts';
import { EmulatedDevice } from '../../test/backends/cuda-ptx/emulator.ts';
import { exampleCases } from '../../test/runtime/support.ts';

const out = process.argv.indexOf('--out');
const emulator = process.argv.includes('--emulator');
const status = emulator ? { ok: true, reason: 'the JS emulator' } : cudaAvailable();
const report: Record<string, unknown> = { device: status.reason };
let failed = 0;
if (!status.ok) console.log(`skipped: ${status.reason}`);
else {
  const device = emulator ? new EmulatedDevice() : sharedCudaDevice();
  report.computeCapability = device.computeCapability;
  const primitives = primitiveCases().flatMap(
    (c): (Comparison | { label: string; ok: false; error: string })[] => {
      try {
        return checkPrimitive(c, device);
      } catch (e) {
        return [{ label: c.name, ok: false, error: String(e) }];
      }
    },
  );
  for (const p of primitives) {
    if (!p.ok) failed++;
    console.log(`${p.ok ? 'ok  ' : 'FAIL'} ${p.label} ${'error' in p ? p.error : ''}`);
  }
  const plans = [];
  for (const [name, , base] of exampleCases) {
    const t0 = performance.now();
    try {
      const { result, ...r } = await checkPlan(name, base, device);
      const ok = r.worst <= 1 && r.lockstepWorst <= 1 && r.sameTokens !== false;
      if (!ok) failed++;
      plans.push({ ...r, steps: result.steps.length, ok, ms: performance.now() - t0 });
      console.log(
        `${ok ? 'ok  ' : 'FAIL'} ${name} on ${r.config}: ${result.steps.length} steps, max deviation ${r.maxDeviation.toExponential(2)}, ${(100 * r.worst).toFixed(0)}% of the budget (eager float32 ${r.eagerError.toExponential(2)}), ${(100 * r.lockstepWorst).toFixed(0)}% against the plan's reference at every step`,
      );
    } catch (e) {
      failed++;
      plans.push({ plan: name, ok: false, error: String(e) });
      console.log(`FAIL ${name}: ${String(e)}`);
    }
  }
  report.primitives = primitives;
  report.plans = plans;
  console.log(`${primitives.length + plans.length - failed} passed, ${failed} failed`);
}
if (out > 0) writeFileSync(process.argv[out + 1] as string, `${JSON.stringify(report, null, 1)}\n`);
process.exitCode = failed ? 1 : 0;
