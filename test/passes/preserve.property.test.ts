/**
 * Every cleanup pass, and the whole cleanup pipeline, preserves the interpreter's result. The
 * lowering emits little redundancy, so the programs and sets are first made redundant in ways
 * that do not change their meaning (duplicated and dead instructions, reshape chains,
 * gather(place(x, r), r) round trips, swapped add operands, `S | S`, `S & all`, …); then a whole
 * generation on the float64 interpreter must give the same per-step deviations and tokens as the
 * plain lowering, and the IR must verify after every pass.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { Expr } from '../../src/dsl/ast.ts';
import type { CheckedPlan } from '../../src/dsl/check.ts';
import type { LayerRules } from '../../src/dsl/semantics/layerRules.ts';
import { type LoweredPlan, lowerPlan } from '../../src/ir/lower.ts';
import { ops } from '../../src/ir/ops.ts';
import {
  type Instr,
  type IRType,
  type Stage,
  type StepProgram,
  tensor,
  type Value,
} from '../../src/ir/types.ts';
import { formatVerifyError, verifyPlan } from '../../src/ir/verify.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { dcePass } from '../../src/passes/dce.ts';
import { hoistPass } from '../../src/passes/hoist.ts';
import { cleanupPasses, initialState, runPipeline, withPhases } from '../../src/passes/manager.ts';
import type { Pass, PipelineState } from '../../src/passes/state.ts';
import { modelFor } from '../../src/runtime/modelFor.ts';
import { type GenerationResult, simulateGeneration } from '../../src/runtime/simulate.ts';
import { examplePlan, examples } from '../runtime/support.ts';
import { configArb } from '../support/models.ts';

const caseArb = fc.record({
  config: configArb(2),
  seed: fc.integer({ min: 1, max: 1_000_000 }),
  promptLen: fc.integer({ min: 1, max: 4 }),
  noise: fc.noBias(fc.integer({ min: 1, max: 0x7fffffff })),
});

/** A small deterministic generator for the noise choices. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

const maxId = (p: StepProgram): number =>
  Math.max(
    0,
    ...p.stages.flatMap((s) => [
      ...s.inputs.map((i) => i.value.id),
      ...s.body.flatMap((i) => i.results.map((r) => r.id)),
    ]),
  );

/** The same program with meaning-preserving redundancy added to every stage. */
function noisyProgram(p: StepProgram, rand: () => number): StepProgram {
  let next = maxId(p) + 1;
  const fresh = (type: IRType): Value => ({ id: next++, type });
  const stage = (s: Stage): Stage => {
    const sub = new Map<number, Value>();
    const cur = (v: Value) => sub.get(v.id) ?? v;
    const lists = s.inputs.filter((i) => i.role === 'index').map((i) => i.value);
    const body: Instr[] = [];
    for (const original of s.body) {
      let ins: Instr = { ...original, args: original.args.map(cur) };
      const pure = ops[ins.op]?.effect !== true && ins.results.length > 0;
      const [a0, a1] = ins.args;
      if (ins.op === 'add' && a0 && a1 && rand() < 0.5) ins = { ...ins, args: [a1, a0] };
      if (ins.op === 'reshape' && a0?.type.kind === 'tensor' && rand() < 0.5) {
        // reshape x → reshape (reshape x to one flat row) to the same inner shape
        const flat = a0.type.shape.slice(1).reduce<number>((m, d) => m * Number(d), 1);
        const t = fresh(tensor(a0.type.dtype, [a0.type.shape[0] as string, flat]));
        body.push({ op: 'reshape', results: [t], args: [a0], attrs: { inner: [flat] } });
        ins = { ...ins, args: [t] };
      }
      body.push(ins);
      if (pure && rand() < 0.3) {
        // A duplicate; later uses read it instead of the original.
        const results = ins.results.map((r) => fresh(r.type));
        body.push({ ...ins, results });
        ins.results.forEach((r, k) => {
          sub.set(r.id, results[k] as Value);
        });
      }
      if (pure && rand() < 0.2) body.push({ ...ins, results: ins.results.map((r) => fresh(r.type)) });
      for (const r of ins.results) {
        const v = cur(r);
        if (v.type.kind !== 'tensor') continue;
        const rows = v.type.shape[0];
        const list = lists.find((l) => l.type.kind === 'index' && l.type.size === rows);
        if (!list || rand() >= 0.3) continue;
        // gather(place(v, r), r) or gather(scatter(place(v, r), r, v), r): v again.
        const placed = fresh(tensor(v.type.dtype, ['L', ...v.type.shape.slice(1)]));
        body.push({ op: 'place', results: [placed], args: [v, list], attrs: {} });
        let base = placed;
        if (rand() < 0.5) {
          base = fresh(placed.type);
          body.push({ op: 'scatter', results: [base], args: [placed, list, v], attrs: {} });
        }
        const back = fresh(v.type);
        body.push({ op: 'gather', results: [back], args: [base, list], attrs: {} });
        sub.set(r.id, back);
      }
    }
    const outputs = s.outputs.map((o) => ({ ...o, value: cur(o.value) }));
    return { ...s, body, outputs };
  };
  return { ...p, stages: p.stages.map(stage) };
}

