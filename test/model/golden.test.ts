import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { ModelConfig } from '../../src/model/config.ts';
import {
  applyRope,
  attends,
  blockOf,
  goldenForward,
  type Layout,
  predictionRow,
  softmaxStats,
} from '../../src/model/golden.ts';
import { presets } from '../../src/model/presets.ts';
import {
  type FloatTensor,
  floatsOf,
  randomWeights,
  type Tensor,
  WeightError,
  type Weights,
} from '../../src/model/weights.ts';

const tiny = presets.tiny as ModelConfig;

/** Largest |a - b| over rows [r0, r1) of two [L, width] matrices. */
const rowDiff = (a: Float64Array, b: Float64Array, width: number, r0: number, r1: number): number => {
  let m = 0;
  for (let t = r0 * width; t < r1 * width; t++)
    m = Math.max(m, Math.abs((a[t] as number) - (b[t] as number)));
  return m;
};

/** Random small model shapes: GQA or not, Q/K/V bias, tied or not, both attention kinds. */
const configArb = (minModel: number): fc.Arbitrary<ModelConfig> =>
  fc
    .record({
      layers: fc.integer({ min: 1, max: 2 }),
      kvHeads: fc.integer({ min: 1, max: 2 }),
      group: fc.integer({ min: 1, max: 3 }),
      halfHead: fc.integer({ min: 1, max: 3 }),
      dModel: fc.integer({ min: minModel, max: 12 }),
      dFF: fc.integer({ min: 1, max: 12 }),
      vocab: fc.integer({ min: 2, max: 12 }),
      ropeTheta: fc.constantFrom(10, 10000, 1e6),
      qkvBias: fc.boolean(),
      tieEmbeddings: fc.boolean(),
      attention: fc.constantFrom<'full' | 'block_causal'>('full', 'block_causal'),
    })
    .map((r) => ({
      name: 'random',
      layers: r.layers,
      dModel: r.dModel,
      heads: r.kvHeads * r.group,
      kvHeads: r.kvHeads,
      headDim: 2 * r.halfHead,
      dFF: r.dFF,
      vocab: r.vocab,
      ropeTheta: r.ropeTheta,
      qkvBias: r.qkvBias,
      normEps: 1e-6,
      maskTokenId: r.vocab - 1,
      arShift: false,
      attention: r.attention,
      tieEmbeddings: r.tieEmbeddings,
    }));

interface Case {
  config: ModelConfig;
  seed: number;
  tokens: Int32Array;
  layout: Layout;
  /** Row whose token is replaced, and its replacement (always a different token). */
  row: number;
  replacement: number;
}

const caseArb = (minModel: number, attention?: 'full' | 'block_causal'): fc.Arbitrary<Case> =>
  configArb(minModel)
    .map((c) => (attention ? { ...c, attention } : c))
    .chain((config) =>
      fc.integer({ min: 1, max: 8 }).chain((L) =>
        fc.record({
          config: fc.constant(config),
          seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
          tokens: fc
            .array(fc.integer({ min: 0, max: config.vocab - 1 }), { minLength: L, maxLength: L })
            .map((a) => Int32Array.from(a)),
          layout: fc.record({
            promptLen: fc.integer({ min: 0, max: L }),
            blockLen: fc.integer({ min: 1, max: 4 }),
          }),
          row: fc.integer({ min: 0, max: L - 1 }),
          replacement: fc.integer({ min: 1, max: config.vocab - 1 }),
        }),
      ),
    )
    .map((c) => ({ ...c, replacement: ((c.tokens[c.row] as number) + c.replacement) % c.config.vocab }));

const withToken = (tokens: Int32Array, row: number, t: number): Int32Array => {
  const out = tokens.slice();
  out[row] = t;
  return out;
};

