/**
 * llama.cpp as a same-weights peer (bench/gguf.ts, bench/llamacpp.ts): the GGUF file reads back
 * as written, and llama.cpp's probabilities at every row of a canvas equal the softmax of the
 * float64 golden forward within a budget derived from the eager float32 reference.
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufFileInfo } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { writeLladaGguf } from '../../bench/gguf.ts';
import { openLlamaCpp } from '../../bench/llamacpp.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { goldenForward } from '../../src/model/golden.ts';
import { presets } from '../../src/model/presets.ts';
import { createRng, type FloatTensor, randomWeights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { ReferenceRunner } from '../../src/runtime/referenceRunner.ts';
import { simulateGeneration } from '../../src/runtime/simulate.ts';
import { float32Budget } from '../../src/runtime/verify.ts';
import { examplePlan } from '../runtime/support.ts';

const dir = mkdtempSync(join(tmpdir(), 'kvplan-llamacpp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A character-sized vocabulary, the mask its last id. LLaDA's rope_theta (llama.cpp's default is
// 10000) and normEps 1e-2 (LLaDA's is 1e-5): a base or an eps lost on the way to llama.cpp, or
// replaced by a default, then moves the probabilities far outside the budget, where an eps of
// 1e-5 against 1e-6 hides in float32 noise.
const base: ModelConfig = {
  ...(presets.small as ModelConfig),
  vocab: 256,
  maskTokenId: 255,
  ropeTheta: 500000,
  normEps: 1e-2,
};
const variants: [string, ModelConfig][] = [
  ['multi-head', base],
  ['grouped-query, head_dim below d_model / heads', { ...base, name: 'small-gqa', kvHeads: 2, headDim: 8 }],
  ['tied embeddings', { ...base, name: 'small-tied', tieEmbeddings: true }],
];

/** float32's unit round-off. */
const unitRoundoff = 2 ** -24;

