import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import type { Stmt } from '../../src/dsl/ast.ts';
import { type CheckedPlan, checkSource } from '../../src/dsl/check.ts';
import { printExpr, printPlan } from '../../src/dsl/printer.ts';
import { decodeMatchedTwin, runKey, structureOf } from '../../src/dsl/twin.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { modelFor } from '../../src/runtime/modelFor.ts';
import { simulateGeneration } from '../../src/runtime/simulate.ts';
import { float64Bound } from '../../src/runtime/verify.ts';
import { examplePlan, examples } from '../runtime/support.ts';

const check = (text: string, overrides: Record<string, string> = {}): CheckedPlan => {
  const r = checkSource({ path: 'test.kvp', text }, { overrides: new Map(Object.entries(overrides)) });
  const plan = r.plans[0];
  if (!plan) throw new Error(r.diagnostics.map((d) => d.message).join('; '));
  return plan;
};

const twinOf = (plan: CheckedPlan): CheckedPlan => {
  const t = decodeMatchedTwin(plan);
  if (!t.ok) throw new Error(`${t.text}\n${t.diagnostics.map((d) => d.message).join('; ')}`);
  return t.checked;
};

/** The statements of a plan as text, without comments; the twin keeps some of them verbatim. */
const stmtTexts = (p: CheckedPlan, kind: Stmt['kind']) =>
  printPlan({
    ...p.plan,
    params: [],
    leading: [],
    inner: [],
    body: p.plan.body.filter((s) => s.kind === kind),
  })
    .split('\n')
    .slice(1, -1)
    .map((l) => l.replace(/\s+#.*$/, '').trim());

/** Every example, with `--set` overrides of the knobs it declares, so that overrides are carried. */
const overridesFor = (name: string): Record<string, string> => {
  const text = readFileSync(`examples/${name}.kvp`, 'utf8');
  const o: Record<string, string> = {};
  if (/\bblock\s*:/.test(text)) o.block = '8';
  if (/\btau\s*:/.test(text)) o.tau = '0.75';
  if (/\bsigma\s*:/.test(text)) o.sigma = '4.5';
  if (/\btotal_steps\s*:/.test(text)) o.total_steps = '100';
  return o;
};

describe('the decode-matched no-cache twin of every example plan', () => {
  test.each(examples)('%s: checks, keeps the decoding and the structure, and caches nothing', (name) => {
    const overrides = overridesFor(name);
    const plan = check(readFileSync(`examples/${name}.kvp`, 'utf8'), overrides);
    const twin = twinOf(plan);
    expect(twin.plan.name).toBe(`${plan.plan.name}_twin`);
    // Nothing but recomputation of everything: an exact plan.
    expect(twin.classification).toEqual({ exact: true });
    for (const kind of ['cache', 'refresh', 'select'] as const) expect(stmtTexts(twin, kind)).toEqual([]);
    expect(stmtTexts(twin, 'compute')).toEqual(['compute all']);
    const mask = structureOf(plan.typed).mask;
    expect(stmtTexts(twin, 'attend')).toEqual([`attend all${mask ? ` mask ${mask.name}` : ''}`]);
    // Blocks and the decode rule (rule, score, window, AR shift) as written.
    expect(stmtTexts(twin, 'blocks')).toEqual(stmtTexts(plan, 'blocks'));
    expect(stmtTexts(twin, 'decode')).toEqual(stmtTexts(plan, 'decode'));
    expect(structureOf(twin.typed).arShift).toBe(plan.typed.decode.arShift);
    // Every parameter the twin keeps has the original's value, overrides included; no others.
    expect(Object.keys(overrides).every((k) => plan.params.has(k))).toBe(true);
    for (const [k, v] of twin.params) expect(plan.params.get(k), k).toBe(v);
    for (const k of Object.keys(overrides))
      if (twin.params.has(k)) expect(twin.params.get(k)).toBe(Number(overrides[k]));
  });

  test('the twin of the no-cache baseline is the baseline itself', () => {
    const plan = check(readFileSync('examples/baseline.kvp', 'utf8'), { block: '16' });
    const twin = twinOf(plan);
    expect(runKey(twin)).toBe(runKey(plan));
    expect(twin.plan.body.map((s) => s.kind)).toEqual(plan.plan.body.map((s) => s.kind));
    // And a plan with a cache is not its own twin.
    const dual = check(readFileSync('examples/fast-dllm-dual.kvp', 'utf8'));
    expect(runKey(twinOf(dual))).not.toBe(runKey(dual));
  });

  test('keeps exactly the parameters and lets the kept statements read, transitively', () => {
    const plan = check(
      [
        'plan p(block: int = 4 in [1, 64], w: int = 2 in [0, 8], n: int = 3 in [1, 9], t: float = 0.9 in [0.5, 1.0]) {',
        '  let near = window(masked, w)',
        '  let cand = near & current_block',
        '  let fresh = masked | newly_decoded',
        '  blocks block',
        '  refresh all when every(n)',
        '  compute fresh',
        '  cache kv of prompt | decoded',
        '  attend all',
        '  decode threshold(t) in cand',
        '}',
      ].join('\n'),
      { t: '1' },
    );
    const twin = twinOf(plan);
    expect([...twin.params.keys()]).toEqual(['block', 'w', 't']);
    expect(twin.typed.bindings.has('cand') && twin.typed.bindings.has('near')).toBe(true);
    expect(twin.typed.bindings.has('fresh')).toBe(false);
    // An integral override of a float parameter stays a float (`1.0`), so the twin still checks.
    expect(twin.params.get('t')).toBe(1);
    expect(printPlan(twin.plan)).toContain('t: float = 1.0 in [0.5, 1.0]');
  });
});

const tiny = presets.tiny as ModelConfig;

/** Runs a plan on the float64 reference, on a random model shaped for it, against the golden. */
async function generation(plan: CheckedPlan, seed: number, premise = false) {
  const config = modelFor(plan, tiny);
  const weights = randomWeights(config, seed, premise ? { attentionOutputScale: 0 } : {});
  const prompt = Int32Array.from({ length: 3 }, (_, i) => (seed + 7 * i) % (config.vocab - 1));
  const { lowered } = compilePlan(plan, config, { target: 'reference' });
  const r = await simulateGeneration(plan, lowered, { config, weights, prompt, genLen: 8, seed });
  return { ...r, within: r.steps.every((s) => s.deviation <= float64Bound(config, 11, s.scale)) };
}

describe('the twin is exact', () => {
  test.each(examples)('%s: the twin equals the golden full forward at every step', async (name) => {
    const plan = examplePlan(name);
    for (const seed of [3, 17]) {
      const r = await generation(twinOf(plan), seed);
      expect(r.steps.length).toBeGreaterThan(0);
      expect(r.within).toBe(true);
      expect(r.steps.every((s) => s.agrees)).toBe(true);
    }
  });

  test.each(examples)(
    '%s: where the plan is exact (its premise holds) it generates what its twin generates',
    async (name) => {
      const plan = examplePlan(name);
      const own = await generation(plan, 5, true);
      const twin = await generation(twinOf(plan), 5, true);
      expect(own.within).toBe(true);
      expect([...own.tokens]).toEqual([...twin.tokens]);
      expect(own.steps.length).toBe(twin.steps.length);
    },
  );

  test('the comparison is sensitive: a cached plan drifts from the golden where its twin does not', async () => {
    const plan = examplePlan('fast-dllm-dual');
    const own = await generation(plan, 11);
    expect(own.within).toBe(false);
    expect((await generation(twinOf(plan), 11)).within).toBe(true);
    expect(printExpr(twinOf(plan).typed.decode.rule)).toBe(printExpr(plan.typed.decode.rule));
  });
});