describe('(a) rows are independent when attention contributes nothing', () => {
  test('with o_proj = 0, each row depends only on its own token (not on its position or other rows)', () => {
    fc.assert(
      fc.property(caseArb(2), ({ config, seed, tokens, layout, row, replacement }) => {
        const w = randomWeights(config, seed, { attentionOutputScale: 0 });
        const { vocab } = config;
        const L = tokens.length;
        const a = goldenForward(config, w, tokens, layout).logits;
        const b = goldenForward(config, w, withToken(tokens, row, replacement), layout).logits;
        for (let i = 0; i < L; i++) {
          if (i !== row) expect(rowDiff(a, b, vocab, i, i + 1)).toBeLessThanOrEqual(1e-12);
          // The same token alone, at position 0, gives the same logits.
          const alone = goldenForward(config, w, Int32Array.of(tokens[i] as number), {
            promptLen: 0,
            blockLen: 1,
          });
          expect(rowDiff(a.subarray(i * vocab), alone.logits, vocab, 0, 1)).toBeLessThanOrEqual(1e-12);
        }
      }),
      { numRuns: 60 },
    );
  });

  test('with the default o_proj the rows do mix (the property above is not vacuous)', () => {
    const w = randomWeights(tiny, 3);
    const tokens = Int32Array.of(1, 2, 3, 4);
    const a = goldenForward(tiny, w, tokens, { promptLen: 0, blockLen: 4 }).logits;
    const alone = goldenForward(tiny, w, Int32Array.of(2), { promptLen: 0, blockLen: 1 }).logits;
    expect(rowDiff(a.subarray(tiny.vocab), alone, tiny.vocab, 0, 1)).toBeGreaterThan(1e-3);
  });
});

