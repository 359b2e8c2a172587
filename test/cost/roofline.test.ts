// The roofline of one kernel, on hand-built kernels whose costs are worked out here by hand: the
// switch from memory- to compute-bound at the ridge point, what a batch scales and what it does
// not, and the monotonicity every prediction must have.
import { readdirSync, readFileSync } from 'node:fs';
import { fc, test as propTest } from '@fast-check/vitest';
import { describe, expect, test } from 'vitest';
import { overlapOf } from '../../src/cost/probe.ts';
import {
  costKernel,
  costProgram,
  costRan,
  type InPlace,
  overlapped,
  type Roofline,
  rooflineTime,
  type Sizes,
} from '../../src/cost/roofline.ts';
import { checkSource } from '../../src/dsl/check.ts';
import { ProgramBuilder } from '../../src/ir/builder.ts';
import { type Dim, index, type Stage, shapeOf, tensor, type Value } from '../../src/ir/types.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { fuseProgram } from '../../src/passes/fusion.ts';
import type { Kernel, KernelProgram } from '../../src/passes/kernelIR.ts';
import { inPlaceOverlays } from '../../src/passes/overlays.ts';
import { deepEnough, modelFor } from '../../src/runtime/modelFor.ts';

const N = 256;
const K = 512;

/** A projection x [#rows, K] · W [N, K]^T: 2·rows·N·K FLOPs; reads x and W, writes y. */
function gemm(name = 'layer.0/1.gemm'): Kernel {
  return {
    name,
    kind: 'gemm',
    stage: 'layer.0',
    reads: ['x', 'w'],
    writes: ['y'],
    grid: ['#rows', N],
    indirect: [],
    epilogue: [],
    flops: [[2, '#rows', N, K]],
    bytes: [
      [4, '#rows', K],
      [4, N, K],
      [4, '#rows', N],
    ],
    instrs: [],
  };
}

const program = (kernels: Kernel[]): KernelProgram => ({
  name: 'cached',
  buffers: [
    { name: 'x', kind: 'temp', dtype: 'f32', shape: ['#rows', K], layout: 'row-major' },
    { name: 'w', kind: 'weight', dtype: 'f32', shape: [N, K], layout: 'row-major' },
    { name: 'y', kind: 'temp', dtype: 'f32', shape: ['#rows', N], layout: 'row-major' },
    { name: 'table', kind: 'weight', dtype: 'f32', shape: [1000, 64], layout: 'row-major' },
    { name: 'h', kind: 'temp', dtype: 'f32', shape: ['L', 64], layout: 'row-major' },
  ],
  kernels,
});

const sizes = (rows: number, o: Partial<Sizes> = {}): Sizes => ({
  dim: (d: Dim) => (typeof d === 'number' ? d : d === '#rows' ? rows : 0),
  batch: 1,
  weightBytes: 4,
  ...o,
});

// Ridge point 10 FLOP/byte.
const hw: Roofline = { peakFlops: 1e12, bandwidth: 1e11 };

describe('rooflineTime', () => {
  test('takes the larger of compute and memory time and names it', () => {
    expect(rooflineTime(2e12, 1e9, hw)).toEqual({ seconds: 2, bound: 'compute' });
    expect(rooflineTime(1e9, 2e11, hw)).toEqual({ seconds: 2, bound: 'memory' });
    expect(rooflineTime(0, 0, hw)).toEqual({ seconds: 0, bound: 'memory' });
  });
});

describe('overlap', () => {
  test('1 is the pure roofline, 0 the sum, and between them a part of the shorter time is added', () => {
    expect(overlapped(2, 1, {})).toEqual({ seconds: 2, bound: 'compute' });
    expect(overlapped(2, 1, { overlap: 1 }).seconds).toBe(2);
    expect(overlapped(2, 1, { overlap: 0 }).seconds).toBe(3);
    expect(overlapped(1, 2, { overlap: 0.25 })).toEqual({ seconds: 2.75, bound: 'memory' });
    // Out of range: clamped, never a kernel faster than its longer part.
    expect(overlapped(2, 1, { overlap: 3 }).seconds).toBe(2);
    expect(overlapped(2, 1, { overlap: -1 }).seconds).toBe(3);
  });

  test('the probe reads the overlap back from a measured time, clamped to [0, 1]', () => {
    expect(overlapOf(2, 1, 2)).toBe(1);
    expect(overlapOf(2, 1, 3)).toBe(0);
    expect(overlapOf(2, 1, 2.5)).toBe(0.5);
    expect(overlapOf(2, 1, 4)).toBe(0);
    expect(overlapOf(2, 1, 1.5)).toBe(1);
    // And the roofline of that overlap gives back the measured time.
    expect(overlapped(2, 1, { overlap: overlapOf(2, 1, 2.3) }).seconds).toBeCloseTo(2.3, 12);
  });
});

