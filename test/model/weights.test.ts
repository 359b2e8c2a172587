import { describe, expect, test } from 'vitest';
import { ConfigError, type ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import {
  checkWeights,
  createRng,
  expectShape,
  maxRandomParameters,
  parameterCount,
  randomWeights,
  WeightError,
  type Weights,
  weightSpec,
} from '../../src/model/weights.ts';

const tiny = presets.tiny as ModelConfig;
const small = presets.small as ModelConfig;

const shapes = (w: Weights): Record<string, number[]> =>
  Object.fromEntries([...w].map(([name, t]) => [name, t.shape]));

const mean = (a: Float64Array): number => a.reduce((s, x) => s + x, 0) / a.length;
const variance = (a: Float64Array): number => {
  const m = mean(a);
  return a.reduce((s, x) => s + (x - m) ** 2, 0) / a.length;
};

describe('names and shapes', () => {
  test('tiny (GQA, Q/K/V bias): every tensor, HF names, exact shapes', () => {
    const w = randomWeights(tiny, 1);
    const expected: Record<string, number[]> = { 'model.embed_tokens.weight': [48, 32] };
    for (const i of [0, 1]) {
      const p = `model.layers.${i}`;
      Object.assign(expected, {
        [`${p}.input_layernorm.weight`]: [32],
        [`${p}.self_attn.q_proj.weight`]: [32, 32],
        [`${p}.self_attn.q_proj.bias`]: [32],
        [`${p}.self_attn.k_proj.weight`]: [16, 32],
        [`${p}.self_attn.k_proj.bias`]: [16],
        [`${p}.self_attn.v_proj.weight`]: [16, 32],
        [`${p}.self_attn.v_proj.bias`]: [16],
        [`${p}.self_attn.o_proj.weight`]: [32, 32],
        [`${p}.post_attention_layernorm.weight`]: [32],
        [`${p}.mlp.gate_proj.weight`]: [64, 32],
        [`${p}.mlp.up_proj.weight`]: [64, 32],
        [`${p}.mlp.down_proj.weight`]: [32, 64],
      });
    }
    expected['model.norm.weight'] = [32];
    expected['lm_head.weight'] = [48, 32];
    expect(shapes(w)).toEqual(expected);
    for (const t of w.values()) expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
  });

  test('no bias tensors without qkvBias; no lm_head when tied', () => {
    const w = randomWeights({ ...small, tieEmbeddings: true }, 1);
    const names = [...w.keys()];
    expect(names.filter((n) => n.endsWith('.bias'))).toEqual([]);
    expect(names).not.toContain('lm_head.weight');
    expect(names).toHaveLength(1 + 4 * 9 + 1);
    expect(names.filter((n) => n.startsWith('model.layers.3.'))).toHaveLength(9);
    expect(expectShape(w, 'model.layers.3.self_attn.k_proj.weight', [64, 64]).shape).toEqual([64, 64]);
  });

  test('q_proj and o_proj follow heads * headDim, not dModel', () => {
    const c: ModelConfig = { ...tiny, dModel: 12, heads: 2, kvHeads: 1, headDim: 10 };
    const w = randomWeights(c, 1);
    expect(expectShape(w, 'model.layers.0.self_attn.q_proj.weight', [20, 12]).shape).toEqual([20, 12]);
    expect(expectShape(w, 'model.layers.0.self_attn.k_proj.bias', [10]).shape).toEqual([10]);
    expect(expectShape(w, 'model.layers.0.self_attn.o_proj.weight', [12, 20]).shape).toEqual([12, 20]);
  });

  test('parameterCount is the total size of randomWeights and of weightSpec', () => {
    const shapes = [
      tiny,
      small,
      { ...tiny, tieEmbeddings: true },
      { ...small, qkvBias: true },
      { ...tiny, qkNorm: true, headDim: 16 },
    ];
    for (const c of shapes) {
      const w = randomWeights(c, 3);
      let n = 0;
      for (const t of w.values()) n += t.data.length;
      expect(parameterCount(c)).toBe(n);
      expect(weightSpec(c).map((s) => s.name)).toEqual([...w.keys()]);
    }
    // Hand count for tiny: embed + lm_head 2*48*32, per layer 2 norms + q,k,v (+bias) + o + 3 MLP, final norm.
    const perLayer = 2 * 32 + (32 * 32 + 32) + 2 * (16 * 32 + 16) + 32 * 32 + 3 * 32 * 64;
    expect(parameterCount(tiny)).toBe(2 * 48 * 32 + 2 * perLayer + 32);
    // Counted, not listed: an absurd declared shape is sized at once.
    expect(parameterCount({ ...tiny, layers: 1e8 })).toBe(2 * 48 * 32 + 1e8 * perLayer + 32);
  });

  test('checkWeights accepts randomWeights and rejects a missing or extra tensor', () => {
    const w = randomWeights(tiny, 1);
    expect(() => checkWeights(tiny, w)).not.toThrow();
    w.set('model.layers.9.mlp.up_proj.weight', { shape: [1], data: new Float64Array(1) });
    expect(() => checkWeights(tiny, w)).toThrow(
      new WeightError('unexpected weight for model "tiny": "model.layers.9.mlp.up_proj.weight"'),
    );
    w.delete('model.layers.9.mlp.up_proj.weight');
    w.delete('lm_head.weight');
    expect(() => checkWeights(tiny, w)).toThrow(
      /missing weight "lm_head.weight" \(expected shape \[48, 32\]\)/,
    );
    // A config claiming 1e8 layers is refused from the count, without listing its tensors.
    expect(() => checkWeights({ ...tiny, layers: 1e8 }, w)).toThrow(
      'model "tiny" (100,000,000 layers) has 1,200,000,003 tensors, but only 26 are given',
    );
  });
});

describe('expectShape', () => {
  const w = randomWeights(tiny, 1);
  test('returns the tensor when the shape matches', () => {
    expect(expectShape(w, 'model.norm.weight', [32])).toBe(w.get('model.norm.weight'));
  });
  test('names a missing tensor', () => {
    expect(() => expectShape(w, 'model.layers.7.input_layernorm.weight', [32])).toThrow(
      new WeightError('missing weight "model.layers.7.input_layernorm.weight" (expected shape [32])'),
    );
  });
  test('names a tensor of the wrong shape or rank', () => {
    expect(() => expectShape(w, 'lm_head.weight', [32, 48])).toThrow(
      new WeightError('weight "lm_head.weight" has shape [48, 32], expected [32, 48]'),
    );
    expect(() => expectShape(w, 'model.norm.weight', [32, 1])).toThrow(
      /has shape \[32\], expected \[32, 1\]/,
    );
  });
  test('names a tensor whose data does not fit its shape', () => {
    const bad: Weights = new Map([['x', { shape: [2, 3], data: new Float64Array(5) }]]);
    expect(() => expectShape(bad, 'x', [2, 3])).toThrow(
      new WeightError('weight "x" has 5 values, but its shape [2, 3] needs 6'),
    );
  });
});

describe('random initialisation', () => {
  test('the same seed gives bit-identical weights', () => {
    const a = randomWeights(tiny, 42);
    const b = randomWeights(tiny, 42);
    for (const [name, t] of a) expect(b.get(name)?.data).toEqual(t.data);
  });

  test('different seeds give different weights in every tensor', () => {
    const a = randomWeights(tiny, 1);
    const b = randomWeights(tiny, 2);
    for (const [name, t] of a) {
      const u = b.get(name)?.data as Float64Array;
      expect(
        t.data.some((x, i) => x !== u[i]),
        name,
      ).toBe(true);
    }
    // Nearby and large seeds, including negative and above 2^32, are distinct streams.
    const first = (s: number) => createRng(s).uniform();
    const seeds = [0, 1, 2, -1, 2 ** 32, 2 ** 32 + 1, 2 ** 40];
    expect(new Set(seeds.map(first)).size).toBe(seeds.length);
    expect(() => createRng(1.5)).toThrow(/seed must be a safe integer/);
  });

  test('attentionOutputScale scales every o_proj and nothing else', () => {
    const a = randomWeights(tiny, 5);
    const z = randomWeights(tiny, 5, { attentionOutputScale: 0 });
    const h = randomWeights(tiny, 5, { attentionOutputScale: 0.5 });
    for (const [name, t] of a) {
      const zt = z.get(name)?.data as Float64Array;
      const ht = h.get(name)?.data as Float64Array;
      if (name.endsWith('.o_proj.weight')) {
        expect(
          zt.every((x) => x === 0),
          name,
        ).toBe(true);
        expect(ht).toEqual(t.data.map((x) => x * 0.5));
        expect(t.data.some((x) => x !== 0)).toBe(true);
      } else {
        expect(zt).toEqual(t.data);
      }
    }
  });

  test('distributions: linear ~ N(0, 1/fan_in), norms ~ 1, biases small, embeddings ~ N(0, 1)', () => {
    const w = randomWeights(small, 9);
    const down = w.get('model.layers.0.mlp.down_proj.weight')?.data as Float64Array; // fan_in 128
    expect(Math.abs(mean(down))).toBeLessThan(0.01);
    expect(variance(down)).toBeGreaterThan(0.9 / 128);
    expect(variance(down)).toBeLessThan(1.1 / 128);
    const emb = w.get('model.embed_tokens.weight')?.data as Float64Array;
    expect(variance(emb)).toBeGreaterThan(0.9);
    expect(variance(emb)).toBeLessThan(1.1);
    const norm = w.get('model.norm.weight')?.data as Float64Array;
    expect(Math.abs(mean(norm) - 1)).toBeLessThan(0.05);
    expect(norm.every((x) => x > 0.5 && x < 1.5)).toBe(true);
    const bias = randomWeights(tiny, 9).get('model.layers.0.self_attn.q_proj.bias')?.data as Float64Array;
    expect(bias.every((x) => Math.abs(x) < 0.5)).toBe(true);
    expect(bias.some((x) => x !== 0)).toBe(true);
  });
});

describe('the 2^27 parameter guard', () => {
  test.each(['llada-8b', 'dream-7b', 'sdar-8b'])(
    '%s is refused before allocating, naming its size',
    (name) => {
      const c = presets[name] as ModelConfig;
      const e = (() => {
        try {
          randomWeights(c, 0);
        } catch (err) {
          return err;
        }
        return undefined;
      })();
      expect(e).toBeInstanceOf(ConfigError);
      const msg = (e as Error).message;
      expect(msg).toContain(`model "${name}" has `);
      expect(msg).toContain(parameterCount(c).toLocaleString('en-US'));
      expect(msg).toContain('134,217,728 (2^27');
    },
  );

  test('llada-8b message gives the human size', () => {
    expect(() => randomWeights(presets['llada-8b'] as ModelConfig, 0)).toThrow(
      /8,015,581,184 parameters \(8\.02B\)/,
    );
  });

  test('the bound is exactly 2^27', () => {
    expect(maxRandomParameters).toBe(134_217_728);
    // A vocabulary that makes the model exactly 2^27 parameters; one more embedding row (32
    // parameters) is refused, without allocating anything.
    const c: ModelConfig = { ...tiny, layers: 1, tieEmbeddings: true };
    const rest = parameterCount({ ...c, vocab: 1, maskTokenId: 0 }) - 32;
    const atBound: ModelConfig = { ...c, vocab: (maxRandomParameters - rest) / 32 };
    expect(Number.isInteger(atBound.vocab)).toBe(true);
    expect(parameterCount(atBound)).toBe(maxRandomParameters);
    expect(() => randomWeights({ ...atBound, vocab: atBound.vocab + 1 }, 0)).toThrow(
      /has 134,217,760 parameters \(134\.2M\)/,
    );
  });
});