describe('(b) attention structure', () => {
  test('block_causal: a change in block b leaves earlier blocks unchanged and changes blocks >= b', () => {
    fc.assert(
      fc.property(caseArb(4, 'block_causal'), ({ config, seed, tokens, layout, row, replacement }) => {
        const w = randomWeights(config, seed);
        const { vocab } = config;
        const a = goldenForward(config, w, tokens, layout).logits;
        const b = goldenForward(config, w, withToken(tokens, row, replacement), layout).logits;
        const changed = blockOf(row, layout);
        for (let i = 0; i < tokens.length; i++) {
          const d = rowDiff(a, b, vocab, i, i + 1);
          if (blockOf(i, layout) < changed) expect(d).toBeLessThanOrEqual(1e-12);
          else expect(d).toBeGreaterThan(1e-9);
        }
      }),
      { numRuns: 80 },
    );
  });

  test('block_causal: rows up to the end of a block equal a forward over that prefix alone', () => {
    fc.assert(
      fc.property(caseArb(2, 'block_causal'), ({ config, seed, tokens, layout, row }) => {
        const w = randomWeights(config, seed);
        const full = goldenForward(config, w, tokens, layout).logits;
        // The prefix ends where the block of `row` ends (the prompt, for a prompt row).
        const b = blockOf(row, layout);
        const end = Math.min(
          tokens.length,
          b < 0 ? layout.promptLen : layout.promptLen + (b + 1) * layout.blockLen,
        );
        const prefix = goldenForward(config, w, tokens.subarray(0, end), layout).logits;
        expect(rowDiff(full, prefix, config.vocab, 0, end)).toBeLessThanOrEqual(1e-12);
      }),
      { numRuns: 60 },
    );
  });

  test('full attention: changing any token changes every row', () => {
    fc.assert(
      fc.property(caseArb(4, 'full'), ({ config, seed, tokens, layout, row, replacement }) => {
        const w = randomWeights(config, seed);
        const a = goldenForward(config, w, tokens, layout).logits;
        const b = goldenForward(config, w, withToken(tokens, row, replacement), layout).logits;
        for (let i = 0; i < tokens.length; i++)
          expect(rowDiff(a, b, config.vocab, i, i + 1)).toBeGreaterThan(1e-9);
      }),
      { numRuns: 60 },
    );
  });

  test('block_causal with a single block (or all prompt) is full attention, bit for bit', () => {
    const bc: ModelConfig = { ...tiny, attention: 'block_causal' };
    const w = randomWeights(tiny, 11);
    const tokens = Int32Array.of(5, 9, 47, 47, 3, 47);
    const full = goldenForward(tiny, w, tokens, { promptLen: 2, blockLen: 2 }).logits;
    expect(goldenForward(bc, w, tokens, { promptLen: 0, blockLen: 6 }).logits).toEqual(full);
    expect(goldenForward(bc, w, tokens, { promptLen: 6, blockLen: 1 }).logits).toEqual(full);
    // ...and with several blocks it is not.
    expect(
      rowDiff(goldenForward(bc, w, tokens, { promptLen: 2, blockLen: 2 }).logits, full, tiny.vocab, 0, 6),
    ).toBeGreaterThan(1e-6);
  });

  test('blockOf and attends', () => {
    const layout = { promptLen: 3, blockLen: 2 };
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((p) => blockOf(p, layout))).toEqual([-1, -1, -1, 0, 0, 1, 1, 2]);
    const bc: ModelConfig = { ...tiny, attention: 'block_causal' };
    expect(attends(bc, layout, 0, 2)).toBe(true); // prompt sees prompt
    expect(attends(bc, layout, 2, 3)).toBe(false); // prompt does not see generated rows
    expect(attends(bc, layout, 3, 4)).toBe(true); // within a block, both ways
    expect(attends(bc, layout, 4, 3)).toBe(true);
    expect(attends(bc, layout, 4, 5)).toBe(false); // not the next block
    expect(attends(bc, layout, 6, 1)).toBe(true); // generated rows see the prompt
    expect(attends(tiny, layout, 0, 7)).toBe(true); // full attention sees everything
  });

  test('GQA equals multi-head attention with each KV head duplicated over its query group', () => {
    const gqa: ModelConfig = { ...tiny, heads: 4, kvHeads: 2 };
    const mha: ModelConfig = { ...gqa, kvHeads: 4 };
    const w = randomWeights(gqa, 21);
    const m = new Map<string, Tensor>(w);
    const hd = gqa.headDim;
    const d = gqa.dModel;
    for (let l = 0; l < gqa.layers; l++) {
      for (const proj of ['k_proj', 'v_proj']) {
        const W = w.get(`model.layers.${l}.self_attn.${proj}.weight`) as FloatTensor;
        const B = w.get(`model.layers.${l}.self_attn.${proj}.bias`) as FloatTensor;
        const W2 = new Float64Array(4 * hd * d);
        const B2 = new Float64Array(4 * hd);
        for (let h = 0; h < 4; h++) {
          const g = Math.floor(h / 2); // query heads 0,1 -> KV head 0; 2,3 -> KV head 1
          W2.set(W.data.subarray(g * hd * d, (g + 1) * hd * d), h * hd * d);
          B2.set(B.data.subarray(g * hd, (g + 1) * hd), h * hd);
        }
        m.set(`model.layers.${l}.self_attn.${proj}.weight`, { shape: [4 * hd, d], data: W2 });
        m.set(`model.layers.${l}.self_attn.${proj}.bias`, { shape: [4 * hd], data: B2 });
      }
    }
    const tokens = Int32Array.of(0, 7, 13, 47, 47, 2, 30);
    const layout = { promptLen: 3, blockLen: 2 };
    const a = goldenForward(gqa, w, tokens, layout).logits;
    const b = goldenForward(mha, m, tokens, layout).logits;
    expect(rowDiff(a, b, gqa.vocab, 0, tokens.length)).toBeLessThanOrEqual(1e-12);
    // A wrong head mapping (KV head h mod kvHeads) would differ: swap the duplicated heads 1 and 2.
    const swapped = new Map(m);
    for (const proj of ['k_proj', 'v_proj']) {
      const name = `model.layers.0.self_attn.${proj}.weight`;
      const W = floatsOf(m.get(name) as Tensor).slice();
      const h1 = W.slice(hd * d, 2 * hd * d);
      W.copyWithin(hd * d, 2 * hd * d, 3 * hd * d);
      W.set(h1, 2 * hd * d);
      swapped.set(name, { shape: [4 * hd, d], data: W });
    }
    expect(rowDiff(a, goldenForward(mha, swapped, tokens, layout).logits, gqa.vocab, 0, 7)).toBeGreaterThan(
      1e-6,
    );
  });
});