describe('costKernel', () => {
  // flops = 2·r·N·K = 262144·r; bytes = 4·r·K + 4·N·K + 4·r·N = 3072·r + 524288.
  // Compute-bound when 262144·r / 1e12 > (3072·r + 524288) / 1e11, i.e. 231424·r > 5242880,
  // r > 22.65.
  test('a projection of 22 rows is memory-bound, of 23 rows compute-bound', () => {
    const k = gemm();
    const kp = program([k]);
    const at22 = costKernel(k, kp, sizes(22), hw);
    expect(at22).toMatchObject({ flops: 262144 * 22, bytes: 3072 * 22 + 524288, bound: 'memory' });
    expect(at22.seconds).toBeCloseTo((3072 * 22 + 524288) / 1e11, 15);
    const at23 = costKernel(k, kp, sizes(23), hw);
    expect(at23).toMatchObject({ flops: 262144 * 23, bytes: 3072 * 23 + 524288, bound: 'compute' });
    expect(at23.seconds).toBeCloseTo((262144 * 23) / 1e12, 15);
  });

  // A probed CPU: weights stream at a quarter of the bandwidth, a quarter of the shorter time hides.
  // compute = 262144·r / 1e12; memory = 3072·r / 1e11 + 524288 / 2.5e10. Equal at
  // r = (524288 / 2.5e10) / (262144 / 1e12 - 3072 / 1e11) = 90.62: the crossover moves from 22.65
  // (weights at the full bandwidth) to 90.62 rows.
  const probed: Roofline = { peakFlops: 1e12, bandwidth: 1e11, weightBandwidth: 2.5e10, overlap: 0.25 };
  const crossover = 524288 / 2.5e10 / (262144 / 1e12 - 3072 / 1e11);
  test('weights streamed at the weight bandwidth move the crossover to the probed figures', () => {
    expect(crossover).toBeGreaterThan(90);
    expect(crossover).toBeLessThan(91);
    const k = gemm();
    const kp = program([k]);
    const compute = (r: number) => (262144 * r) / 1e12;
    const memory = (r: number) => (3072 * r) / 1e11 + 524288 / 2.5e10;
    for (const r of [23, 50, 90]) {
      const c = costKernel(k, kp, sizes(r), probed);
      expect(c.bound).toBe('memory');
      expect(c.seconds).toBeCloseTo(memory(r) + 0.75 * compute(r), 15);
      // the same kernel on the pure roofline of the same peak and bandwidth is compute-bound
      expect(costKernel(k, kp, sizes(r), hw).bound).toBe('compute');
    }
    const at91 = costKernel(k, kp, sizes(91), probed);
    expect(at91.bound).toBe('compute');
    expect(at91.seconds).toBeCloseTo(compute(91) + 0.75 * memory(91), 15);
  });

  test('only GEMM weights stream at the weight bandwidth; attention has its own peak', () => {
    const attention: Kernel = { ...gemm('layer.0/2.attention'), kind: 'attention', reads: ['x'] };
    const slow = { ...probed, attentionFlops: 2.5e11, overlap: 1 };
    const a = costKernel(attention, program([attention]), sizes(1000), slow);
    // Its constant bytes are not a weight it reads, and its FLOPs run at the attention peak.
    expect(a.seconds).toBeCloseTo(Math.max((262144 * 1000) / 2.5e11, (3072 * 1000 + 524288) / 1e11), 15);
    const g = costKernel(gemm(), program([gemm()]), sizes(1000), slow);
    expect(g.seconds).toBeCloseTo((262144 * 1000) / 1e12, 15);
  });

  test('a batch multiplies the rows, not the weight', () => {
    const k = gemm();
    const c = costKernel(k, program([k]), sizes(10, { batch: 8 }), hw);
    expect(c.flops).toBe(262144 * 80);
    expect(c.bytes).toBe(3072 * 80 + 524288);
  });

  test('16-bit weights halve the weight bytes and nothing else', () => {
    const k = gemm();
    const c = costKernel(k, program([k]), sizes(10, { weightBytes: 2 }), hw);
    expect(c.bytes).toBe(3072 * 10 + 524288 / 2);
    expect(c.flops).toBe(262144 * 10);
  });

  test('an embedding reads one table row per row it writes, not the whole table', () => {
    const embed: Kernel = {
      ...gemm('embed/0.embed'),
      kind: 'embed',
      stage: 'embed',
      reads: ['table', 'tokens'],
      writes: ['h'],
      flops: [],
      // As the fusion pass counts it: the whole table, the token ids, the rows written.
      bytes: [
        [4, 1000, 64],
        [4, 'L'],
        [4, 'L', 64],
      ],
    };
    const s = { ...sizes(0), dim: (d: Dim) => (typeof d === 'number' ? d : 10) };
    expect(costKernel(embed, program([embed]), s, hw).bytes).toBe(4 * 10 + 4 * 10 * 64 + 4 * 10 * 64);
  });

  test('a step of a program adds up its kernels', () => {
    const a = gemm('layer.0/1.gemm');
    const b = gemm('layer.1/1.gemm');
    const step = costProgram(program([a, b]), sizes(23), hw);
    expect(step.kernels).toHaveLength(2);
    expect(step.seconds).toBeCloseTo(2 * ((262144 * 23) / 1e12), 15);
    expect(step.flops).toBe(2 * 262144 * 23);
  });
});

