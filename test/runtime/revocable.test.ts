/**
 * Revocable decoding at run time: the tokens a `wino` rule remasks go back to [MASK] in the
 * model's input, the step reports them, every step still leaves fewer masks, and the plan (which
 * recomputes every row) stays equal to the golden full forward on the state it produced.
 */
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { ReferenceRunner } from '../../src/runtime/referenceRunner.ts';
import { type StepInfo, simulateGeneration } from '../../src/runtime/simulate.ts';
import { float64Bound } from '../../src/runtime/verify.ts';

test('remasked tokens return to [MASK], every step makes progress, and the plan stays exact', async () => {
  // A random model's confidences sit near 0.1: a wide-in bar of 0.15 drafts a few tokens at some
  // steps, and a narrow-out bar of 0.99 takes back all it may.
  const text = readFileSync('examples/wino.kvp', 'utf8');
  const r = checkSource(
    { path: 'wino.kvp', text },
    {
      overrides: new Map([
        ['tau', '0.15'],
        ['tau_revoke', '0.99'],
        ['block', '8'],
      ]),
    },
  );
  const plan = r.plans[0];
  if (!plan) throw new Error(r.diagnostics.map((d) => d.message).join('; '));
  const config = presets.tiny as ModelConfig;
  const mask = config.maskTokenId;
  let remasks = 0;
  let masked = 16;
  const steps: StepInfo[] = [];
  for (const seed of [3, 11]) {
    masked = 16;
    const weights = randomWeights(config, seed);
    const prompt = Int32Array.from({ length: 3 }, (_, i) => (seed + 7 * i) % (config.vocab - 1));
    const { lowered } = compilePlan(plan, config, { target: 'reference' });
    // The tokens each step's forward embeds, to see the remasked positions go back to [MASK].
    let input = new Int32Array(0);
    let remaskedBefore: readonly number[] = [];
    const g = await simulateGeneration(plan, lowered, {
      config,
      weights,
      prompt,
      genLen: 16,
      seed,
      runner: (L) => {
        const runner = new ReferenceRunner(lowered, weights, L);
        const embed = runner.embed.bind(runner);
        runner.embed = (program, canvas, read) => {
          input = Int32Array.from(canvas.tokens);
          return embed(program, canvas, read);
        };
        return runner;
      },
      onStep: (info) => {
        for (const p of remaskedBefore) expect(input[p]).toBe(mask);
        remaskedBefore = info.remasked;
        steps.push(info);
        remasks += info.remasked.length;
        const now = masked - info.committed.length + info.remasked.length;
        expect(now).toBeLessThan(masked);
        masked = now;
        for (const p of info.remasked) expect(info.committed.map((c) => c.position)).not.toContain(p);
      },
    });
    expect(masked).toBe(0);
    expect(Array.from(g.tokens).includes(mask)).toBe(false);
    expect(g.steps.every((s) => s.deviation <= float64Bound(config, 11, s.scale))).toBe(true);
    expect(g.steps.every((s) => s.agrees)).toBe(true);
  }
  expect(remasks).toBeGreaterThan(0);
  // Each remask was followed by a step (the generation ends with a step that commits, not remasks).
  expect(steps.at(-1)?.remasked).toEqual([]);
});
