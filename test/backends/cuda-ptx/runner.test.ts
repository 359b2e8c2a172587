/**
 * The PTX runner. Its host side (weight layouts, argument packing, launch evaluation, the order of
 * stages and index lists) runs here on the JS emulator of the kernels; the same checks run on an
 * NVIDIA GPU through the driver when one is present, and print `skipped: no CUDA device` elsewhere.
 */
import { describe, expect, test } from 'vitest';
import { cudaAvailable } from '../../../src/backends/cuda-ptx/driver.ts';
import {
  type CudaDevice,
  LaunchError,
  launchArgs,
  launchGrid,
  PreparedLaunch,
  packParams,
} from '../../../src/backends/cuda-ptx/launch.ts';
import type { Launch } from '../../../src/backends/cuda-ptx/render.ts';
import {
  archFor,
  buildPtx,
  PtxRunner,
  sharedCudaDevice,
  slotData,
} from '../../../src/backends/cuda-ptx/runner.ts';
import { BackendUnavailable, prepareBackend } from '../../../src/backends/registry.ts';
import { float32Of, type HostTensor } from '../../../src/ir/tensor.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { presets } from '../../../src/model/presets.ts';
import { randomWeights } from '../../../src/model/weights.ts';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import type { StepRunner } from '../../../src/runtime/runner.ts';
import { exampleCases, examplePlan } from '../../runtime/support.ts';
import { checkPlan, checkPrimitive, primitiveCases, transposeSamples } from './checks.ts';
import { EmulatedDevice, roundBf16, roundF16 } from './emulator.ts';

const small = presets.small as ModelConfig;
const cuda = cudaAvailable();
if (!cuda.ok)
  console.log(`skipped: no CUDA device (${cuda.reason}); the PTX runner runs on the JS emulator only`);

const devices: [string, () => CudaDevice][] = [
  ['emulator', () => new EmulatedDevice()],
  ...(cuda.ok ? [['cuda', sharedCudaDevice] as [string, () => CudaDevice]] : []),
];