describe('monotonicity', () => {
  const term = fc.tuple(
    fc.integer({ min: 1, max: 8 }),
    fc.subarray(['#rows', 'L', 64, 128] as const, { minLength: 0, maxLength: 3 }),
  );
  const kernelArb = fc
    .record({
      flops: fc.array(term, { maxLength: 3 }),
      bytes: fc.array(term, { minLength: 1, maxLength: 4 }),
    })
    .map(
      ({ flops, bytes }): Kernel => ({
        ...gemm(),
        flops: flops.map(([c, dims]) => [c, ...dims] as const),
        bytes: bytes.map(([c, dims]) => [c, ...dims] as const),
      }),
    );
  const sizeArb = fc.record({
    rows: fc.integer({ min: 0, max: 4096 }),
    L: fc.integer({ min: 1, max: 8192 }),
  });
  const at = (s: { rows: number; L: number }, batch = 1): Sizes => ({
    dim: (d) => (typeof d === 'number' ? d : d === 'L' ? s.L : s.rows),
    batch,
    weightBytes: 4,
  });

  propTest.prop([
    kernelArb,
    sizeArb,
    fc.double({ min: 1e9, max: 1e13, noNaN: true }),
    fc.double({ min: 1, max: 100, noNaN: true }),
  ])('more bandwidth never predicts a slower kernel', (k, s, bandwidth, more) => {
    const slow = costKernel(k, program([k]), at(s), { peakFlops: 1e12, bandwidth });
    const fast = costKernel(k, program([k]), at(s), { peakFlops: 1e12, bandwidth: bandwidth * more });
    expect(fast.seconds).toBeLessThanOrEqual(slow.seconds);
  });

  propTest.prop([kernelArb, sizeArb, fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 64 })])(
    'a larger batch never takes longer per sequence',
    (k, s, b1, b2) => {
      const [small, large] = b1 <= b2 ? [b1, b2] : [b2, b1];
      const per = (b: number) => costKernel(k, program([k]), at(s, b), hw).seconds / b;
      expect(per(large)).toBeLessThanOrEqual(per(small) * (1 + 1e-12));
    },
  );

  test('a memory-bound projection gets cheaper per sequence with every doubling of the batch', () => {
    const k = gemm();
    // 2 rows a sequence: 16 rows at batch 8, still below the ridge.
    const per = [1, 2, 4, 8].map((b) => costKernel(k, program([k]), sizes(2, { batch: b }), hw));
    expect(per.every((c) => c.bound === 'memory')).toBe(true);
    for (let i = 1; i < per.length; i++)
      expect((per[i] as { seconds: number }).seconds / 2 ** i).toBeLessThan(
        (per[i - 1] as { seconds: number }).seconds / 2 ** (i - 1),
      );
  });
});