/** Meaning-preserving redundancy in a set expression. */
function noisySet(e: Expr, rand: () => number): Expr {
  const bin = (op: '|' | '&' | '-', left: Expr, right: Expr): Expr => ({
    kind: 'binary',
    op,
    left,
    right,
    span: e.span,
  });
  const name = (n: string): Expr => ({ kind: 'name', name: n, span: e.span });
  switch (Math.floor(rand() * 6)) {
    case 0:
      return bin('|', e, e);
    case 1:
      return bin('&', e, name('all'));
    case 2:
      return bin('-', bin('|', e, name('none')), name('none'));
    case 3:
      return bin('|', bin('&', e, e), bin('-', name('prompt'), name('prompt')));
    case 4:
      return bin('-', bin('|', e, name('masked')), bin('-', name('masked'), e));
    default:
      return e;
  }
}

function noisyLayers(layers: readonly LayerRules[], rand: () => number): LayerRules[] {
  const memo = new Map<object, object>();
  const once = <T extends object>(s: T, f: (s: T) => T): T => {
    let t = memo.get(s);
    if (!t) {
      t = f(s);
      memo.set(s, t);
    }
    return t as T;
  };
  return layers.map((r) => ({
    ...r,
    compute: r.compute && once(r.compute, (s) => ({ ...s, set: noisySet(s.set, rand) })),
    attend:
      r.attend &&
      once(r.attend, (s) => ({
        ...s,
        keys:
          s.keys.kind === 'keys'
            ? { ...s.keys, set: noisySet(s.keys.set, rand) }
            : { ...s.keys, segments: s.keys.segments.map((g) => ({ ...g, keys: noisySet(g.keys, rand) })) },
      })),
    refreshes: r.refreshes.map((f) => once(f, (s) => ({ ...s, set: noisySet(s.set, rand) }))),
    caches: r.caches.map((c) => ({
      rule: once(c.rule, (s) => ({ ...s, set: noisySet(s.set, rand) })),
      id: c.id,
    })),
  }));
}

function noisyState(l: LoweredPlan, seed: number): PipelineState {
  const rand = rng(seed);
  const s = initialState(l);
  const phases = new Map([...s.phases].map(([k, p]) => [k, noisyProgram(p, rand)] as const));
  return { lowered: { ...l, layers: noisyLayers(l.layers, rand) }, phases };
}

interface Case {
  plan: CheckedPlan;
  config: ModelConfig;
  seed: number;
  promptLen: number;
}

function simulate(c: Case, lowered: LoweredPlan): Promise<GenerationResult> {
  const weights = randomWeights(c.config, c.seed);
  const prompt = Int32Array.from({ length: c.promptLen }, (_, i) => (c.seed + 7 * i) % (c.config.vocab - 1));
  return simulateGeneration(c.plan, lowered, { config: c.config, weights, prompt, genLen: 8, seed: c.seed });
}

function expectSame(got: GenerationResult, want: GenerationResult, what: string): void {
  expect(got.steps.length, what).toBe(want.steps.length);
  got.steps.forEach((s, i) => {
    const w = want.steps[i];
    expect(s.phase, `${what}, step ${i}`).toBe(w?.phase);
    expect(s.computed, `${what}, step ${i}`).toBe(w?.computed);
    expect(Math.abs(s.deviation - (w?.deviation ?? Number.NaN)), `${what}, step ${i}`).toBeLessThanOrEqual(
      1e-12,
    );
  });
  expect(Array.from(got.tokens), what).toEqual(Array.from(want.tokens));
}

const clean = (s: PipelineState, what: string) =>
  expect(verifyPlan([...s.phases.values()]).map(formatVerifyError), what).toEqual([]);

const instrCount = (s: PipelineState): number =>
  [...s.phases.values()].reduce((n, p) => n + p.stages.reduce((m, st) => m + st.body.length, 0), 0);

const pipelines: readonly (readonly [string, readonly Pass[]])[] = [
  ...cleanupPasses.map((p) => [p.name, [p]] as const),
  ['cleanup', cleanupPasses],
];

describe('every cleanup pass preserves the interpreter’s result', () => {
  test.each(examples)('%s', async (name) => {
    const plan = examplePlan(name);
    await fc.assert(
      fc.asyncProperty(caseArb, async ({ config: base, seed, promptLen, noise }) => {
        const config = modelFor(plan, base);
        const c: Case = { plan, config, seed, promptLen };
        const ctx = { config, target: 'reference' } as const;
        // Lowering leaves the reuse phase (of plans that reuse a split segment) to the hoisting pass,
        // whose output still asks for the bypassed segment's key list until DCE drops it.
        const plain = lowerPlan(plan, config);
        const lowered = withPhases(plain, runPipeline(initialState(plain), [hoistPass, dcePass], ctx).state);
        const want = await simulate(c, lowered);
        const noisy = noisyState(lowered, noise);
        clean(noisy, 'the noisy programs');
        expect(instrCount(noisy)).toBeGreaterThan(instrCount(initialState(lowered)));
        for (const [label, passes] of pipelines) {
          const { state } = runPipeline(noisy, passes, ctx, { verify: true });
          clean(state, label);
          expectSame(await simulate(c, withPhases(lowered, state)), want, `${name} after ${label}`);
        }
        // The pipeline removes all the redundancy the noise added.
        const cleaned = runPipeline(noisy, cleanupPasses, ctx).state;
        const direct = runPipeline(initialState(lowered), cleanupPasses, ctx).state;
        expect(instrCount(cleaned)).toBe(instrCount(direct));
        expect(instrCount(direct)).toBe(instrCount(initialState(lowered)));
      }),
      { numRuns: 3 },
    );
  });
});
