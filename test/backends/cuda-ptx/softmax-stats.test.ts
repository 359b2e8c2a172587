/**
 * The PTX `kvp_softmax_stats` kernel (the PTX runner's statistics of each step's logits), its text
 * run by the instruction-level interpreter (interpret.ts: lockstep threads, butterfly shuffles,
 * shared memory), against softmaxStats of src/model/golden.ts in float64 on generated rows
 * (test/support/softmaxStats.ts). The interpreter computes ex2 and lg2 correctly rounded; the
 * bounds allow for the hardware's approximations, and the GPU check (bench/gpu) settles them.
 */
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { generateKernel, STATS_THREADS } from '../../../src/backends/cuda-ptx/kernels/index.ts';
import { packParams } from '../../../src/backends/cuda-ptx/launch.ts';
import { caseLogits, checkStats, type StatsCase, statsCases, tieRow } from '../../support/softmaxStats.ts';
import { checkPrimitive, primitiveCases } from './checks.ts';
import { EmulatedDevice } from './emulator.ts';

const kernel = generateKernel({ op: 'softmax_stats' }, 'sm_80');

/** The kernel's statistics of a case (4 floats a row, src/backends/deviceStats.ts), its text interpreted. */
function ptxStats(c: StatsCase): Float32Array {
  const dev = new EmulatedDevice({ interpret: /^kvp_softmax_stats$/ });
  const n = c.rows.length;
  const logits = caseLogits(c);
  const [pl, ps] = [dev.alloc(logits.byteLength), dev.alloc(16 * n)];
  dev.upload(pl, logits);
  dev.fill(ps, 0xff, 16 * n);
  const params = packParams([
    { type: 'u64', value: pl },
    { type: 'u64', value: ps },
    ...[n, c.v, c.exclude < 0 ? c.v : c.exclude].map((value) => ({ type: 'u32' as const, value })),
  ]);
  const fn = dev.loadKernel(kernel.ptx, kernel.name);
  dev.launch(fn, [n, 1, 1], [STATS_THREADS, 1, 1], kernel.sharedBytes, params);
  const out = new Float32Array(4 * n);
  dev.download(out, ps);
  return out;
}

test('kvp_softmax_stats: argmax exactly, confidence, margin and entropy within derived float32 bounds, non-finite rows flagged', () => {
  let compared = 0;
  let flagged = 0;
  fc.assert(
    fc.property(statsCases, (c) => {
      // Five butterfly rounds in a warp, then the eight warps' sums added in turn.
      const n = checkStats(c, ptxStats(c), 5 + STATS_THREADS / 32 - 1);
      compared += n.compared;
      flagged += n.flagged;
    }),
    { numRuns: 40, seed: 18 },
  );
  expect(compared).toBeGreaterThan(30);
  expect(flagged).toBeGreaterThan(5);
});

test('kvp_softmax_stats: a tie for the largest logit is the lower index, with margin 0', () => {
  const out = ptxStats(tieRow());
  expect([out[3], Math.abs(out[1] as number)]).toEqual([300, 0]);
});

test("kvp_softmax_stats: the GPU replay's cases (checks.ts) pass with the kernel's text interpreted", () => {
  const cases = primitiveCases().filter((c) => c.name.startsWith('softmax_stats'));
  expect(cases.length).toBeGreaterThan(0);
  for (const c of cases)
    for (const r of checkPrimitive(c, new EmulatedDevice({ interpret: /^kvp_softmax_stats$/ })))
      expect(r, r.label).toMatchObject({ ok: true, mismatched: 0 });
});
