// The advisor's report, pinned for one plan on one machine at fixed sizes: a change to the cost
// model or to the report shows up here as a diff to review.
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { advise } from '../../src/cost/advise.ts';
import { adviceJson, formatAdvice } from '../../src/cost/format.ts';
import { type Hardware, publishedHardware } from '../../src/cost/hardware.ts';
import { checkSource } from '../../src/dsl/check.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';

const path = 'examples/fast-dllm-dual.kvp';
const plan = checkSource({ path, text: readFileSync(path, 'utf8') }).plans[0];
if (!plan) throw new Error(`${path} does not check`);
const h100 = publishedHardware.find((h) => h.name === 'h100') as Hardware;
const advice = advise(plan, presets['llada-8b'] as ModelConfig, h100, {
  batch: 1,
  promptLength: 64,
  genLength: 128,
  crossoverLimit: 256,
});

describe('the cost report', () => {
  test('fast-dllm-dual on LLaDA-8B, H100, batch 1, prompt 64, generation 128', () => {
    expect(formatAdvice(advice)).toMatchSnapshot();
  });

  test('a plan without a cache is told so', () => {
    const base = 'examples/baseline.kvp';
    const baseline = checkSource({ path: base, text: readFileSync(base, 'utf8') }).plans[0];
    if (!baseline) throw new Error(`${base} does not check`);
    const text = formatAdvice(
      advise(baseline, presets.small as ModelConfig, h100, { batch: 1, promptLength: 8, genLength: 32 }),
    );
    expect(text).toContain('speedup 1.00x');
    expect(text).toContain('crossover: never: baseline runs as its own no-cache twin');
    expect(text).toContain("why: nothing is cached: every step recomputes every row, as the twin's steps do");
  });

  test('the JSON is the advice itself, whole, with its assumptions', () => {
    const { assumptions, ...rest } = JSON.parse(adviceJson(advice));
    expect(rest).toEqual(JSON.parse(JSON.stringify(advice)));
    expect(formatAdvice(advice)).toContain(`assumptions: ${assumptions}\n`);
    expect(JSON.parse(adviceJson(advice))).toMatchObject({
      plan: 'fast_dllm_dual',
      hardware: { name: 'h100' },
      crossover: { kind: 'always' },
    });
  });
});