describe('the split of kernel costs the roofline relies on', () => {
  // The batch leaves a cost's constant terms alone, taking them for the weights: true of every
  // kernel of every example plan, or a batch would be costed wrong.
  test.each(readdirSync('examples').filter((f) => f.endsWith('.kvp')))('%s', (file) => {
    const path = `examples/${file}`;
    const plan = checkSource({ path, text: readFileSync(path, 'utf8') }).plans[0];
    if (!plan) throw new Error(`${path} does not check`);
    const config = modelFor(plan, presets.small as ModelConfig);
    const { state } = compilePlan(plan, deepEnough(plan, config), { target: 'cpu' });
    for (const kp of state.kernels?.values() ?? [])
      for (const k of kp.kernels) {
        const constant = (c: Kernel['bytes']) =>
          c
            .filter(([, ...dims]) => dims.every((d) => typeof d === 'number'))
            .reduce((a, [coef, ...dims]) => a + dims.reduce<number>((p, d) => p * (d as number), coef), 0);
        const weights = k.reads
          .flatMap((r) => kp.buffers.filter((b) => b.name === r && b.kind === 'weight'))
          .reduce((a, b) => a + 4 * b.shape.reduce<number>((p, d) => p * (d as number), 1), 0);
        expect({ kernel: k.name, bytes: constant(k.bytes), flops: constant(k.flops) }).toEqual({
          kernel: k.name,
          bytes: weights,
          flops: 0,
        });
      }
  });
});

describe('a step costed at the programs its layers ran', () => {
  // FlashBlock serves the current block's external partial from its store on most cached steps
  // (the reuse program), where the cached program computes it: a reused step costed as cached
  // counted an attention over the whole prefix that never ran.
  const path = 'examples/flashblock.kvp';
  const plan = checkSource({ path, text: readFileSync(path, 'utf8') }).plans[0];
  if (!plan) throw new Error(`${path} does not check`);
  const config = deepEnough(plan, modelFor(plan, presets.small as ModelConfig));
  const programs = compilePlan(plan, config, { target: 'cpu' }).state.kernels as ReadonlyMap<
    string,
    KernelProgram
  >;
  const layers = Array.from({ length: config.layers }, (_, l) => l);
  const ran = (of: (l: number) => string) => new Map(layers.map((l) => [l, of(l)]));
  const s = { dim: (d: Dim) => (d === 'L' ? 256 : 16), batch: 1, weightBytes: 4 };

  test('every layer at one program is that program', () => {
    for (const name of ['refresh', 'cached', 'reuse']) {
      const program = programs.get(name) as KernelProgram;
      expect(
        costRan(
          programs,
          ran(() => name),
          s,
          hw,
        ),
      ).toEqual(costProgram(program, s, hw));
    }
  });

  test('a program the plan does not have is refused, not costed as nothing', () => {
    expect(() =>
      costRan(
        programs,
        ran(() => 'refreshed'),
        s,
        hw,
      ),
    ).toThrow('no kernels of the refreshed program');
  });

  test('a reused layer costs less than a cached one, and each layer counts its own', () => {
    const cached = costRan(
      programs,
      ran(() => 'cached'),
      s,
      hw,
    );
    const reuse = costRan(
      programs,
      ran(() => 'reuse'),
      s,
      hw,
    );
    const mixed = costRan(
      programs,
      ran((l) => (l === 0 ? 'cached' : 'reuse')),
      s,
      hw,
    );
    expect(reuse.seconds).toBeLessThan(cached.seconds);
    expect(mixed.seconds).toBeGreaterThan(reuse.seconds);
    expect(mixed.seconds).toBeLessThan(cached.seconds);
    expect(mixed.kernels).toHaveLength(
      reuse.kernels.length + (cached.kernels.length - reuse.kernels.length) / config.layers,
    );
  });
});

