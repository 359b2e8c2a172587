import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  type AttentionOptions,
  attentionPartial,
  mergePartials,
  type Partial,
} from '../../src/ir/attention.ts';

/**
 * Naive attention written independently of the kernel: for each query row and head, list the
 * visible keys, exponentiate the raw scores (no max subtraction), normalise. Inputs here are small,
 * so exp never overflows.
 */
function naive(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  qpos: Int32Array,
  kpos: Int32Array,
  o: AttentionOptions,
): Partial {
  const { heads: H, kvHeads: KVH, headDim: hd } = o;
  const out = new Float64Array(qpos.length * H * hd);
  const lse = new Float64Array(qpos.length * H);
  for (let i = 0; i < qpos.length; i++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor((h * KVH) / H);
      const keys: number[] = [];
      for (let j = 0; j < kpos.length; j++) {
        const ok =
          o.mask === 'none' ||
          (o.blocks?.[kpos[j] as number] as number) <= (o.blocks?.[qpos[i] as number] as number);
        if (ok) keys.push(j);
      }
      const e = keys.map((j) => {
        let dot = 0;
        for (let d = 0; d < hd; d++)
          dot += (q[(i * H + h) * hd + d] as number) * (k[(j * KVH + g) * hd + d] as number);
        return Math.exp(dot * o.scale);
      });
      const z = e.reduce((a, b) => a + b, 0);
      lse[i * H + h] = Math.log(z); // log(0) = -Infinity for a row with no key
      for (let d = 0; d < hd; d++) {
        let acc = 0;
        keys.forEach((j, n) => {
          acc += ((e[n] as number) / z) * (v[(j * KVH + g) * hd + d] as number);
        });
        out[(i * H + h) * hd + d] = keys.length === 0 ? 0 : acc;
      }
    }
  }
  return { o: out, lse };
}

const close = (a: number, b: number, tol: number): boolean =>
  a === b || Math.abs(a - b) <= tol * Math.max(1, Math.abs(a), Math.abs(b));

function expectClose(actual: Float64Array, expected: Float64Array, tol: number): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i] as number;
    const b = expected[i] as number;
    expect(Number.isNaN(a), `NaN at ${i}`).toBe(false);
    if (!close(a, b, tol)) expect.fail(`entry ${i}: ${a} vs ${b} (tolerance ${tol})`);
  }
}

/** A random attention problem: GQA shapes, a canvas with a prompt (block -1) and blocks. */
interface Problem {
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  qpos: Int32Array;
  kpos: Int32Array;
  opts: AttentionOptions;
}

const vals = (n: number) =>
  fc
    .array(fc.double({ min: -2, max: 2, noNaN: true }), { minLength: n, maxLength: n })
    .map((a) => Float64Array.from(a));

const problem = (maxKeys = 7): fc.Arbitrary<Problem> =>
  fc
    .record({
      kvHeads: fc.integer({ min: 1, max: 3 }),
      group: fc.integer({ min: 1, max: 3 }),
      hd: fc.integer({ min: 1, max: 4 }),
      L: fc.integer({ min: 1, max: 10 }),
      promptLen: fc.integer({ min: 0, max: 4 }),
      blockLen: fc.integer({ min: 1, max: 4 }),
      nq: fc.integer({ min: 0, max: 4 }),
      nk: fc.integer({ min: 0, max: maxKeys }),
      mask: fc.constantFrom('none' as const, 'block_causal' as const),
      scale: fc.double({ min: 0.1, max: 2, noNaN: true }),
    })
    .chain((s) => {
      const heads = s.kvHeads * s.group;
      const blocks = Int32Array.from({ length: s.L }, (_, p) =>
        p < s.promptLen ? -1 : Math.floor((p - s.promptLen) / s.blockLen),
      );
      const pos = (n: number) =>
        fc
          .array(fc.integer({ min: 0, max: s.L - 1 }), { minLength: n, maxLength: n })
          .map((a) => Int32Array.from(a));
      return fc.record({
        q: vals(s.nq * heads * s.hd),
        k: vals(s.nk * s.kvHeads * s.hd),
        v: vals(s.nk * s.kvHeads * s.hd),
        qpos: pos(s.nq),
        kpos: pos(s.nk),
        opts: fc.constant<AttentionOptions>({
          scale: s.scale,
          mask: s.mask,
          blocks,
          heads,
          kvHeads: s.kvHeads,
          headDim: s.hd,
        }),
      });
    });

