import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { Dim, DType } from '../../src/ir/types.ts';
import { type Buffer, dtypeBytes, type Kernel, type KernelProgram } from '../../src/passes/kernelIR.ts';
import { checkMemoryPlan, type MemoryPlan, planMemory } from '../../src/passes/memory.ts';
import { kernel } from './kernels.ts';

/**
 * Random kernel programs: a linear schedule where each kernel reads some earlier temps (and maybe
 * an input, a weight or a cache) and writes one or two new temps; some kernels update a temp in
 * place or write a persistent cache; one temp is declared and never used.
 */
interface Spec {
  readonly kernels: readonly {
    readonly reads: readonly number[];
    readonly writes: readonly { dtype: DType; shape: Dim[] }[];
    readonly inPlace: number | null;
    readonly cache: number | null;
    readonly input: boolean;
  }[];
  readonly caches: readonly { dtype: DType; rest: number[] }[];
  readonly canvas: number;
  readonly rows: number;
}

const dtype = fc.constantFrom<DType>('f32', 'f16', 'bf16', 'i32');
const dim = fc.oneof(fc.integer({ min: 1, max: 48 }), fc.constantFrom<Dim>('L', '#rows'));
const specArb: fc.Arbitrary<Spec> = fc.record({
  kernels: fc.array(
    fc.record({
      reads: fc.array(fc.nat(), { maxLength: 4 }),
      writes: fc.array(fc.record({ dtype, shape: fc.array(dim, { maxLength: 3 }) }), {
        minLength: 1,
        maxLength: 2,
      }),
      inPlace: fc.option(fc.nat()),
      cache: fc.option(fc.nat()),
      input: fc.boolean(),
    }),
    { minLength: 1, maxLength: 14 },
  ),
  caches: fc.array(fc.record({ dtype, rest: fc.array(fc.integer({ min: 1, max: 8 }), { maxLength: 2 }) }), {
    maxLength: 3,
  }),
  canvas: fc.integer({ min: 1, max: 64 }),
  rows: fc.integer({ min: 0, max: 64 }),
});

const mk = (name: string, kind: Buffer['kind'], dt: DType, shape: Dim[]): Buffer => ({
  name,
  kind,
  dtype: dt,
  shape,
  layout: 'row-major',
});

function build(spec: Spec): KernelProgram {
  const buffers: Buffer[] = [mk('tokens', 'input', 'i32', ['L']), mk('w', 'weight', 'f32', [8, 8])];
  spec.caches.forEach((c, i) => {
    buffers.push(mk(`kv.k.${i}`, 'persistent', c.dtype, ['L', ...c.rest]));
  });
  buffers.push(mk('dead', 'temp', 'f32', [4]));
  const temps: string[] = [];
  const kernels: Kernel[] = spec.kernels.map((k, i) => {
    const reads = new Set<string>();
    const writes: string[] = [];
    if (temps.length > 0) for (const r of k.reads) reads.add(temps[r % temps.length] as string);
    if (k.input) reads.add('tokens');
    if (i % 2 === 0) reads.add('w');
    if (k.inPlace !== null && temps.length > 0) {
      const t = temps[k.inPlace % temps.length] as string;
      reads.add(t);
      writes.push(t);
    }
    if (k.cache !== null && spec.caches.length > 0) writes.push(`kv.k.${k.cache % spec.caches.length}`);
    k.writes.forEach((w, j) => {
      const name = `t${i}.${j}`;
      buffers.push(mk(name, 'temp', w.dtype, w.shape));
      writes.push(name);
    });
    temps.push(...k.writes.map((_, j) => `t${i}.${j}`));
    return kernel(`k${i}`, [...reads], writes);
  });
  return { name: 'random', buffers, kernels };
}

const sizeOf =
  (spec: Spec) =>
  (d: Dim): number =>
    typeof d === 'number' ? d : d === 'L' ? spec.canvas : spec.rows;

const optsArb = fc.record({
  align: fc.constantFrom(1, 4, 8, 64, 256),
  wholeBuffer: fc.boolean(),
  batch: fc.integer({ min: 1, max: 4 }),
});

/** The temps live at each kernel, computed here independently of the planner. */
function liveAt(kp: KernelProgram): Set<string>[] {
  const temp = new Set(kp.buffers.filter((b) => b.kind === 'temp').map((b) => b.name));
  const first = new Map<string, number>();
  const last = new Map<string, number>();
  kp.kernels.forEach((k, i) => {
    for (const n of [...k.reads, ...k.writes]) {
      if (!temp.has(n)) continue;
      if (!first.has(n)) first.set(n, i);
      last.set(n, i);
    }
  });
  return kp.kernels.map(
    (_, i) => new Set([...first].filter(([n, f]) => f <= i && i <= (last.get(n) ?? -1)).map(([n]) => n)),
  );
}

const plans = fc.tuple(specArb, optsArb).map(([spec, opts]) => {
  const kp = build(spec);
  const size = sizeOf(spec);
  return { spec, kp, size, opts, plan: planMemory(kp, size, opts) };
});

const collide = (plan: MemoryPlan, a: string, b: string): boolean => {
  const pa = plan.arena.get(a);
  const pb = plan.arena.get(b);
  if (!pa || !pb) return false;
  if (plan.wholeBuffer) return pa.slot === pb.slot;
  return pa.offset < pb.offset + pb.bytes && pb.offset < pa.offset + pa.bytes;
};