describe('(c) RoPE', () => {
  const vec = (n: number) =>
    fc
      .array(fc.double({ min: -10, max: 10, noNaN: true }), { minLength: n, maxLength: n })
      .map((a) => Float64Array.from(a));
  const headArb = fc.integer({ min: 1, max: 8 }).chain((half) =>
    fc.record({
      hd: fc.constant(2 * half),
      x: vec(2 * half),
      y: vec(2 * half),
      p: fc.integer({ min: -2000, max: 2000 }),
      s: fc.integer({ min: -2000, max: 2000 }),
      theta: fc.constantFrom(10, 10000, 500000, 1e6),
    }),
  );
  const norm = (v: Float64Array) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
  const dot = (a: Float64Array, b: Float64Array) => a.reduce((acc, x, i) => acc + x * (b[i] as number), 0);
  const rope = (v: Float64Array, hd: number, p: number, theta: number) => {
    const out = v.slice();
    applyRope(out, 0, hd, p, theta);
    return out;
  };

  test('the HF rotate_half convention: dim i pairs with i + headDim/2, angle p * theta^(-2i/headDim)', () => {
    const e0 = rope(Float64Array.of(1, 0, 0, 0), 4, 1, 10000);
    const e1 = rope(Float64Array.of(0, 1, 0, 0), 4, 1, 10000);
    const e2 = rope(Float64Array.of(0, 0, 1, 0), 4, 3, 10000);
    const close = (a: Float64Array, b: number[]) => {
      for (const [i, x] of b.entries()) expect(a[i]).toBeCloseTo(x, 14);
    };
    close(e0, [Math.cos(1), 0, Math.sin(1), 0]);
    close(e1, [0, Math.cos(0.01), 0, Math.sin(0.01)]); // 10000^(-2/4) = 0.01
    close(e2, [-Math.sin(3), 0, Math.cos(3), 0]);
    // Only the slice [off, off + headDim) is touched.
    const buf = Float64Array.of(9, 1, 0, 0, 0, 9);
    applyRope(buf, 1, 4, 1, 10000);
    expect([buf[0], buf[5]]).toEqual([9, 9]);
    expect(buf[1]).toBeCloseTo(Math.cos(1), 14);
  });

  test('preserves the norm; rotating by p then -p is the identity; position 0 is the identity', () => {
    fc.assert(
      fc.property(headArb, ({ hd, x, p, theta }) => {
        const r = rope(x, hd, p, theta);
        expect(Math.abs(norm(r) - norm(x))).toBeLessThanOrEqual(1e-12 * (1 + norm(x)));
        const back = rope(r, hd, -p, theta);
        for (let i = 0; i < hd; i++)
          expect(Math.abs((back[i] as number) - (x[i] as number))).toBeLessThan(1e-11);
        const r0 = rope(x, hd, 0, theta);
        expect(r0.every((z, i) => z === x[i])).toBe(true); // exact (0 and -0 compare equal)
      }),
      { numRuns: 100 },
    );
  });

  test('relative: q(i)·k(j) depends only on i - j', () => {
    fc.assert(
      fc.property(headArb, fc.integer({ min: -2000, max: 2000 }), ({ hd, x, y, p, s, theta }, j) => {
        const a = dot(rope(x, hd, p, theta), rope(y, hd, j, theta));
        const b = dot(rope(x, hd, p + s, theta), rope(y, hd, j + s, theta));
        expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-9 * (1 + norm(x) * norm(y)));
      }),
      { numRuns: 100 },
    );
  });
});