const noNaN = (p: Partial): void => {
  expect(p.o.some(Number.isNaN)).toBe(false);
  expect(p.lse.some(Number.isNaN)).toBe(false);
};

describe('attentionPartial', () => {
  test('equals a naive softmax over the visible keys (GQA, both masks)', () => {
    fc.assert(
      fc.property(problem(), ({ q, k, v, qpos, kpos, opts }) => {
        const got = attentionPartial(q, k, v, qpos, kpos, opts);
        const want = naive(q, k, v, qpos, kpos, opts);
        noNaN(got);
        expectClose(got.o, want.o, 1e-12);
        expectClose(got.lse, want.lse, 1e-12);
      }),
      { numRuns: 300 },
    );
  });

  test('kv_head: merging one partial per KV head, each over its own keys, gives every head its own keys', () => {
    const withPicks = problem().chain((p) =>
      fc.record({
        p: fc.constant(p),
        picks: fc.array(fc.boolean(), {
          minLength: p.opts.kvHeads * p.kpos.length,
          maxLength: p.opts.kvHeads * p.kpos.length,
        }),
      }),
    );
    fc.assert(
      fc.property(withPicks, ({ p: { q, k, v, qpos, kpos, opts }, picks }) => {
        const { heads: H, kvHeads: KVH, headDim: hd } = opts;
        const nk = kpos.length;
        const row = KVH * hd;
        // The keys of KV head g: its picked rows of k, v and kpos.
        const keysOf = (g: number) => {
          const js = Array.from({ length: nk }, (_, j) => j).filter((j) => picks[g * nk + j]);
          const rows = (t: Float64Array) =>
            Float64Array.from(js.flatMap((j) => [...t.subarray(j * row, (j + 1) * row)]));
          return { k: rows(k), v: rows(v), kpos: Int32Array.from(js, (j) => kpos[j] as number) };
        };
        let merged: Partial | undefined;
        for (let g = 0; g < KVH; g++) {
          const own = keysOf(g);
          const part = attentionPartial(q, own.k, own.v, qpos, own.kpos, { ...opts, kvHead: g });
          merged = merged ? mergePartials(merged.o, merged.lse, part.o, part.lse, hd) : part;
        }
        const got = merged as Partial;
        noNaN(got);
        for (let g = 0; g < KVH; g++) {
          const own = keysOf(g);
          const want = naive(q, own.k, own.v, qpos, own.kpos, opts);
          for (let i = 0; i < qpos.length; i++)
            for (let h = g * (H / KVH); h < (g + 1) * (H / KVH); h++) {
              const r = i * H + h;
              expectClose(got.o.subarray(r * hd, (r + 1) * hd), want.o.subarray(r * hd, (r + 1) * hd), 1e-12);
              expectClose(got.lse.subarray(r, r + 1), want.lse.subarray(r, r + 1), 1e-12);
            }
        }
      }),
      { numRuns: 300 },
    );
  });

  test('GQA: query head h reads kv head floor(h / (H / KVH))', () => {
    // 4 query heads, 2 kv heads, hd 1, one key: o of head h is v of kv head floor(h / 2).
    const q = Float64Array.from([1, 1, 1, 1]);
    const k = Float64Array.from([1, 1]);
    const v = Float64Array.from([10, 20]);
    const p = attentionPartial(q, k, v, Int32Array.of(0), Int32Array.of(0), {
      scale: 1,
      mask: 'none',
      heads: 4,
      kvHeads: 2,
      headDim: 1,
    });
    expect([...p.o]).toEqual([10, 10, 20, 20]);
    expect([...p.lse]).toEqual([1, 1, 1, 1]);
  });

  test('rows that see no key get o = 0 and lse = -Infinity', () => {
    // canvas: 2 prompt positions (block -1), then blocks 0 and 1 of length 2.
    const blocks = Int32Array.of(-1, -1, 0, 0, 1, 1);
    const opts: AttentionOptions = {
      scale: 1,
      mask: 'block_causal',
      blocks,
      heads: 2,
      kvHeads: 1,
      headDim: 2,
    };
    const q = Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    const k = Float64Array.from([1, 0, 0, 1]);
    const v = Float64Array.from([3, 4, 5, 6]);
    // query 0 in the prompt, query 1 in block 0; keys only in block 1.
    const p = attentionPartial(q, k, v, Int32Array.of(1, 2), Int32Array.of(4, 5), opts);
    expect([...p.o]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect([...p.lse]).toEqual([-Infinity, -Infinity, -Infinity, -Infinity]);
    // No keys at all.
    const e = attentionPartial(
      q,
      new Float64Array(0),
      new Float64Array(0),
      Int32Array.of(1, 2),
      new Int32Array(0),
      opts,
    );
    expect([...e.o]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect([...e.lse]).toEqual([-Infinity, -Infinity, -Infinity, -Infinity]);
  });

  test('block_causal: the prompt sees only the prompt; a block sees itself and earlier blocks', () => {
    const blocks = Int32Array.of(-1, 0, 1);
    const opts: AttentionOptions = {
      scale: 1,
      mask: 'block_causal',
      blocks,
      heads: 1,
      kvHeads: 1,
      headDim: 1,
    };
    // All scores 0, so o is the mean of the visible values.
    const q = Float64Array.of(0, 0, 0);
    const k = Float64Array.of(1, 1, 1);
    const v = Float64Array.of(3, 6, 12);
    const p = attentionPartial(q, k, v, Int32Array.of(0, 1, 2), Int32Array.of(0, 1, 2), opts);
    expectClose(p.o, Float64Array.of(3, 4.5, 7), 1e-15);
    expectClose(p.lse, Float64Array.of(0, Math.log(2), Math.log(3)), 1e-15);
  });

  test('is stable for large scores (subtracts the row max)', () => {
    const q = Float64Array.of(1000);
    const k = Float64Array.of(1, 1.001);
    const v = Float64Array.of(1, 2);
    const p = attentionPartial(q, k, v, Int32Array.of(0), Int32Array.of(0, 1), {
      scale: 1,
      mask: 'none',
      heads: 1,
      kvHeads: 1,
      headDim: 1,
    });
    // scores 1000 and 1001: weights 1/(1+e) and e/(1+e).
    const e = Math.E;
    expectClose(p.o, Float64Array.of((1 + 2 * e) / (1 + e)), 1e-13);
    expectClose(p.lse, Float64Array.of(1001 + Math.log(1 + 1 / e)), 1e-13);
  });
});

/** Keeps the keys whose segment is s (for a partition given by a segment per key). */
function segment(pr: Problem, seg: readonly number[], s: number): Problem {
  const { kvHeads, headDim: hd } = pr.opts;
  const keys = seg.flatMap((x, j) => (x === s ? [j] : []));
  const rows = (a: Float64Array) => {
    const out = new Float64Array(keys.length * kvHeads * hd);
    keys.forEach((j, n) => {
      out.set(a.subarray(j * kvHeads * hd, (j + 1) * kvHeads * hd), n * kvHeads * hd);
    });
    return out;
  };
  return { ...pr, k: rows(pr.k), v: rows(pr.v), kpos: Int32Array.from(keys, (j) => pr.kpos[j] as number) };
}

const run = (p: Problem): Partial => attentionPartial(p.q, p.k, p.v, p.qpos, p.kpos, p.opts);
const merge = (a: Partial, b: Partial, hd: number): Partial => mergePartials(a.o, a.lse, b.o, b.lse, hd);

describe('LSE merge', () => {
  test('merging the partials of a key partition equals attention over all keys', () => {
    const withPartition = problem(9).chain((pr) =>
      fc.record({
        pr: fc.constant(pr),
        parts: fc.integer({ min: 1, max: 4 }),
        seg: fc.array(fc.nat(3), { minLength: pr.kpos.length, maxLength: pr.kpos.length }),
      }),
    );
    fc.assert(
      fc.property(withPartition, ({ pr, parts, seg }) => {
        const s = seg.map((x) => x % parts);
        const hd = pr.opts.headDim;
        const partials = Array.from({ length: parts }, (_, i) => run(segment(pr, s, i)));
        for (const p of partials) noNaN(p);
        const merged = partials.slice(1).reduce((acc, p) => merge(acc, p, hd), partials[0] as Partial);
        const full = run(pr);
        noNaN(merged);
        expectClose(merged.o, full.o, 1e-12);
        expectClose(merged.lse, full.lse, 1e-12);
      }),
      { numRuns: 400 },
    );
  });

  test('is commutative and associative, and empty partials are its identity', () => {
    // Partials of three disjoint key sets of one problem, plus raw random partials with -Infinity rows.
    const rawPartial = (rows: number, hd: number) =>
      fc.record({
        o: vals(rows * hd),
        lse: fc
          .array(
            fc.oneof(fc.double({ min: -30, max: 30, noNaN: true }), fc.constant(Number.NEGATIVE_INFINITY)),
            {
              minLength: rows,
              maxLength: rows,
            },
          )
          .map((a) => Float64Array.from(a)),
      });
    const triple = fc
      .record({ rows: fc.integer({ min: 0, max: 6 }), hd: fc.integer({ min: 1, max: 4 }) })
      .chain(({ rows, hd }) =>
        fc.record({
          hd: fc.constant(hd),
          a: rawPartial(rows, hd),
          b: rawPartial(rows, hd),
          c: rawPartial(rows, hd),
        }),
      )
      .map(({ hd, a, b, c }) => {
        // A row with LSE -Infinity is empty: its output is 0 by contract.
        for (const p of [a, b, c]) {
          p.lse.forEach((l, r) => {
            if (l === Number.NEGATIVE_INFINITY) p.o.fill(0, r * hd, (r + 1) * hd);
          });
        }
        return { hd, a, b, c };
      });
    fc.assert(
      fc.property(triple, ({ hd, a, b, c }) => {
        const ab = merge(a, b, hd);
        const ba = merge(b, a, hd);
        noNaN(ab);
        expectClose(ab.o, ba.o, 1e-12);
        expectClose(ab.lse, ba.lse, 1e-12);
        const left = merge(ab, c, hd);
        const right = merge(a, merge(b, c, hd), hd);
        noNaN(left);
        noNaN(right);
        expectClose(left.o, right.o, 1e-12);
        expectClose(left.lse, right.lse, 1e-12);
        const empty: Partial = {
          o: new Float64Array(a.o.length),
          lse: new Float64Array(a.lse.length).fill(Number.NEGATIVE_INFINITY),
        };
        const ae = merge(a, empty, hd);
        expectClose(ae.o, a.o, 0);
        expectClose(ae.lse, a.lse, 0);
      }),
      { numRuns: 400 },
    );
  });

  test('two empty partials give o = 0 and lse = -Infinity', () => {
    const m = mergePartials(
      Float64Array.of(0, 0),
      Float64Array.of(Number.NEGATIVE_INFINITY),
      Float64Array.of(0, 0),
      Float64Array.of(Number.NEGATIVE_INFINITY),
      2,
    );
    expect([...m.o]).toEqual([0, 0]);
    expect([...m.lse]).toEqual([Number.NEGATIVE_INFINITY]);
  });

  test('hand case: equal LSEs average the outputs and add log 2', () => {
    const m = mergePartials(
      Float64Array.of(1, 3),
      Float64Array.of(0.5),
      Float64Array.of(3, 5),
      Float64Array.of(0.5),
      2,
    );
    expectClose(m.o, Float64Array.of(2, 4), 1e-15);
    expectClose(m.lse, Float64Array.of(0.5 + Math.LN2), 1e-15);
  });
});