describe('memory planning properties', () => {
  test('the plan checks clean', () => {
    fc.assert(
      fc.property(plans, ({ kp, plan, size }) => {
        expect(checkMemoryPlan(kp, plan, size)).toEqual([]);
      }),
      {
        numRuns: 300,
      },
    );
  });

  test('no two simultaneously live temps share memory (or a slot)', () => {
    fc.assert(
      fc.property(plans, ({ kp, plan }) => {
        for (const live of liveAt(kp)) {
          const names = [...live];
          for (const a of names)
            for (const b of names) if (a < b) expect(collide(plan, a, b), `${a} ${b}`).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('every used temp is placed, aligned, big enough; peak ≤ naive', () => {
    fc.assert(
      fc.property(plans, ({ kp, plan, size, opts }) => {
        const used = new Set(kp.kernels.flatMap((k) => [...k.reads, ...k.writes]));
        let naive = 0;
        for (const b of kp.buffers) {
          const p = plan.arena.get(b.name);
          if (b.kind !== 'temp' || !used.has(b.name)) {
            expect(p).toBeUndefined();
            continue;
          }
          const raw = b.shape.reduce<number>((n, d) => n * size(d), dtypeBytes[b.dtype]);
          expect(p).toBeDefined();
          if (!p) continue;
          expect(p.offset % opts.align).toBe(0);
          expect(p.bytes % opts.align).toBe(0);
          expect(p.bytes).toBeGreaterThanOrEqual(raw);
          expect(p.bytes).toBeLessThan(Math.max(raw, 1) + opts.align);
          expect(p.offset + p.bytes).toBeLessThanOrEqual(plan.peakBytes);
          naive += p.bytes;
        }
        expect(plan.naiveBytes).toBe(naive);
        expect(plan.peakBytes).toBeLessThanOrEqual(plan.naiveBytes);
        if (opts.wholeBuffer)
          expect(plan.peakBytes).toBe((plan.slots ?? []).reduce((s, sl) => s + sl.bytes, 0));
      }),
      { numRuns: 300 },
    );
  });

  test('the persistent region: disjoint, aligned, each cache sized L × batch', () => {
    fc.assert(
      fc.property(plans, ({ spec, kp, plan, opts }) => {
        const caches = kp.buffers.filter((b) => b.kind === 'persistent');
        expect([...plan.persistent.keys()].sort()).toEqual(caches.map((b) => b.name).sort());
        let total = 0;
        spec.caches.forEach((c, i) => {
          const p = plan.persistent.get(`kv.k.${i}`);
          const exact = spec.canvas * opts.batch * c.rest.reduce((n, d) => n * d, dtypeBytes[c.dtype]);
          expect(p?.bytes).toBe(Math.ceil(exact / opts.align) * opts.align);
          expect((p?.offset ?? 1) % opts.align).toBe(0);
          total += p?.bytes ?? 0;
        });
        expect(plan.persistentBytes).toBe(total);
        const ps = [...plan.persistent.values()].sort((a, b) => a.offset - b.offset);
        for (let i = 1; i < ps.length; i++) {
          const prev = ps[i - 1];
          expect((prev?.offset ?? 0) + (prev?.bytes ?? 0)).toBeLessThanOrEqual(ps[i]?.offset ?? 0);
        }
        for (const name of plan.persistent.keys()) expect(plan.arena.has(name)).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  test('whole-buffer mode never binds a kernel’s read and write of different buffers to one slot', () => {
    fc.assert(
      fc.property(
        plans.filter((p) => p.opts.wholeBuffer),
        ({ kp, plan }) => {
          for (const k of kp.kernels) {
            for (const r of k.reads) {
              for (const w of k.writes) {
                const sr = plan.arena.get(r)?.slot;
                if (r !== w && sr !== undefined) expect(sr).not.toBe(plan.arena.get(w)?.slot);
              }
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  test('checkMemoryPlan finds a temp moved onto a live one', () => {
    fc.assert(
      fc.property(plans, fc.nat(), ({ kp, plan, size }, pick) => {
        const pairs = liveAt(kp).flatMap((live) => {
          const names = [...live];
          return names.flatMap((a) => names.filter((b) => b !== a).map((b) => [a, b] as const));
        });
        fc.pre(pairs.length > 0);
        const [a, b] = pairs[pick % pairs.length] as readonly [string, string];
        const target = plan.arena.get(b);
        const moved = plan.arena.get(a);
        if (!target || !moved) throw new Error('unplaced temp');
        const arena = new Map(plan.arena);
        arena.set(a, { ...moved, offset: target.offset, ...(plan.wholeBuffer ? { slot: target.slot } : {}) });
        const v = checkMemoryPlan(kp, { ...plan, arena }, size);
        expect(v.some((m) => m.includes(a) && m.includes(b))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  test('checkMemoryPlan finds misalignment and overlapping caches', () => {
    fc.assert(
      fc.property(plans, ({ kp, plan, size }) => {
        const [name, p] = [...plan.arena][0] ?? [];
        if (name !== undefined && p !== undefined && plan.align > 1) {
          const arena = new Map(plan.arena).set(name, { ...p, offset: p.offset + 1 });
          expect(checkMemoryPlan(kp, { ...plan, arena }, size).join('\n')).toMatch(
            /not aligned|not the base/,
          );
        }
        const caches = [...plan.persistent];
        if (caches.length >= 2) {
          const [[a], [b, pb]] = caches as [[string, unknown], [string, { offset: number; bytes: number }]];
          const persistent = new Map(plan.persistent).set(b, { ...pb, offset: 0 });
          expect(checkMemoryPlan(kp, { ...plan, persistent }, size)).toContain(
            `persistent ${a} and ${b} overlap`,
          );
        }
      }),
      { numRuns: 200 },
    );
  });
});
