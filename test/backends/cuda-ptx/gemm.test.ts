/**
 * The GEMM kernels' PTX text run by the instruction-level interpreter (interpret.ts) against
 * float64 references within the derived bound, on ragged shapes (M, N, K not multiples of the
 * tiles, an index list of A rows, a bias); and the 16-bit weights of a checkpoint through the
 * runner: uploaded as their bits, k-major, read by the GEMM of their dtype.
 */
import { describe, expect, test } from 'vitest';
import type { CudaDevice } from '../../../src/backends/cuda-ptx/launch.ts';
import { buildPtx, PtxRunner, slotData } from '../../../src/backends/cuda-ptx/runner.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { f16ToFloat32, type HalfDtype, halfToFloat32 } from '../../../src/model/half.ts';
import { presets } from '../../../src/model/presets.ts';
import { isHalf, randomWeights, type Tensor, type Weights, weightSpec } from '../../../src/model/weights.ts';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import { simulateGeneration } from '../../../src/runtime/simulate.ts';
import { examplePlan } from '../../runtime/support.ts';
import {
  checkPrimitive,
  GEMM_SPECS,
  type GemmSpec,
  gemmCase,
  type PrimitiveCase,
  transposeSamples,
} from './checks.ts';
import { EmulatedDevice, halfBits } from './emulator.ts';

const interpreted = () => new EmulatedDevice({ interpret: /^kvp_(gemm|splitk)/ });
const label = (s: GemmSpec) => (s.op === 'gemm16' ? `gemm16 ${s.dtype}` : `gemm ${s.path}`);
/** M, N, K: whole tiles, ragged in every dimension, a single row, K below one k-step. */
const SHAPES = [
  [64, 64, 64],
  [70, 100, 36],
  [1, 8, 4],
  [33, 68, 100],
] as const;

/** The case interpreted: finite where the reference is, within the derived bound. */
function expectWithinBound(c: PrimitiveCase): void {
  for (const r of checkPrimitive(c, interpreted())) {
    expect(r.mismatched, r.label).toBe(0);
    expect(r.error, `${r.label}: error ${r.error} over the derived bound ${r.bound}`).toBeLessThanOrEqual(
      r.bound,
    );
  }
}

describe('GEMM PTX interpreted instruction by instruction, against float64 on the rounded inputs', () => {
  test.each(GEMM_SPECS.map((s) => [label(s), s] as const))('%s', (_name, spec) => {
    SHAPES.forEach(([m, n, k], i) => {
      expectWithinBound(gemmCase(spec, m, n, k, 40 + i));
    });
  });

  test('a kernel broken on purpose fails the check', () => {
    // The two halves of each 16-bit W word swapped: columns n and n+1 of W trade places.
    const broken = new (class extends EmulatedDevice {
      override loadKernel(ptx: string, name: string) {
        return super.loadKernel(ptx.replace(/mov\.b32 \{(%h\d+), (%h\d+)\}/g, 'mov.b32 {$2, $1}'), name);
      }
    })({ interpret: /^kvp_gemm/ });
    const [r] = checkPrimitive(gemmCase({ op: 'gemm16', dtype: 'bf16' }, 33, 68, 100, 1), broken);
    expect(r?.error).toBeGreaterThan(10 * (r?.bound as number));
  });
});

describe('split-K: the GEMM PTX interpreted over K in splits, the partials summed by kvp_splitk_reduce', () => {
  /** M, N, K and the split: the last split short, and one whose last split is a single k-step. */
  const SPLITS = [
    [33, 68, 200, { splits: 3, kchunk: 96 }],
    [70, 100, 96, { splits: 2, kchunk: 64 }],
  ] as const;
  test.each(GEMM_SPECS.map((s) => [label(s), s] as const))('%s', (_name, spec) => {
    SPLITS.forEach(([m, n, k, split], i) => {
      expectWithinBound(gemmCase(spec, m, n, k, 60 + i, split));
    });
  });

  test('a GEMM that ignores its split index fails the check', () => {
    // Every CTA of a one-row-tile grid then sums the first k-range into the first partial.
    const broken = new (class extends EmulatedDevice {
      override loadKernel(ptx: string, name: string) {
        return super.loadKernel(ptx.replaceAll('%ctaid.z', '%ctaid.y'), name);
      }
    })({ interpret: /^kvp_gemm/ });
    const [r] = checkPrimitive(
      gemmCase({ op: 'gemm16', dtype: 'bf16' }, 33, 68, 200, 1, { splits: 3, kchunk: 96 }),
      broken,
    );
    expect(r?.error).toBeGreaterThan(10 * (r?.bound as number));
  });
});

test('16-bit bits round to nearest even and every finite f16 / bf16 value encodes to itself', () => {
  expect(halfBits('f16', 1 + 2 ** -11)).toBe(0x3c00);
  expect(halfBits('f16', 1 + 3 * 2 ** -11)).toBe(0x3c02);
  expect(halfBits('f16', -(2 ** -24))).toBe(0x8001);
  expect(halfBits('f16', 1e6)).toBe(0x7c00);
  expect(halfBits('bf16', 1 + 3 * 2 ** -8)).toBe(0x3f82);
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  for (const dtype of ['f16', 'bf16'] as const) {
    const values = halfToFloat32(all, dtype);
    for (let b = 0; b < 65536; b++) {
      const v = values[b] as number;
      if (Number.isFinite(v)) expect(halfBits(dtype, v), `${dtype} ${b.toString(16)}`).toBe(b);
    }
  }
  expect(f16ToFloat32(Uint16Array.of(halfBits('f16', 0.1)))[0]).toBe(Math.fround(0.0999755859375));
});

