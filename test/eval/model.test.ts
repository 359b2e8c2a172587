import { readFileSync, statSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { fnv1a32, genLength, heldOutProblems, isHeldOut, tasks } from '../../src/eval/tasks.ts';
import { validateConfig } from '../../src/model/config.ts';
import { goldenForward } from '../../src/model/golden.ts';
import { loadOnnx } from '../../src/model/onnx/load.ts';
import { answerText, tokenizerFromJson } from '../../src/runtime/tokenizer.ts';
import type { TrainedReference } from '../support/trainedReference.ts';

const dir = 'models/tiny-dllm';
const modelPath = `${dir}/model.onnx`;

const ref = JSON.parse(readFileSync(`${dir}/reference.json`, 'utf8')) as TrainedReference;
const model = loadOnnx(modelPath);
const tokenizer = tokenizerFromJson(model.tokenizer, model.config.maskTokenId);

describe('the bundled model', () => {
  test('is a small, valid kvplan model with a character tokenizer that has an EOS', () => {
    expect(statSync(modelPath).size).toBeLessThan(20 * 2 ** 20);
    expect(validateConfig({ ...model.config }, modelPath)).toEqual(model.config);
    expect(model.config).toMatchObject({ attention: 'full', arShift: false, name: 'tiny-dllm' });
    expect(model.config.kvHeads).toBeLessThan(model.config.heads); // GQA
    expect(tokenizer.eosTokenId).toBeDefined();
    expect(tokenizer.eosTokenId).not.toBe(model.config.maskTokenId);
  });

  test('the tokenizer round-trips every task prompt and answer', () => {
    for (const name of tasks.keys()) {
      // (the multi-step tasks use only the bundled model's characters too, though it was not trained on them)
      for (const p of heldOutProblems(name, 50)) {
        const ids = tokenizer.encode(p.prompt);
        expect(ids).toHaveLength(p.prompt.length);
        expect(ids.every((id) => id !== model.config.maskTokenId && id < model.config.vocab)).toBe(true);
        expect(tokenizer.decode(ids)).toBe(p.prompt);
        // A generated canvas: the answer, then EOS to the end.
        const canvas = [...tokenizer.encode(p.answer)];
        while (canvas.length < genLength) canvas.push(tokenizer.eosTokenId as number);
        expect(answerText(tokenizer, canvas)).toBe(p.answer);
      }
    }
  });

  test('the golden forward reproduces the PyTorch logits of the trained model', () => {
    expect(ref.cases.length).toBeGreaterThanOrEqual(3);
    const V = model.config.vocab;
    for (const c of ref.cases) {
      expect(tokenizer.decode(c.tokens.slice(0, c.prompt_len))).toBe(c.prompt);
      const tokens = Int32Array.from(c.tokens);
      expect(tokens.includes(model.config.maskTokenId)).toBe(true); // partly masked answer
      const { logits } = goldenForward(model.config, model.weights, tokens, {
        promptLen: c.prompt_len,
        blockLen: 32,
      });
      let scale = 0;
      let dev = 0;
      c.rows.forEach((r, k) => {
        const want = c.logits[k] ?? [];
        expect(want).toHaveLength(V);
        const got = Array.from(logits.subarray(r * V, (r + 1) * V));
        want.forEach((x, v) => {
          scale = Math.max(scale, Math.abs(x));
          dev = Math.max(dev, Math.abs((got[v] as number) - x));
        });
        // The same token wins in both.
        expect(got.indexOf(Math.max(...got))).toBe(want.indexOf(Math.max(...want)));
      });
      expect(scale).toBeGreaterThan(1); // a trained model, not all zeros
      // float32 PyTorch vs float64 golden (logits stored to 6 decimals).
      expect(dev).toBeLessThan(1e-4 * Math.max(1, scale));
    }
  });

  test('the training script hashes prompts exactly as isHeldOut does', () => {
    expect(ref.hashes.length).toBeGreaterThan(10);
    expect(ref.hashes.some((h) => h.held_out)).toBe(true);
    expect(ref.hashes.some((h) => !h.held_out)).toBe(true);
    for (const h of ref.hashes) {
      expect(fnv1a32(h.prompt)).toBe(h.fnv1a32);
      expect(isHeldOut(h.prompt)).toBe(h.held_out);
    }
  });

  test("the training script's held-out problems are heldOutProblems, and it trains on none of them", () => {
    // The tasks the bundled model was trained on (the multi-step tasks came later).
    const trained = Object.keys(ref.held_out);
    expect(trained).toEqual(['count', 'sort', 'add']);
    for (const name of trained) expect(ref.held_out[name]).toEqual(heldOutProblems(name, 5));
    const held = new Set(trained.flatMap((name) => heldOutProblems(name, 300).map((p) => p.prompt)));
    expect(ref.training_sample.length).toBeGreaterThanOrEqual(100);
    for (const p of ref.training_sample) {
      expect(isHeldOut(p.prompt)).toBe(false);
      expect(held.has(p.prompt)).toBe(false);
      expect(tasks.get(p.task)?.check(p.answer, p)).toBe(true);
    }
  });
});
