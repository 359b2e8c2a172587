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
import { EmulatedDevice } from './emulator.ts';

const kernel = generateKernel({ op: 'softmax_stats' }, 'sm_80');

function ptxStats(c: StatsCase): { stats: Float32Array; argmax: Int32Array } {
  const dev = new EmulatedDevice({ interpret: /^kvp_softmax_stats$/ });
  const n = c.rows.length;
  const logits = caseLogits(c);
  const [pl, ps, pa] = [dev.alloc(logits.byteLength), dev.alloc(12 * n), dev.alloc(4 * n)];
  dev.upload(pl, logits);
  dev.fill(ps, 0xff, 12 * n);
  dev.fill(pa, 0x7f, 4 * n);
  const params = packParams([
    { type: 'u64', value: pl },
    { type: 'u64', value: ps },
    { type: 'u64', value: pa },
    ...[n, c.v, c.exclude < 0 ? c.v : c.exclude].map((value) => ({ type: 'u32' as const, value })),
  ]);
  const fn = dev.loadKernel(kernel.ptx, kernel.name);
  dev.launch(fn, [n, 1, 1], [STATS_THREADS, 1, 1], kernel.sharedBytes, params);
  const stats = new Float32Array(3 * n);
  const argmax = new Int32Array(n);
  dev.download(stats, ps);
  dev.download(argmax, pa);
  return { stats, argmax };
}

test('kvp_softmax_stats: argmax exactly, confidence, margin and entropy within derived float32 bounds, non-finite rows flagged', () => {
  let compared = 0;
  let flagged = 0;
  fc.assert(
    fc.property(statsCases, (c) => {
      const { stats, argmax } = ptxStats(c);
      // Five butterfly rounds in a warp, then the eight warps' sums added in turn.
      const n = checkStats(c, stats, argmax, 5 + STATS_THREADS / 32 - 1);
      compared += n.compared;
      flagged += n.flagged;
    }),
    { numRuns: 40, seed: 18 },
  );
  expect(compared).toBeGreaterThan(30);
  expect(flagged).toBeGreaterThan(5);
});

test('kvp_softmax_stats: a tie for the largest logit is the lower index, with margin 0', () => {
  const { stats, argmax } = ptxStats(tieRow());
  expect([argmax[0], Math.abs(stats[1] as number)]).toEqual([300, 0]);
});