describe('a scatter the memory plan runs in place', () => {
  // Elastic-Cache's cached layers restore the rows a drift refresh recomputed from the hidden
  // cache (`0.copy`), every layer's down projection scatters its rows into the carried hidden
  // state, and K and V are read as the caches with the fresh rows over them: on the CPU all of
  // them write over their base, which the roofline counted as read or written whole (L rows).
  const compiled = (file: string) => {
    const path = `examples/${file}.kvp`;
    const plan = checkSource({ path, text: readFileSync(path, 'utf8') }).plans[0];
    if (!plan) throw new Error(`${path} does not check`);
    const config = modelFor(plan, presets.small as ModelConfig);
    return { config, state: compilePlan(plan, config, { target: 'cpu' }).state };
  };
  const { config, state } = compiled('elastic-cache');
  const d = config.dModel;
  const kvWidth = config.kvHeads * config.headDim;
  const kp = state.kernels?.get('cached') as KernelProgram;
  const inPlace: InPlace = state.memory?.get('cached') ?? {};
  const aliases = inPlace.aliases ?? new Map<string, string>();
  /** The canvas L, `rows` rows in every index list, `written` in the write-back lists. */
  const at = (L: number, rows: number, written = rows): Sizes => ({
    dim: (x: Dim) => (typeof x === 'number' ? x : x === 'L' ? L : x.startsWith('#write') ? written : rows),
    batch: 1,
    weightBytes: 4,
  });
  const copy = kp.kernels.find((k) => k.name === 'layer.1/0.copy') as Kernel;

  test('a restore moves its rows and their index lists, not the canvas', () => {
    expect(copy.writes.some((w) => aliases.has(w))).toBe(true);
    for (const [L, rows] of [
      [256, 3],
      [1280, 17],
      [64, 64],
    ] as const) {
      // the cached rows read and written, the gather's and the scatter's index list
      expect(costKernel(copy, kp, at(L, rows), hw, inPlace).bytes).toBe(2 * 4 * rows * d + 2 * 4 * rows);
      // as a copy: the cached rows, both lists, the base read and the result written
      expect(costKernel(copy, kp, at(L, rows), hw).bytes).toBe(4 * rows * d + 2 * 4 * rows + 2 * 4 * L * d);
    }
  });

  test('a fused residual scatter costs its rows written, not the canvas read and written', () => {
    const down = kp.kernels.filter((k) => k.writes.some((w) => aliases.has(w)) && k.kind === 'gemm');
    expect(down.length).toBe(config.layers);
    for (const k of down) {
      const L = 1280;
      const copied = costKernel(k, kp, at(L, 17), hw).bytes;
      expect(copied - costKernel(k, kp, at(L, 17), hw, inPlace).bytes).toBe(2 * 4 * L * d - 4 * 17 * d);
    }
  });

  test('K and V overlaid in place cost their fresh rows, and the rows saved and restored', () => {
    // The projection that writes a cached layer's fresh K and V rows: each overlay was a canvas
    // written; in place it is the rows written into the cache.
    const qkv = kp.kernels.find((k) => k.name === 'layer.1/2.gemm') as Kernel;
    expect(qkv.writes.filter((w) => inPlace.overlays?.has(w))).toHaveLength(2);
    const L = 1280;
    const copied = costKernel(qkv, kp, at(L, 17), hw).bytes;
    expect(copied - costKernel(qkv, kp, at(L, 17), hw, inPlace).bytes).toBe(2 * 4 * kvWidth * (L - 17));
    // Fast-dLLM v2 caches only what precedes its block: the block's rows are saved before the
    // overlay and restored after it, each read and written twice.
    const v2 = compiled('fast-dllm-v2');
    const v2kp = v2.state.kernels?.get('cached') as KernelProgram;
    const v2mem = v2.state.memory?.get('cached');
    const fresh = v2kp.kernels.find((k) => k.writes.some((w) => v2mem?.overlays?.has(w))) as Kernel;
    const written = (w: number) => costKernel(fresh, v2kp, at(L, 32, w), hw, v2mem).bytes;
    // every row written back: nothing saved
    expect(costKernel(fresh, v2kp, at(L, 32, 32), hw).bytes - written(32)).toBe(2 * 4 * kvWidth * (L - 32));
    expect(written(0) - costKernel(fresh, v2kp, at(L, 32, 0), hw).bytes).toBe(
      -2 * 4 * kvWidth * (L - 32) + 2 * 4 * 4 * kvWidth * 32,
    );
  });

  test('an overlay read only by its own write-back: no base read and no result write were counted', () => {
    // scatter(cache_read(K), rows, fresh) written back in the same kernel and read nowhere else:
    // the fusion pass counts neither the cache it reads in the kernel nor the overlay it keeps there.
    const pb = new ProgramBuilder('p.cached');
    const cache = pb.resource({ name: 'k.0', kind: 'kv', dtype: 'f32', shape: ['L', 8] });
    const sb = pb.stage('layer.0');
    const h = sb.input('h', 'carried', tensor('f32', ['L', 8]));
    const rows = sb.input('rows.0', 'index', index('#rows.0'));
    const fresh = sb.op1('gather', [h, rows]);
    const overlay = sb.op1('scatter', [sb.cacheRead(cache), rows, fresh]);
    const writes = sb.input('write.0', 'index', index('#write.0'));
    sb.cacheWrite(cache, writes, sb.op1('gather', [overlay, writes]));
    sb.output('h', h);
    const p = pb.finish();
    const fused = fuseProgram(p);
    const [k] = fused.kernels;
    if (!k || fused.kernels.length !== 1) throw new Error('expected one kernel');
    expect(k.writes).not.toContain(`%${overlay.id}`);
    const overlays = new Map(
      [...inPlaceOverlays(p.stages[0] as Stage)].map(([id, w]) => [
        `%${id}`,
        shapeOf((w.args[0] as Value).type)[0] as Dim,
      ]),
    );
    expect([...overlays.keys()]).toEqual([`%${overlay.id}`]);
    // In place it writes the fresh rows into the cache, and saves and restores those not written back.
    for (const written of [7, 0]) {
      const s = at(1280, 7, written);
      expect(costKernel(k, fused, s, hw, { overlays }).bytes - costKernel(k, fused, s, hw).bytes).toBe(
        4 * 8 * 7 + 4 * 4 * 8 * (7 - written),
      );
    }
  });

  test('every example plan: in place never costs more here, and only kernels doing it change', () => {
    const dir = 'examples';
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.kvp'))) {
      const checked = checkSource({
        path: `${dir}/${file}`,
        text: readFileSync(`${dir}/${file}`, 'utf8'),
      }).plans;
      for (const p of checked) {
        const cfg = deepEnough(p, modelFor(p, presets.small as ModelConfig));
        const st = compilePlan(p, cfg, { target: 'cpu' }).state;
        for (const [phase, program] of st.kernels ?? []) {
          const plan = st.memory?.get(phase);
          const changes = (w: string) => !!plan?.aliases?.has(w) || !!plan?.overlays?.has(w);
          for (const k of program.kernels) {
            const s = at(300, 7);
            const moved = costKernel(k, program, s, hw, plan).bytes;
            const copied = costKernel(k, program, s, hw).bytes;
            if (k.writes.some(changes)) expect(moved, `${file} ${phase} ${k.name}`).toBeLessThan(copied);
            else expect(moved, `${file} ${phase} ${k.name}`).toBe(copied);
            expect(moved).toBeGreaterThan(0);
          }
        }
      }
    }
  });

  test('a step costed with the memory plans is the sum of its kernels in place', () => {
    const programs = state.kernels as ReadonlyMap<string, KernelProgram>;
    const ran = new Map(Array.from({ length: config.layers }, (_, l) => [l, 'cached']));
    const s = at(1280, 17);
    const step = costRan(programs, ran, s, hw, state.memory);
    const sum = kp.kernels.reduce((a, k) => a + costKernel(k, kp, s, hw, inPlace).bytes, 0);
    expect(step.bytes).toBe(sum);
    expect(step.bytes).toBeLessThan(costRan(programs, ran, s, hw).bytes);
  });
});