describe('(d) softmaxStats', () => {
  test('two equal logits', () => {
    const s = softmaxStats([0, 0]);
    expect(s.confidence).toBeCloseTo(0.5, 15);
    expect(s.margin).toBe(0);
    expect(s.entropy).toBeCloseTo(Math.LN2, 15);
    expect(s.argmax).toBe(0); // lowest index on ties
  });

  test('probabilities 1/6, 2/6, 3/6 and their shift invariance', () => {
    const p = [1 / 6, 2 / 6, 3 / 6];
    const H = -p.reduce((a, x) => a + x * Math.log(x), 0);
    for (const shift of [0, 1000, -1000]) {
      const s = softmaxStats(Float64Array.from([1, 2, 3].map((x) => Math.log(x) + shift)));
      expect(s.confidence).toBeCloseTo(0.5, 12);
      expect(s.margin).toBeCloseTo(1 / 6, 12);
      expect(s.entropy).toBeCloseTo(H, 12);
      expect(s.argmax).toBe(2);
    }
  });

  test('the excluded entry (the mask token) is never the prediction and carries no probability', () => {
    const s = softmaxStats(Float64Array.from([1, 2, 3].map(Math.log)), 2);
    expect(s.argmax).toBe(1);
    expect(s.confidence).toBeCloseTo(2 / 3, 12);
    expect(s.margin).toBeCloseTo(1 / 3, 12);
    expect(() => softmaxStats([5], 0)).toThrow(/every logit is -Infinity/);
  });

  test('a dominant logit: confidence near 1, entropy near 0, no overflow', () => {
    const s = softmaxStats([-5, 800, 3]);
    expect(s.argmax).toBe(1);
    expect(s.confidence).toBe(1);
    expect(s.margin).toBe(1);
    expect(s.entropy).toBeGreaterThanOrEqual(0);
    expect(s.entropy).toBeLessThan(1e-300);
  });

  test('uniform over n has entropy ln n; a single entry has confidence and margin 1', () => {
    const s = softmaxStats(new Float64Array(7).fill(2.5));
    expect(s.entropy).toBeCloseTo(Math.log(7), 14);
    expect(s.confidence).toBeCloseTo(1 / 7, 15);
    expect(softmaxStats([4])).toEqual({ confidence: 1, margin: 1, entropy: 0, argmax: 0 });
  });

  test('-Infinity entries have probability 0; bad rows are errors', () => {
    const s = softmaxStats([Number.NEGATIVE_INFINITY, 0, 0]);
    expect(s.confidence).toBeCloseTo(0.5, 15);
    expect(s.entropy).toBeCloseTo(Math.LN2, 15);
    expect(s.argmax).toBe(1);
    expect(() => softmaxStats([])).toThrow(/empty row/);
    expect(() => softmaxStats([0, Number.NaN])).toThrow(/logit 1 is NaN/);
    expect(() => softmaxStats([Number.POSITIVE_INFINITY])).toThrow(/logit 0 is Infinity/);
    expect(() => softmaxStats([Number.NEGATIVE_INFINITY])).toThrow(/every logit is -Infinity/);
  });

  test('agrees with a direct computation on golden logits', () => {
    const w = randomWeights(tiny, 4);
    const { logits } = goldenForward(tiny, w, Int32Array.of(3, 1, 4, 1, 5), { promptLen: 2, blockLen: 3 });
    for (let r = 0; r < 5; r++) {
      const row = Array.from(logits.subarray(r * tiny.vocab, (r + 1) * tiny.vocab));
      const z = row.reduce((a, x) => a + Math.exp(x), 0);
      const p = row.map((x) => Math.exp(x) / z);
      const sorted = [...p].sort((a, b) => b - a);
      const s = softmaxStats(row);
      expect(s.confidence).toBeCloseTo(sorted[0] as number, 12);
      expect(s.margin).toBeCloseTo((sorted[0] as number) - (sorted[1] as number), 12);
      expect(s.entropy).toBeCloseTo(-p.reduce((a, x) => a + x * Math.log(x), 0), 12);
      expect(s.argmax).toBe(p.indexOf(sorted[0] as number));
    }
  });
});

