// The models trained for the multi-step tasks (examples/train, issue 17), one per attention
// structure, as every command opens them: the shipped checkpoint is what PyTorch trained (its
// logits reproduced by the golden forward), its tokenizer is one id per character, and every
// example plan maps to a model whose structure it states.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import {
  bundledModelDir,
  bundledModelFor,
  bundledModels,
  bundledPlansDir,
  trainedBlockOverride,
} from '../../src/eval/bundled.ts';
import { examplePlanFiles } from '../../src/eval/suite.ts';
import { heldOutProblems, multiStepTasks } from '../../src/eval/tasks.ts';
import { goldenForward } from '../../src/model/golden.ts';
import { openCheckpoint } from '../../src/model/hf/checkpoint.ts';
import { openModel } from '../../src/runtime/openModel.ts';
import { planOnModel } from '../../src/runtime/prepare.ts';
import { answerText } from '../../src/runtime/tokenizer.ts';
import type { TrainedReference } from '../support/trainedReference.ts';

interface EvalJson {
  final: Record<string, { baseline: { accuracy: number }; 'threshold_0.9'?: { tokens_per_step: number } }>;
}

const examplePlans = examplePlanFiles(bundledPlansDir()).flatMap((path) =>
  checkSource({ path, text: readFileSync(path, 'utf8') }).plans.map((checked) => ({ path, checked })),
);

describe.each(bundledModels.map((m) => [m.name, m] as const))('bundled model %s', (_, m) => {
  const dir = bundledModelDir(m);
  const model = openModel(dir);
  const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as TrainedReference;

  test('has the structure and trained block the registry states', () => {
    expect(model.config.attention).toBe(m.attention);
    expect(model.config.arShift).toBe(m.arShift);
    expect(openCheckpoint(dir).config.blockSize).toBe(m.trainedBlock);
    expect(ref.block_size).toBe(m.trainedBlock);
    for (const t of m.tasks) expect(multiStepTasks).toContain(t);
  });

  test('its tokenizer is one id per character on its tasks, and stops at EOS', () => {
    const eos = model.tokenizer.eosTokenId as number;
    expect(eos).toBeDefined();
    for (const t of m.tasks)
      for (const p of heldOutProblems(t, 30))
        for (const text of [p.prompt, p.answer]) {
          const ids = model.tokenizer.encode(text);
          expect(ids).toHaveLength(text.length);
          expect(model.tokenizer.decode(ids)).toBe(text);
          expect(answerText(model.tokenizer, [...ids, eos, eos])).toBe(text);
        }
  });

  test('the golden forward reproduces the PyTorch logits of the trained weights', () => {
    expect(ref.cases.length).toBeGreaterThanOrEqual(2);
    for (const c of ref.cases) {
      expect(c.tokens).toContain(model.config.maskTokenId); // a partly masked answer
      const { logits } = goldenForward(model.config, model.weights, Int32Array.from(c.tokens), {
        promptLen: c.prompt_len,
        blockLen: m.trainedBlock ?? 32,
        aligned: model.config.alignedBlocks ?? false,
      });
      const V = model.config.vocab;
      let dev = 0;
      let scale = 0;
      c.rows.forEach((r, k) => {
        (c.logits[k] ?? []).forEach((x, v) => {
          dev = Math.max(dev, Math.abs((logits[r * V + v] ?? Number.NaN) - x));
          scale = Math.max(scale, Math.abs(x));
        });
      });
      expect(scale).toBeGreaterThan(1); // trained, not all zeros
      expect(dev).toBeLessThanOrEqual(1e-4 * scale);
    }
  });

  test('its recorded evaluation: >= 90% with one token per step on its first task', () => {
    const ev = JSON.parse(readFileSync(join(dir, 'eval.json'), 'utf8')) as EvalJson;
    expect(ev.final[m.tasks[0] as string]?.baseline.accuracy).toBeGreaterThanOrEqual(0.9);
    for (const t of m.tasks) expect(ev.final[t]?.['threshold_0.9']?.tokens_per_step).toBeGreaterThan(1);
  });

  test('the example plans it judges run on it without a structural warning, at its trained block', () => {
    const mine = examplePlans.filter((p) => bundledModelFor(p.checked) === m);
    expect(mine.length).toBeGreaterThan(0);
    for (const p of mine) {
      const fit = planOnModel(p.checked, model.config);
      expect(fit).toMatchObject({ ok: true });
      expect(fit.ok && fit.warning).toBeFalsy();
      const o = trainedBlockOverride(p.checked, m);
      if (o) expect(o[1]).toBe(String(m.trainedBlock));
    }
  });
});

test('every example plan has a bundled model made for it', () => {
  for (const p of examplePlans) expect(bundledModelFor(p.checked), p.path).toBeDefined();
});