describe('GGUF writer', () => {
  const config: ModelConfig = {
    ...base,
    name: 'small-gqa-tied',
    kvHeads: 2,
    headDim: 8,
    tieEmbeddings: true,
  };
  const weights = randomWeights(config, 3);
  const path = join(dir, 'readback.gguf');
  beforeAll(() => writeLladaGguf(path, config, weights, { contextLength: 48 }));

  /** The float32 values of a tensor as the file holds them. */
  const fileFloats = (offset: number | bigint, count: number): Float32Array => {
    const bytes = new Uint8Array(4 * count);
    const fd = openSync(path, 'r');
    readSync(fd, bytes, 0, bytes.length, Number(offset));
    closeSync(fd);
    return new Float32Array(bytes.buffer);
  };
  const hf = (name: string) => weights.get(name) as FloatTensor;

  test('metadata: the llada hyperparameters, non-causal, and a tokenizer with the mask', async () => {
    const info = await readGgufFileInfo(path, { logWarnings: false });
    expect(info.version).toBe(3);
    const m = info.metadata as unknown as Record<string, Record<string, unknown>>;
    expect(m.general?.architecture).toBe('llada');
    expect(m.general?.file_type).toBe(0);
    const llada = m.llada as Record<string, unknown>;
    expect(llada).toEqual({
      context_length: 48,
      embedding_length: 64,
      block_count: 4,
      feed_forward_length: 128,
      attention: {
        head_count: 4,
        head_count_kv: 2,
        key_length: 8,
        value_length: 8,
        layer_norm_rms_epsilon: Math.fround(1e-2),
        causal: false,
      },
      rope: { dimension_count: 8, freq_base: 500000 },
      vocab_size: 256,
    });
    expect(m.diffusion).toEqual({ shift_logits: false });
    const tok = (m.tokenizer as Record<string, Record<string, unknown>>).ggml as Record<string, unknown>;
    expect(tok.model).toBe('gpt2');
    expect((tok.tokens as string[]).length).toBe(256);
    expect(new Set(tok.tokens as string[]).size).toBe(256);
    expect(tok.mask_token_id).toBe(255);
    expect((tok.tokens as string[])[255]).toBe('<|mdm_mask|>');
    expect((tok.token_type as number[])[255]).toBe(3); // control
    expect((tok.token_type as number[]).slice(0, 255).every((t) => t === 1)).toBe(true);
  });

  test('tensors: llama.cpp names, reversed (ggml) dimensions, float32, aligned data', async () => {
    const info = await readGgufFileInfo(path, { logWarnings: false });
    const tensors = info.tensorInfo ?? [];
    const layer = (l: number) => [
      [`blk.${l}.attn_norm.weight`, [64]],
      [`blk.${l}.attn_q.weight`, [64, 32]],
      [`blk.${l}.attn_k.weight`, [64, 16]],
      [`blk.${l}.attn_v.weight`, [64, 16]],
      [`blk.${l}.attn_output.weight`, [32, 64]],
      [`blk.${l}.ffn_norm.weight`, [64]],
      [`blk.${l}.ffn_gate.weight`, [64, 128]],
      [`blk.${l}.ffn_up.weight`, [64, 128]],
      [`blk.${l}.ffn_down.weight`, [128, 64]],
    ];
    // Tied: no output.weight (llama.cpp then reads token_embd).
    expect(tensors.map((t) => [t.name, t.dimensions.map(Number)])).toEqual([
      ['token_embd.weight', [64, 256]],
      ...[0, 1, 2, 3].flatMap(layer),
      ['output_norm.weight', [64]],
    ]);
    for (const t of tensors) {
      expect(t.ggmlType).toBe(0); // F32
      expect(Number(t.fileOffset) % 32).toBe(0);
    }
    const at = (name: string) => tensors.find((t) => t.name === name) as (typeof tensors)[number];
    const embed = at('token_embd.weight');
    expect(fileFloats(embed.fileOffset, 256 * 64)).toEqual(
      Float32Array.from(hf('model.embed_tokens.weight').data),
    );
    const norm = at('output_norm.weight');
    expect(fileFloats(norm.fileOffset, 64)).toEqual(Float32Array.from(hf('model.norm.weight').data));
    // q and k: within each head, row i is stored at 2i and row i + headDim/2 at 2i + 1.
    for (const [proj, name, heads] of [
      ['q_proj', 'attn_q', 4],
      ['k_proj', 'attn_k', 2],
    ] as const) {
      const src = hf(`model.layers.2.self_attn.${proj}.weight`).data;
      const got = fileFloats(at(`blk.2.${name}.weight`).fileOffset, heads * 8 * 64);
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < 4; i++)
          for (const [from, to] of [
            [h * 8 + i, h * 8 + 2 * i],
            [h * 8 + 4 + i, h * 8 + 2 * i + 1],
          ] as const)
            expect(got.subarray(to * 64, (to + 1) * 64)).toEqual(
              Float32Array.from(src.subarray(from * 64, (from + 1) * 64)),
            );
    }
  });

  test('a model llada cannot express is refused, naming what it lacks', () => {
    const tiny = presets.tiny as ModelConfig; // Q/K/V bias
    expect(() =>
      writeLladaGguf(join(dir, 'x.gguf'), tiny, randomWeights(tiny, 1), { contextLength: 8 }),
    ).toThrow(/llada architecture has no Q\/K\/V bias/);
    const block = { ...base, attention: 'block_causal' as const };
    expect(() =>
      writeLladaGguf(join(dir, 'x.gguf'), block, randomWeights(block, 1), { contextLength: 8 }),
    ).toThrow(/no block_causal attention/);
  });
});

/** softmax of each row of `logits` in float64. */
function softmaxRows(logits: Float64Array, V: number): Float64Array {
  const p = new Float64Array(logits.length);
  for (let r = 0; r < logits.length / V; r++) {
    const z = logits.subarray(r * V, (r + 1) * V);
    const m = Math.max(...z);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp((z[v] as number) - m);
    for (let v = 0; v < V; v++) p[r * V + v] = Math.exp((z[v] as number) - m) / s;
  }
  return p;
}

