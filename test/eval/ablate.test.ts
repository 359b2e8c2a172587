import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { type CheckedPlan, checkSource } from '../../src/dsl/check.ts';
import { printPlan } from '../../src/dsl/printer.ts';
import { runKey } from '../../src/dsl/twin.ts';
import { contrastsOf } from '../../src/eval/ablate.ts';

const example = (name: string, overrides: Record<string, string> = {}): CheckedPlan => {
  const path = `examples/${name}.kvp`;
  const r = checkSource(
    { path, text: readFileSync(path, 'utf8') },
    { overrides: new Map(Object.entries(overrides)) },
  );
  const plan = r.plans[0];
  if (!plan) throw new Error(r.diagnostics.map((d) => d.message).join('; '));
  return plan;
};

const contrasts = (plan: CheckedPlan, genLength = 64) => {
  const c = contrastsOf(plan, genLength);
  if (!c.ok) throw new Error(`${c.what}: ${c.diagnostics.map((d) => d.message).join('; ')}`);
  return c;
};

describe('what a plan is compared with', () => {
  test("the baseline decodes one token per step in blocks of the plan's length", () => {
    const { baseline, twin } = contrasts(example('fast-dllm-dual', { block: '16' }));
    expect(baseline.params.get('block')).toBe(16);
    expect(baseline.params.get('steps_per_block')).toBe(16);
    expect(twin.params.get('block')).toBe(16);
    expect(twin.plan.name).toBe('fast_dllm_dual_twin');
  });

  test('without blocks the whole canvas is one block', () => {
    const { baseline } = contrasts(example('dkv-prefill'), 48);
    expect(baseline.params.get('block')).toBe(48);
    expect(baseline.params.get('steps_per_block')).toBe(48);
  });

  test("the baseline runs on the plan's model: its mask and AR shift", () => {
    const v2 = contrasts(example('fast-dllm-v2', { block: '8' })).baseline;
    expect(printPlan(v2.plan)).toMatch(/attend all mask block_causal\n.*ar_shift\n/);
    expect(printPlan(contrasts(example('flashblock')).baseline.plan)).toMatch(/mask block_causal/);
    expect(printPlan(contrasts(example('fast-dllm-dual')).baseline.plan)).not.toMatch(/mask|ar_shift/);
  });

  test("a plan whose decode rule is the baseline's has the baseline as its twin", () => {
    const c = contrasts(example('sparse-dllm'));
    expect(runKey(c.twin)).toBe(runKey(c.baseline));
    const dual = contrasts(example('fast-dllm-dual'));
    expect(runKey(dual.twin)).not.toBe(runKey(dual.baseline));
  });

  test('a block length the baseline cannot take is reported, not thrown', () => {
    const c = contrastsOf(example('dkv-prefill'), 5000);
    expect(c.ok).toBe(false);
    if (!c.ok) expect(c.what).toBe('the baseline (block 5000)');
  });
});
