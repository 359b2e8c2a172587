/**
 * A step reports the program each layer ran: FlashBlock's cached steps serve the current block's
 * external partial from its store (`reuse`) until the block is dirty enough, and the benchmarks
 * cost each layer at the program it ran.
 */
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { ReferenceRunner } from '../../src/runtime/referenceRunner.ts';
import { simulateGeneration } from '../../src/runtime/simulate.ts';

test('a generation of FlashBlock reports refreshed, cached and reused steps, layer by layer', async () => {
  const path = 'examples/flashblock.kvp';
  const plan = checkSource({ path, text: readFileSync(path, 'utf8') }).plans[0];
  if (!plan) throw new Error('flashblock.kvp does not check');
  const config = presets.tiny as ModelConfig;
  const weights = randomWeights(config, 5);
  const { lowered } = compilePlan(plan, config, { target: 'reference' });
  const seen: string[] = [];
  await simulateGeneration(plan, lowered, {
    config,
    weights,
    prompt: Int32Array.of(3, 9, 4, 7),
    genLen: 16,
    seed: 3,
    runner: (L) => new ReferenceRunner(lowered, weights, L),
    onStep: (info) => {
      const programs = [...info.programs.values()];
      expect([...info.programs.keys()]).toEqual(lowered.layers.map((r) => r.layer));
      // A refresh step is one whose every layer ran the refresh program.
      expect(info.phase === 'refresh').toBe(programs.every((p) => p === 'refresh'));
      seen.push(programs.join(','));
    },
  });
  const kinds = new Set(seen.flatMap((s) => s.split(',')));
  expect([...kinds].sort()).toEqual(['cached', 'refresh', 'reuse']);
});
