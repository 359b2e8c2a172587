/**
 * The WGSL `softmax_stats` shader (the WebGPU runner's statistics of each step's logits) against
 * softmaxStats of src/model/golden.ts in float64, on generated rows (test/support/softmaxStats.ts),
 * within bounds derived from WGSL's accuracy rules: a tree of 8 levels joins the threads' sums.
 */
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { STATS_WG } from '../../../src/backends/webgpu/shaders.ts';
import { caseLogits, checkStats, type StatsCase, statsCases, tieRow } from '../../support/softmaxStats.ts';
import { gpuOrSkip, runKernel } from './support.ts';

const device = await gpuOrSkip('WebGPU softmax_stats');

/** The shader's statistics of a case (4 floats a row, src/backends/deviceStats.ts). */
async function gpuStats(c: StatsCase): Promise<Float32Array> {
  const n = c.rows.length;
  const [out] = await runKernel(
    device as GPUDevice,
    'softmax_stats',
    [n, c.v, c.exclude < 0 ? c.v : c.exclude],
    [caseLogits(c), { out: 4 * n }],
    [n * STATS_WG, 1],
  );
  return out as Float32Array;
}

test.skipIf(!device)(
  'softmax_stats: argmax exactly, confidence, margin and entropy within derived float32 bounds, non-finite rows flagged',
  async () => {
    let compared = 0;
    let flagged = 0;
    await fc.assert(
      fc.asyncProperty(statsCases, async (c) => {
        const n = checkStats(c, await gpuStats(c), Math.log2(STATS_WG));
        compared += n.compared;
        flagged += n.flagged;
      }),
      { numRuns: 60, seed: 18 },
    );
    // The generator reaches both outcomes.
    expect(compared).toBeGreaterThan(50);
    expect(flagged).toBeGreaterThan(10);
  },
);

test.skipIf(!device)(
  'softmax_stats: a tie for the largest logit is the lower index, with margin 0',
  async () => {
    const out = await gpuStats(tieRow());
    expect([out[3], Math.abs(out[1] as number)]).toEqual([300, 0]);
  },
);
