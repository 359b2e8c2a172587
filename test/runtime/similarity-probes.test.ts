/**
 * Elastic-Cache's drift rule reads `attn_similarity(probe)` on every layer above the probe layer;
 * each read and each refresh's remembered row is a full-canvas attention probe. A step measures
 * the probe layer's row once, and a refresh remembers only the layers the plan compares.
 */
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { InterpretedProbe } from '../../src/runtime/probe.ts';
import { ReferenceRunner } from '../../src/runtime/referenceRunner.ts';
import { simulateGeneration } from '../../src/runtime/simulate.ts';

/** Elastic-Cache probing layer `probe` of a 5-layer tiny model, with a gamma that makes it drift. */
function elasticOnTiny(probe: number) {
  const path = 'examples/elastic-cache.kvp';
  const overrides = new Map([
    ['probe', String(probe)],
    ['gamma', '0.999'],
  ]);
  const plan = checkSource({ path, text: readFileSync(path, 'utf8') }, { overrides }).plans[0];
  if (!plan) throw new Error('elastic-cache.kvp does not check');
  const config: ModelConfig = { ...(presets.tiny as ModelConfig), layers: 5 };
  const weights = randomWeights(config, 4);
  const lowered = compilePlan(plan, config, { target: 'reference' }).lowered;
  const generation = { config, weights, prompt: Int32Array.of(3, 9, 4), genLen: 12, seed: 2 };
  return { plan, config, weights, lowered, generation };
}

test('one attention-row measurement per step and per refresh, at the probe layer only', async () => {
  const { plan, config, weights, lowered, generation } = elasticOnTiny(1);
  const layersAsked: number[][] = [];
  const rowsOf: (readonly number[])[] = [];
  let asked: number[] = [];
  const inner = new InterpretedProbe(config, weights);
  await simulateGeneration(plan, lowered, {
    ...generation,
    runner: (L) =>
      Object.defineProperty(new ReferenceRunner(lowered, weights, L), 'probe', {
        value: {
          measure: (...a: Parameters<InterpretedProbe['measure']>) => {
            if (a[0] === 'row') asked.push(a[1]);
            else asked.push(-1);
            return inner.measure(...a);
          },
        },
      }),
    onStep: (info) => {
      rowsOf.push(info.rows);
      layersAsked.push(asked);
      asked = [];
    },
  });
  // One probe call (the attention row of the most-attended key) at layer 1 per measurement:
  // remembered after step 0's full refresh, measured once in every later step (not once per layer
  // above 1).
  for (const calls of layersAsked) expect(calls).toEqual([1]);
  // gamma 0.999: the drift rule fires, and the layers above the probe recompute every row.
  const L = 15;
  const drifted = rowsOf.slice(1).filter((r) => r[0] !== L && r.at(-1) === L).length;
  expect(drifted).toBeGreaterThan(0);
});

test('the runner copies out only the hidden state the probe reads, and the probe still drives refreshes', async () => {
  const { plan, weights, lowered, generation } = elasticOnTiny(2);
  const generate = async () => {
    // The layers whose output the step asked for (-1: the embedding's), and every step's rows.
    const read = new Set<number>();
    const rows: (readonly number[])[] = [];
    await simulateGeneration(plan, lowered, {
      ...generation,
      runner: (L) => {
        const inner = new ReferenceRunner(lowered, weights, L);
        const embed = inner.embed.bind(inner);
        const layer = inner.layer.bind(inner);
        return Object.assign(inner, {
          embed: (...a: Parameters<ReferenceRunner['embed']>) => {
            if (a[2]) read.add(-1);
            return embed(...a);
          },
          layer: (...a: Parameters<ReferenceRunner['layer']>) => {
            if (a[3]) read.add(a[1]);
            return layer(...a);
          },
        });
      },
      onStep: (info) => rows.push(info.rows),
    });
    return { read: [...read], rows };
  };
  const lean = await generate();
  // Layer 1's output enters the probe layer 2: the only state the step copies out.
  expect(lean.read).toEqual([1]);
  // gamma 0.999: the probe reads that state and its drift recomputes every row above layer 2.
  const L = 15;
  expect(lean.rows.slice(1).filter((r) => r[0] !== L && r.at(-1) === L).length).toBeGreaterThan(0);
});