describe('(e) a hand-checkable model', () => {
  // 1 layer, d_model 2, one head of dim 2 (so RoPE rotates the single pair by `position` radians),
  // Q/K/V bias, vocab 3, d_ff 2.
  const hand: ModelConfig = {
    name: 'hand',
    layers: 1,
    dModel: 2,
    heads: 1,
    kvHeads: 1,
    headDim: 2,
    dFF: 2,
    vocab: 3,
    ropeTheta: 10000,
    qkvBias: true,
    normEps: 1e-5,
    maskTokenId: 2,
    arShift: false,
    attention: 'full',
    tieEmbeddings: false,
  };
  const M = {
    embed: [
      [1, 0.5],
      [-0.5, 1],
      [0.25, -1],
    ],
    inNorm: [1, 2],
    q: [
      [1, 0.5],
      [0, 1],
    ],
    qb: [0.1, -0.1],
    k: [
      [0.5, 0],
      [1, -1],
    ],
    kb: [0, 0.2],
    v: [
      [1, 1],
      [-1, 0.5],
    ],
    vb: [0.3, 0],
    o: [
      [0.5, -1],
      [1, 0.25],
    ],
    postNorm: [0.5, 1.5],
    gate: [
      [1, -1],
      [0.5, 0.5],
    ],
    up: [
      [0.25, 1],
      [-1, 0.5],
    ],
    down: [
      [1, 0],
      [0.5, -0.5],
    ],
    finalNorm: [1, 1],
    head: [
      [1, 0],
      [0, 1],
      [1, 1],
    ],
  };
  const t = (rows: number[][] | number[]): Tensor => {
    const flat = (rows as (number | number[])[]).flat();
    const shape = Array.isArray(rows[0]) ? [rows.length, (rows[0] as number[]).length] : [rows.length];
    return { shape, data: Float64Array.from(flat) };
  };
  const weights: Weights = new Map([
    ['model.embed_tokens.weight', t(M.embed)],
    ['model.layers.0.input_layernorm.weight', t(M.inNorm)],
    ['model.layers.0.self_attn.q_proj.weight', t(M.q)],
    ['model.layers.0.self_attn.q_proj.bias', t(M.qb)],
    ['model.layers.0.self_attn.k_proj.weight', t(M.k)],
    ['model.layers.0.self_attn.k_proj.bias', t(M.kb)],
    ['model.layers.0.self_attn.v_proj.weight', t(M.v)],
    ['model.layers.0.self_attn.v_proj.bias', t(M.vb)],
    ['model.layers.0.self_attn.o_proj.weight', t(M.o)],
    ['model.layers.0.post_attention_layernorm.weight', t(M.postNorm)],
    ['model.layers.0.mlp.gate_proj.weight', t(M.gate)],
    ['model.layers.0.mlp.up_proj.weight', t(M.up)],
    ['model.layers.0.mlp.down_proj.weight', t(M.down)],
    ['model.norm.weight', t(M.finalNorm)],
    ['lm_head.weight', t(M.head)],
  ]);

  /** Every logit of `got` ([L, 3]) within 1e-12 of the reference rows. */
  const expectLogits = (got: Float64Array, want: number[][]) => {
    expect(got).toHaveLength(want.length * 3);
    for (const [i, row] of want.entries())
      for (const [c, x] of row.entries())
        expect(Math.abs((got[i * 3 + c] as number) - x)).toBeLessThanOrEqual(1e-12);
  };

  /** Written independently of golden.ts: plain 2-vectors, no typed arrays, no max-shift. */
  const reference = (
    tokens: number[],
    sees: (i: number, j: number) => boolean,
    embed: number[][] = M.embed,
    head: number[][] = M.head,
  ): number[][] => {
    type V = [number, number];
    const eps = 1e-5;
    const rms = (x: V, w: number[]): V => {
      const r = Math.sqrt((x[0] * x[0] + x[1] * x[1]) / 2 + eps);
      return [(x[0] / r) * (w[0] as number), (x[1] / r) * (w[1] as number)];
    };
    const mv = (W: number[][], x: V, b: number[] = [0, 0]): V => [
      (W[0]?.[0] as number) * x[0] + (W[0]?.[1] as number) * x[1] + (b[0] as number),
      (W[1]?.[0] as number) * x[0] + (W[1]?.[1] as number) * x[1] + (b[1] as number),
    ];
    // A rotation of the plane by `a` radians: (x0 + i x1) * e^{ia}.
    const rot = (x: V, a: number): V => [
      x[0] * Math.cos(a) - x[1] * Math.sin(a),
      x[0] * Math.sin(a) + x[1] * Math.cos(a),
    ];
    const silu = (z: number) => z / (1 + Math.exp(-z));

    const h: V[] = tokens.map((tok) => [...(embed[tok] as number[])] as V);
    const xs = h.map((x) => rms(x, M.inNorm));
    const q = xs.map((x, i) => rot(mv(M.q, x, M.qb), i));
    const k = xs.map((x, i) => rot(mv(M.k, x, M.kb), i));
    const v = xs.map((x) => mv(M.v, x, M.vb));
    const attnOut: V[] = q.map((qi, i) => {
      let z = 0;
      const acc: V = [0, 0];
      k.forEach((kj, j) => {
        if (!sees(i, j)) return;
        const e = Math.exp((qi[0] * kj[0] + qi[1] * kj[1]) / Math.SQRT2);
        z += e;
        acc[0] += e * (v[j] as V)[0];
        acc[1] += e * (v[j] as V)[1];
      });
      return [acc[0] / z, acc[1] / z];
    });
    const logits: number[][] = [];
    h.forEach((hi, i) => {
      const o = mv(M.o, attnOut[i] as V);
      const h1: V = [hi[0] + o[0], hi[1] + o[1]];
      const x2 = rms(h1, M.postNorm);
      const g = mv(M.gate, x2);
      const u = mv(M.up, x2);
      const f = mv(M.down, [silu(g[0]) * u[0], silu(g[1]) * u[1]]);
      const xf = rms([h1[0] + f[0], h1[1] + f[1]], M.finalNorm);
      logits.push(head.map((row) => (row[0] as number) * xf[0] + (row[1] as number) * xf[1]));
    });
    return logits;
  };

  const check = (
    config: ModelConfig,
    tokens: number[],
    layout: Layout,
    sees: (i: number, j: number) => boolean,
  ) => {
    const got = goldenForward(config, weights, Int32Array.from(tokens), layout);
    const want = reference(tokens, sees);
    expect(got.logits).toHaveLength(tokens.length * 3);
    expectLogits(got.logits, want);
    return got;
  };

  test('one token: attention returns its own value', () => {
    check(hand, [1], { promptLen: 1, blockLen: 1 }, () => true);
  });

  test('full attention over four rows (RoPE angles 0..3 rad)', () => {
    const r = check(hand, [0, 2, 1, 2], { promptLen: 1, blockLen: 2 }, () => true);
    expect(r.hidden).toHaveLength(1);
    expect(r.hidden[0]).toHaveLength(4 * 2);
  });

  test('block-causal over prompt 1 + blocks of 2', () => {
    const layout = { promptLen: 1, blockLen: 2 };
    const bl = (p: number) => (p < 1 ? -1 : Math.floor((p - 1) / 2));
    check({ ...hand, attention: 'block_causal' }, [0, 2, 1, 2, 0], layout, (i, j) => bl(j) <= bl(i));
  });

  test('tied embeddings read embed_tokens as the output head', () => {
    const tied = new Map(weights);
    tied.delete('lm_head.weight');
    tied.set('model.embed_tokens.weight', t(M.head));
    const tokens = [0, 2, 1];
    const got = goldenForward({ ...hand, tieEmbeddings: true }, tied, Int32Array.from(tokens), {
      promptLen: 0,
      blockLen: 3,
    });
    const want = reference(tokens, () => true, M.head, M.head);
    expectLogits(got.logits, want);
    // Untied, the same embedding with a different head gives different logits.
    expect(
      Math.abs((want[0]?.[2] as number) - (reference(tokens, () => true, M.head, M.embed)[0]?.[2] as number)),
    ).toBeGreaterThan(1e-3);
  });
});