describe('kernel arguments', () => {
  test('are packed at their natural alignment, little-endian, as the driver copies them', () => {
    const p = packParams([
      { type: 'u32', value: 7 },
      { type: 'u64', value: 0x1122334455667788n },
      { type: 'f32', value: 0.1 },
      { type: 'u32', value: 2 ** 32 - 1 },
    ]);
    expect(p.offsets).toEqual([0, 8, 16, 20]);
    expect(p.bytes.byteLength).toBe(24);
    const v = new DataView(p.bytes.buffer);
    expect(v.getUint32(0, true)).toBe(7);
    expect(v.getUint32(4, true)).toBe(0);
    expect(v.getBigUint64(8, true)).toBe(0x1122334455667788n);
    expect(v.getFloat32(16, true)).toBe(Math.fround(0.1));
    expect(v.getUint32(20, true)).toBe(2 ** 32 - 1);
  });

  test('a count that does not fit a u32 is refused', () => {
    expect(() => packParams([{ type: 'u32', value: 2 ** 32 }])).toThrow(LaunchError);
    expect(() => packParams([{ type: 'u32', value: -1 }])).toThrow(/does not fit a u32/);
  });

  test('bindings resolve to slot addresses plus offsets, null pointers, counts of the step sizes', () => {
    const l: Launch = {
      kernel: 'k',
      op: 'test',
      grid: [
        { size: '#keys.0', mul: 3, div: 32 },
        { size: 4, mul: 1, div: 1 },
        { size: 1, mul: 1, div: 1 },
      ],
      block: [128, 1, 1],
      sharedBytes: 0,
      params: [
        { name: 'p_o', type: 'u64', binding: { kind: 'buffer', slot: 'arena', offset: 512 } },
        { name: 'p_rows', type: 'u64', binding: { kind: 'null' } },
        { name: 'p_n', type: 'u32', binding: { kind: 'count', size: 'L', mul: 8 } },
        { name: 'p_d', type: 'u32', binding: { kind: 'u32', value: 64 } },
        { name: 'p_eps', type: 'f32', binding: { kind: 'f32', value: 1e-5 } },
      ],
    };
    const sizes = new Map([
      ['L', 13],
      ['#keys.0', 50],
    ]);
    const size = (n: string) => sizes.get(n) ?? 0;
    expect(launchGrid(l, size)).toEqual([5, 4, 1]);
    expect(launchArgs(l.params, () => 0x1000n, size).map((a) => a.value)).toEqual([
      0x1200n,
      0n,
      104,
      64,
      1e-5,
    ]);
    sizes.set('#keys.0', 0);
    expect(launchGrid(l, size)[0]).toBe(0);
    const tooTall = { ...l, grid: [l.grid[0], { size: 70000, mul: 1, div: 1 }, l.grid[2]] as Launch['grid'] };
    expect(() => launchGrid(tooTall, size)).toThrow(/exceeds the device's limits/);

    // Packed once, bound per step: the same bytes as packing the step's arguments anew.
    const prepared = new PreparedLaunch(l, () => 0x1000n);
    for (const [L, keys] of [
      [13, 50],
      [7, 1],
      [2 ** 29 - 1, 9],
    ] as const) {
      sizes.set('L', L);
      sizes.set('#keys.0', keys);
      expect(prepared.bind(size)).toEqual(launchGrid(l, size));
      expect(prepared.params).toEqual(packParams(launchArgs(l.params, () => 0x1000n, size)));
    }
    sizes.set('#keys.0', 0);
    expect(prepared.bind(size)).toBeUndefined();
    sizes.set('#keys.0', 1);
    sizes.set('L', 2 ** 29);
    expect(() => prepared.bind(size)).toThrow(/count L x 8 \(4294967296\) does not fit a u32/);
  });
});

describe('weights on the device', () => {
  test("k-major slots hold the transpose of the model's [out][in] weight, in the shape every GEMM reads", () => {
    const plan = examplePlan('flashblock');
    const config = modelFor(plan, small);
    const weights = randomWeights(config, 3);
    const { render } = buildPtx(plan, config, 16);
    const kMajor = render.manifest.slots.filter((s) => s.layout === 'k-major');
    expect(kMajor.length).toBeGreaterThan(0);
    for (const s of kMajor) {
      const w = weights.get(s.transposeOf as string);
      const [k, n] = s.shape as [number, number];
      expect(w?.shape).toEqual([n, k]);
      const t = slotData(s, weights);
      for (const [o, i] of transposeSamples(n, k))
        expect(t[i * n + o]).toBe(Math.fround(w?.data[o * k + i] as number));
    }
    const gemms = Object.values(render.manifest.phases)
      .flatMap((st) => st.flatMap((x) => x.launches))
      .filter((l) => l.kernel.startsWith('kvp_gemm'));
    for (const g of gemms) {
      const arg = (name: string) => g.params.find((p) => p.name === name)?.binding;
      const w = arg('p_w');
      const slot = render.manifest.slots.find((s) => w?.kind === 'buffer' && s.name === w.slot);
      expect(slot?.layout).toBe('k-major');
      expect(slot?.shape).toEqual([
        (arg('p_k') as { value: number }).value,
        (arg('p_n') as { value: number }).value,
      ]);
    }
  });

  test('a weight the model lacks, or of the wrong size, is refused', () => {
    const plan = examplePlan('baseline');
    const config = modelFor(plan, small);
    const { render } = buildPtx(plan, config, 16);
    const slot = render.manifest.slots.find((s) => s.kind === 'weight');
    if (!slot) throw new Error('no weight slot');
    expect(() => slotData(slot, new Map())).toThrow(/has no weight/);
    const name = slot.transposeOf ?? slot.name;
    expect(() => slotData(slot, new Map([[name, { shape: [1], data: new Float64Array(1) }]]))).toThrow(
      /holds/,
    );
  });
});

describe('the runner', () => {
  test('refuses a canvas beyond the compiled maximum and sm_90 kernels on an older device', () => {
    const plan = examplePlan('baseline');
    const config = modelFor(plan, small);
    const weights = randomWeights(config, 3);
    const build = buildPtx(plan, config, 16);
    expect(() => new PtxRunner(build, weights, 17, new EmulatedDevice())).toThrow(
      /exceeds the compiled maximum/,
    );
    const hopper = buildPtx(plan, config, 16, { arch: 'sm_90' });
    const ampere = Object.assign(new EmulatedDevice(), { computeCapability: [8, 0] as const });
    expect(() => new PtxRunner(hopper, weights, 16, ampere)).toThrow(/cannot run on compute capability 8.0/);
    expect([archFor([8, 6]), archFor([9, 0]), archFor([10, 0])]).toEqual(['sm_80', 'sm_90', 'sm_90']);
  });

  test.skipIf(cuda.ok)('generate, eval and demo are told why there is no PTX backend here', async () => {
    const plan = examplePlan('baseline');
    const config = modelFor(plan, small);
    await expect(prepareBackend('ptx', plan, config, randomWeights(config, 3), 16)).rejects.toThrow(
      new BackendUnavailable(cuda.reason),
    );
  });

  test('releases every allocation it made and unloads its kernels', () => {
    const plan = examplePlan('flashblock');
    const config = modelFor(plan, small);
    const device = new EmulatedDevice();
    const build = buildPtx(plan, config, 16);
    const runner = new PtxRunner(build, randomWeights(config, 3), 16, device);
    expect(device.allocations).toBeGreaterThan(0);
    runner.release();
    expect(device.allocations).toBe(0);
    expect(device.unloaded).toBe(build.render.files.size);
  });
});

describe.each(devices)('PTX primitives on the %s against float64 references', (_name, open) => {
  test.each(primitiveCases().map((c) => [c.name, c] as const))('%s', (_label, c) => {
    for (const r of checkPrimitive(c, open())) {
      expect(r.mismatched, `${r.label}: non-finite entries`).toBe(0);
      expect(r.error, `${r.label}: error ${r.error} over the derived bound ${r.bound}`).toBeLessThanOrEqual(
        r.bound,
      );
    }
  });
});

describe.each(devices)('PTX runner on the %s against the float64 reference, step by step', (_name, open) => {
  test.each(exampleCases)(
    '%s on %s: every step within the float32 budget of the reference running the plan, and of the golden where exact or refresh',
    async (name, _configName, base) => {
      const device = open();
      const r = await checkPlan(name, base, device);
      expect(r.checkedSteps).toBeGreaterThan(0);
      expect(r.worst, `max deviation ${r.maxDeviation} (eager float32 ${r.eagerError})`).toBeLessThanOrEqual(
        1,
      );
      expect(
        r.lockstepWorst,
        'against the reference running the same plan, at every step',
      ).toBeLessThanOrEqual(1);
      if (r.sameTokens !== undefined) expect(r.sameTokens).toBe(true);
      if (device instanceof EmulatedDevice) {
        expect(device.launches.length).toBeGreaterThan(0);
        expect(device.launches.every((l) => l.grid.every((g) => g > 0))).toBe(true);
      }
    },
  );
});

test('what a step reads back stays as read until the next step embeds, though the runner reuses its host memory', async () => {
  // Plans whose scores read hidden states or caches back, every layer.
  const probing = exampleCases.filter(([name]) => ['d2cache', 'es-dllm', 'elastic-cache'].includes(name));
  expect(probing.length).toBe(3);
  for (const [name, , base] of probing) {
    // The float32 form: `data` is a float64 copy made on first access.
    let kept: { got: Float32Array; copy: Float32Array }[] = [];
    let reads = 0;
    const keep = (t: HostTensor | undefined) => {
      const f = t && float32Of(t);
      if (f) kept.push({ got: f, copy: f.slice() });
      return t;
    };
    const wrap = (r: StepRunner): StepRunner => ({
      embed: (p, c, read) => {
        for (const k of kept)
          expect(k.got, `${name}: a read changed before the next step embedded`).toEqual(k.copy);
        reads += kept.length;
        kept = [];
        return keep(r.embed(p, c, read) as HostTensor | undefined);
      },
      layer: (p, l, lists, read) => keep(r.layer(p, l, lists, read) as HostTensor | undefined),
      head: (p, out, logits) => r.head(p, out, logits),
      cachePart: (part, l) => keep(r.cachePart(part, l)),
      ...(r.release ? { release: () => r.release?.() } : {}),
    });
    await checkPlan(name, base, new EmulatedDevice(), { wrap });
    expect(reads, `${name} read nothing back`).toBeGreaterThan(0);
  }
});

test('f16 and bf16 rounding match the formats (nearest even, f16 subnormals and overflow)', () => {
  expect(roundF16(1 + 2 ** -11)).toBe(1);
  expect(roundF16(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9);
  expect(roundF16(65504)).toBe(65504);
  expect(roundF16(65520)).toBe(Number.POSITIVE_INFINITY);
  expect(roundF16(2 ** -24 * 1.4)).toBe(2 ** -24);
  expect(roundF16(-0.1)).toBe(-0.0999755859375);
  expect(roundBf16(1 + 2 ** -8)).toBe(1);
  expect(roundBf16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);
  expect(roundBf16(-3.140625)).toBe(-3.140625);
});