describe('llama.cpp peer', () => {
  test.each(variants)(
    '%s: probabilities at every row equal the golden softmax within the float32 budget',
    async (_, config) => {
      const V = config.vocab;
      const weights = randomWeights(config, 17);
      const rng = createRng(5);
      const randomToken = () => Math.floor(rng.uniform() * (V - 1));
      const prompt = Int32Array.from({ length: 8 }, randomToken);
      const genLen = 16;
      const L = prompt.length + genLen;

      // The logit budget every float32 backend is held to: a multiple of the error the eager
      // float32 reference makes against the float64 golden on this model, over a generation.
      const plan = examplePlan('baseline', genLen);
      const lowered = compilePlan(plan, config, { target: 'reference' }).lowered;
      const eager = await simulateGeneration(plan, lowered, {
        config,
        weights,
        prompt,
        genLen,
        seed: 1,
        runner: (n) => new ReferenceRunner(lowered, weights, n, true),
      });
      const eagerError = Math.max(...eager.steps.map((s) => s.deviation));
      const scale = Math.max(...eager.steps.map((s) => s.scale));
      const logitBudget = float32Budget(eagerError, scale);

      // The first step's canvas (prompt, then masks), and one with masks among generated tokens.
      const first = new Int32Array(L).fill(config.maskTokenId);
      first.set(prompt);
      const mixed = Int32Array.from(first, (t, i) =>
        i >= prompt.length && rng.uniform() < 0.5 ? randomToken() : t,
      );
      const every = Array.from({ length: L }, (_, i) => i);

      const peer = await openLlamaCpp(config, weights, { threads: 1, canvas: L, dir });
      try {
        const results: Float32Array[][] = [];
        for (const canvas of [first, mixed]) {
          const golden = goldenForward(config, weights, canvas, {
            promptLen: prompt.length,
            blockLen: genLen,
          });
          const p = softmaxRows(golden.logits, V);
          const got = await peer.probabilities(canvas, every);
          results.push(got);
          // Logits within that budget B of the golden's give probabilities within a factor
          // e^(+-2B) of its softmax; llama.cpp's float32 softmax (exp of logit - max, a sum of V
          // terms, a division) adds a relative (V + R + 2) u, R the spread of a row's logits. The
          // probability budget is the largest probability times both.
          let maxP = 0;
          let spread = 0;
          let diff = 0;
          for (let r = 0; r < L; r++) {
            const z = golden.logits.subarray(r * V, (r + 1) * V);
            spread = Math.max(spread, Math.max(...z) - Math.min(...z));
            const row = got[r] as Float32Array;
            for (let v = 0; v < V; v++) {
              const want = p[r * V + v] as number;
              maxP = Math.max(maxP, want);
              diff = Math.max(diff, Math.abs((row[v] as number) - want));
            }
          }
          const budget = maxP * (Math.expm1(2 * logitBudget) + (V + spread + 2) * unitRoundoff);
          expect(diff, `max |dp| ${diff} against the budget ${budget}`).toBeLessThanOrEqual(budget);
        }

        // Each call is a fresh forward: the first canvas again, after the other, is bit-identical;
        // rows asked for in any order, repeated, are the same rows.
        const firstRows = results[0] as Float32Array[];
        expect(await peer.probabilities(first, every)).toEqual(firstRows);
        expect(await peer.probabilities(first, [L - 1, 3, L - 1])).toEqual([
          firstRows[L - 1],
          firstRows[3],
          firstRows[L - 1],
        ]);
        await expect(peer.probabilities(first, [L])).rejects.toThrow(/position 24 is outside the canvas/);
        await expect(peer.probabilities(new Int32Array(L + 1), [0])).rejects.toThrow(/runs 1 to 24/);
      } finally {
        await peer.close();
      }
    },
  );
});