describe('hidden states, AR shift and input checks', () => {
  test('hidden[l] is the residual stream after layer l; logits are the final norm times lm_head', () => {
    const w = randomWeights(tiny, 8);
    const tokens = Int32Array.of(1, 2, 3);
    const { logits, hidden } = goldenForward(tiny, w, tokens, { promptLen: 1, blockLen: 1 });
    expect(hidden).toHaveLength(tiny.layers);
    expect(hidden[0]).not.toBe(hidden[1]);
    expect(rowDiff(hidden[0] as Float64Array, hidden[1] as Float64Array, tiny.dModel, 0, 3)).toBeGreaterThan(
      1e-3,
    );
    const last = hidden[1] as Float64Array;
    const nw = w.get('model.norm.weight')?.data as Float64Array;
    const head = w.get('lm_head.weight')?.data as Float64Array;
    const d = tiny.dModel;
    for (let r = 0; r < 3; r++) {
      const row = last.subarray(r * d, (r + 1) * d);
      const inv = 1 / Math.sqrt(row.reduce((a, x) => a + x * x, 0) / d + tiny.normEps);
      for (let c = 0; c < tiny.vocab; c++) {
        let acc = 0;
        for (let k = 0; k < d; k++)
          acc += (row[k] as number) * inv * (nw[k] as number) * (head[c * d + k] as number);
        expect(Math.abs(acc - (logits[r * tiny.vocab + c] as number))).toBeLessThanOrEqual(1e-12);
      }
    }
  });

  test('predictionRow: Dream predicts position p from row p - 1, LLaDA and SDAR from row p', () => {
    expect(predictionRow(presets['dream-7b'] as ModelConfig, 10)).toBe(9);
    expect(predictionRow(presets['dream-7b'] as ModelConfig, 0)).toBe(-1);
    expect(predictionRow(presets['llada-8b'] as ModelConfig, 10)).toBe(10);
    expect(predictionRow(presets['sdar-8b'] as ModelConfig, 10)).toBe(10);
  });

  test('tokens and layout are checked', () => {
    const w = randomWeights(tiny, 1);
    const ok = { promptLen: 1, blockLen: 1 };
    expect(() => goldenForward(tiny, w, Int32Array.of(1, 48), ok)).toThrow(
      'token 48 at row 1 is outside the vocabulary [0, 48)',
    );
    expect(() => goldenForward(tiny, w, Int32Array.of(-1), ok)).toThrow(/token -1 at row 0/);
    expect(() => goldenForward(tiny, w, new Int32Array(0), ok)).toThrow(/empty token sequence/);
    expect(() => goldenForward(tiny, w, Int32Array.of(1), { promptLen: 2, blockLen: 1 })).toThrow(
      /promptLen must be an integer in \[0, 1\] \(got 2\)/,
    );
    expect(() => goldenForward(tiny, w, Int32Array.of(1), { promptLen: 0, blockLen: 0 })).toThrow(
      /blockLen must be a positive integer \(got 0\)/,
    );
  });

  test('a missing or misshapen weight is named', () => {
    const w = randomWeights(tiny, 1);
    w.delete('model.layers.1.mlp.up_proj.weight');
    const tokens = Int32Array.of(1);
    const layout = { promptLen: 1, blockLen: 1 };
    expect(() => goldenForward(tiny, w, tokens, layout)).toThrow(
      new WeightError('missing weight "model.layers.1.mlp.up_proj.weight" (expected shape [64, 32])'),
    );
    const v = randomWeights(tiny, 1);
    v.set('model.layers.0.self_attn.k_proj.bias', { shape: [32], data: new Float64Array(32) });
    expect(() => goldenForward(tiny, v, tokens, layout)).toThrow(
      'weight "model.layers.0.self_attn.k_proj.bias" has shape [32], expected [16]',
    );
  });
});
