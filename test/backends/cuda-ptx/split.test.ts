/**
 * Split-K (kernels/gemm.ts, gemmSplit): the policy's invariants on generated shapes, the
 * renderer's wiring (partials to scratch, then kvp_splitk_reduce with the bias), and generations
 * through the runner with GEMMs split on the tiny models, their PTX interpreted.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  GEMM_SPLIT,
  GEMM_TILE,
  type GemmSplitPolicy,
  gemmSplit,
} from '../../../src/backends/cuda-ptx/kernels/index.ts';
import type { Launch } from '../../../src/backends/cuda-ptx/render.ts';
import { buildPtx } from '../../../src/backends/cuda-ptx/runner.ts';
import { modelSplitScratch } from '../../../src/backends/cuda-ptx/scratch.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { presets } from '../../../src/model/presets.ts';
import { exampleCases, examplePlan } from '../../runtime/support.ts';
import { checkPlan, checkPrimitive, gemmCase } from './checks.ts';
import { EmulatedDevice } from './emulator.ts';

/** Splits K of the tiny models' GEMMs (K 32-128) in two to four. */
const EAGER: GemmSplitPolicy = { ctas: 1 << 20, minK: 32, scratchBytes: 1 << 30 };

describe('gemmSplit', () => {
  test('splits cover K in whole k-steps, none empty, within the CTA and scratch budgets', () => {
    const mult4 = (lo: number, hi: number) => fc.integer({ min: lo, max: hi }).map((x) => 4 * x);
    fc.assert(
      fc.property(mult4(1, 50_000), mult4(1, 8_000), fc.integer({ min: 1, max: 8192 }), (n, k, rows) => {
        const { splits, kchunk } = gemmSplit(n, k, rows);
        if (splits === 1) {
          expect(kchunk).toBe(k);
          return;
        }
        expect(kchunk % 32).toBe(0);
        expect(kchunk).toBeGreaterThanOrEqual(GEMM_SPLIT.minK);
        expect((splits - 1) * kchunk).toBeLessThan(k);
        expect(splits * kchunk).toBeGreaterThanOrEqual(k);
        expect(splits * Math.ceil(n / GEMM_TILE.bn)).toBeLessThanOrEqual(GEMM_SPLIT.ctas);
        expect(splits * rows * n * 4).toBeLessThanOrEqual(GEMM_SPLIT.scratchBytes);
      }),
    );
  });

  test("an SDAR-1.7B step's GEMMs: the narrow ones split, the LM head does not", () => {
    expect(gemmSplit(2048, 2048, 192)).toEqual({ splits: 8, kchunk: 256 });
    expect(gemmSplit(6144, 2048, 192)).toEqual({ splits: 5, kchunk: 416 });
    expect(gemmSplit(2048, 6144, 192)).toEqual({ splits: 16, kchunk: 384 });
    expect(gemmSplit(151_936, 2048, 192).splits).toBe(1);
    // A long canvas keeps the scratch bounded.
    expect(gemmSplit(6144, 2048, 8192).splits).toBe(1);
  });
});

const launches = (phases: Readonly<Record<string, readonly { launches: readonly Launch[] }[]>>) =>
  Object.values(phases).flatMap((stages) => stages.flatMap((s) => s.launches));

test('a split GEMM writes its partials to scratch and the next launch sums them into C with the bias', () => {
  const config = presets.small as ModelConfig;
  const { manifest } = buildPtx(examplePlan('fast-dllm-dual'), config, 48, {
    arch: 'sm_90',
    gemm: 'mma-bf16',
    split: EAGER,
  }).render;
  const all = launches(manifest.phases);
  const split = all.filter((l) => l.kernel.startsWith('kvp_gemm') && l.grid[2].size !== 1);
  expect(split.length).toBeGreaterThan(0);
  const scratch = manifest.slots.find((s) => s.kind === 'scratch');
  let largest = 0;
  for (const g of split) {
    const next = all[all.indexOf(g) + 1] as Launch;
    const p = (l: Launch, name: string) => l.params.find((q) => q.name === `p_${name}`)?.binding;
    expect(next.kernel).toBe('kvp_splitk_reduce');
    expect(p(g, 'c')).toEqual({ kind: 'buffer', slot: scratch?.name, offset: 0 });
    expect(p(g, 'bias')).toEqual({ kind: 'null' });
    expect(p(next, 'ws')).toEqual(p(g, 'c'));
    expect(p(next, 'splits')).toEqual({ kind: 'u32', value: g.grid[2].size });
    const n = (p(g, 'n') as { value: number }).value;
    expect(p(g, 'zstride')).toEqual({ kind: 'u32', value: 48 * n });
    largest = Math.max(largest, (g.grid[2].size as number) * 48 * n * 4);
  }
  expect(scratch?.bytes).toBe(largest);
  // Without the policy nothing splits and no scratch is allocated.
  const plain = buildPtx(examplePlan('fast-dllm-dual'), config, 48, { arch: 'sm_90', gemm: 'mma-bf16' });
  expect(launches(plain.render.manifest.phases).some((l) => l.kernel === 'kvp_splitk_reduce')).toBe(false);
  expect(plain.render.manifest.slots.some((s) => s.kind === 'scratch')).toBe(false);
});

test.each([
  ['small', presets.small as ModelConfig],
  // A tied head, the widest GEMM here: the estimate must count the table's GEMM too.
  [
    'small, tied, vocab 512',
    { ...(presets.small as ModelConfig), vocab: 512, maskTokenId: 511, tieEmbeddings: true },
  ],
])("the scratch inspect-model reports for %s is the renderer's scratch slot", (_name, config) => {
  for (const rows of [48, 200]) {
    const { manifest } = buildPtx(examplePlan('baseline'), config, rows, {
      arch: 'sm_90',
      gemm: 'fma',
      split: EAGER,
    }).render;
    const slot = manifest.slots.find((s) => s.kind === 'scratch');
    expect(modelSplitScratch(config, rows, EAGER)).toBe(slot?.bytes);
  }
  expect(modelSplitScratch(config, 48)).toBe(0);
});

test('the emulator refuses a split GEMM whose splits leave K uncovered or cut a k-step', () => {
  const spec = { op: 'gemm16', dtype: 'bf16' } as const;
  expect(() =>
    checkPrimitive(gemmCase(spec, 33, 68, 96, 1, { splits: 2, kchunk: 32 }), new EmulatedDevice()),
  ).toThrow(/the launch covers 64 k, 96 needed/);
  expect(() =>
    checkPrimitive(gemmCase(spec, 33, 68, 96, 1, { splits: 2, kchunk: 48 }), new EmulatedDevice()),
  ).toThrow(/a split's k-range 48 is not whole k-steps/);
});

describe('generations with every GEMM split, the GEMM PTX interpreted', () => {
  const cases = exampleCases.filter(([name]) => ['baseline', 'fast-dllm-dual', 'd2cache'].includes(name));
  test.each(cases)('%s on %s: within the float32 budget at every step', async (name, _config, base) => {
    const device = new EmulatedDevice({ interpret: /^kvp_(gemm|splitk)/ });
    // The float32 path, whose budget is float32's: the split is the same on every path.
    const r = await checkPlan(name, base, device, { gemm: 'fma', split: EAGER });
    expect(device.launches.some((l) => l.kernel === 'kvp_splitk_reduce')).toBe(true);
    expect(r.worst, `max deviation ${r.maxDeviation} (eager float32 ${r.eagerError})`).toBeLessThanOrEqual(1);
    expect(r.lockstepWorst).toBeLessThanOrEqual(1);
  });
});