/** The weights as a checkpoint stores them in 16 bits, and the same values as floats. */
function halfWeights(weights: Weights, names: readonly string[], dtype: HalfDtype): [Weights, Weights] {
  const half = new Map<string, Tensor>();
  const wide = new Map<string, Tensor>();
  for (const name of names) {
    const t = weights.get(name);
    if (!t || isHalf(t)) throw new Error(`no float weight ${name}`);
    const bits = Uint16Array.from(t.data, (x) => halfBits(dtype, x));
    half.set(name, { shape: t.shape, half: dtype, bits });
    wide.set(name, { shape: t.shape, data: halfToFloat32(bits, dtype) });
  }
  return [half, wide];
}

describe('16-bit weights on the device', () => {
  const plan = examplePlan('flashblock');
  const config = modelFor(plan, presets.small as ModelConfig);
  const random = randomWeights(config, 5);
  const names = weightSpec(config).map((s) => s.name);

  test.each(['bf16', 'f16'] as const)(
    '%s: a tensor-core build uploads GEMM weights as their bits, k-major, read by kvp_gemm16; fma widens them',
    (dtype) => {
      const [half] = halfWeights(random, names, dtype);
      const { render } = buildPtx(plan, config, 16, { gemm: 'mma-bf16', weights: half });
      const m = render.manifest;
      const gemms = Object.values(m.phases)
        .flatMap((st) => st.flatMap((s) => s.launches))
        .filter((l) => l.kernel.startsWith('kvp_gemm'));
      expect(new Set(gemms.map((g) => g.kernel))).toEqual(new Set([`kvp_gemm16_${dtype}`]));
      const kMajor = m.slots.filter((s) => s.layout === 'k-major');
      expect(kMajor.length).toBeGreaterThan(0);
      for (const s of kMajor) {
        const [k, n] = s.shape as [number, number];
        expect(s).toMatchObject({ dtype, bytes: k * n * 2 });
        const w = half.get(s.transposeOf as string);
        if (!w || !isHalf(w)) throw new Error('no 16-bit weight');
        const t = slotData(s, half);
        expect(t).toBeInstanceOf(Uint16Array);
        for (const [o, i] of transposeSamples(n, k)) expect(t[i * n + o]).toBe(w.bits[o * k + i]);
      }
      // Row-major weights (norms, the embedding table) stay float32.
      for (const s of m.slots.filter((x) => x.kind === 'weight' && x.layout === 'row-major'))
        expect(s.dtype).toBeUndefined();
      const fma = buildPtx(plan, config, 16, { weights: half }).render.manifest;
      expect(fma.slots.some((s) => s.dtype !== undefined)).toBe(false);
      expect(Object.keys(fma.kernels).filter((k) => k.startsWith('kvp_gemm'))).toEqual(['kvp_gemm_fma']);
    },
  );

  test('a build for 16-bit weights refuses float weights, and the reverse widens', () => {
    const [half, wide] = halfWeights(random, names, 'bf16');
    const build = buildPtx(plan, config, 16, { gemm: 'mma-bf16', weights: half });
    expect(() => new PtxRunner(build, wide, 16, new EmulatedDevice())).toThrow(
      /holds bf16 bits but weight .* is stored as floats/,
    );
    const [f16] = halfWeights(random, names, 'f16');
    expect(() => new PtxRunner(build, f16, 16, new EmulatedDevice())).toThrow(/is stored as f16/);
    const plain = buildPtx(plan, config, 16, { gemm: 'mma-bf16' });
    new PtxRunner(plain, half, 16, new EmulatedDevice()).release();
  });

  test.each([
    ['emulator', () => new EmulatedDevice()],
    ['interpreter', interpreted],
  ] as const)(
    'on the %s, a generation with bf16 weights through kvp_gemm16_bf16 equals the one on the same values as floats through kvp_gemm_mma_bf16',
    async (_name, open: () => CudaDevice) => {
      const [half, wide] = halfWeights(random, names, 'bf16');
      const prompt = Int32Array.from([3, 1, 4, 1, 5]);
      const run = async (weights: Weights) => {
        const build = buildPtx(plan, config, prompt.length + 8, { gemm: 'mma-bf16', weights });
        const device = open();
        return simulateGeneration(plan, build.lowered, {
          config,
          weights,
          prompt,
          genLen: 8,
          seed: 21,
          runner: (n) => new PtxRunner(build, weights, n, device),
        });
      };
      const [a, b] = [await run(half), await run(wide)];
      expect(a.steps.length).toBeGreaterThan(0);
      expect(a.tokens).toEqual(b.tokens);
      expect(a.steps.map((s) => s.deviation)).toEqual(b.steps.map((s) => s.deviation));
    },
    60_000,
  );
});
