// The checker's cost is bounded (issue 21): a plan with its parameters anywhere in their declared
// ranges is checked within the simulation budget, at scaled-down values where the declared ones
// would exceed it, and a note says so; scaled simulations still find the errors.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { Param, Plan } from '../../src/dsl/ast.ts';
import { checkSemantics, checkSource, type SemanticCheck, simulationBudget } from '../../src/dsl/check.ts';
import { type Diagnostic, formatDiagnostics } from '../../src/dsl/diagnostics.ts';
import { parsePlanText } from '../../src/dsl/front.ts';
import { type TypedPlan, typecheckPlan } from '../../src/dsl/typecheck.ts';

const kvp = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.kvp'))
    .sort()
    .map((f) => join(dir, f));
const examples = kvp('examples');

const planOf = (path: string): { plan: Plan; text: string } => {
  const text = readFileSync(path, 'utf8');
  const plan = parsePlanText(text).file?.plans[0];
  if (!plan) throw new Error(`${path} has no plan`);
  return { plan, text };
};

const isInt = (p: Param) => p.defaultValue.kind === 'number' && p.defaultValue.isInt;

/** Every int parameter at the top of its declared range. */
const atMaxima = (plan: Plan): Map<string, string> =>
  new Map(plan.params.flatMap((p) => (p.range && isInt(p) ? [[p.name, String(p.range.hi.value)]] : [])));

/** A semantic check with its wall-clock time. */
function timed(typed: TypedPlan, budget?: number): SemanticCheck & { ms: number } {
  const t0 = performance.now();
  const r = checkSemantics(typed, budget);
  return { ...r, ms: performance.now() - t0 };
}

const errors = (ds: readonly Diagnostic[]) => ds.filter((d) => d.severity === 'error');
const notes = (ds: readonly Diagnostic[]) => ds.filter((d) => d.severity === 'note');
/** Where each error is and what it says, without the steps and positions of the canvas. */
const errorShapes = (ds: readonly Diagnostic[]) =>
  errors(ds).map((d) => `${d.span.start.offset}: ${d.message.replace(/\d+/g, '#')}`);

/** The note names every scaled parameter at its simulated and its declared value. */
function expectNoteFor(r: SemanticCheck, typed: TypedPlan): void {
  const [note, ...more] = notes(r.diagnostics);
  if (r.scaled.size === 0) {
    expect(note).toBeUndefined();
    return;
  }
  expect(more).toEqual([]);
  expect(note?.span).toEqual(typed.plan.nameSpan);
  const simulated = [...r.scaled].map(([name, v]) => `${name}=${v}`).join(', ');
  const declared = [...r.scaled.keys()]
    .map((name) => {
      const b = typed.bindings.get(name);
      return `${name}=${b?.kind === 'param' ? b.value : ''}`;
    })
    .join(', ');
  expect(note?.message).toContain(`the semantic simulation ran at ${simulated} (${declared} would take`);
}

describe('the simulation stays within its budget', () => {
  test.each(examples)('%s at the top of every int range', (path) => {
    const { plan, text } = planOf(path);
    const { typed } = typecheckPlan(plan, atMaxima(plan), text);
    if (!typed) throw new Error('the maxima do not type-check');
    const r = timed(typed);
    expect(r.work).toBeLessThanOrEqual(simulationBudget);
    expect(r.ms).toBeLessThan(2000);
    expect(errors(r.diagnostics)).toEqual([]);
    expectNoteFor(r, typed);
  });

  test.each(examples)('%s at sampled values in its ranges', (path) => {
    const { plan, text } = planOf(path);
    const value = (p: Param): fc.Arbitrary<string> => {
      const r = p.range;
      if (!r) return fc.constant(String(p.defaultValue.value));
      if (isInt(p)) return fc.integer({ min: r.lo.value, max: r.hi.value }).map(String);
      return fc.double({ min: r.lo.value, max: r.hi.value, noNaN: true }).map(String);
    };
    const assignment = fc.tuple(...plan.params.map(value));
    fc.assert(
      fc.property(assignment, (values) => {
        const overrides = new Map(plan.params.map((p, i) => [p.name, values[i] as string]));
        const { typed } = typecheckPlan(plan, overrides, text);
        // An even pooling kernel is within sparse_dllm's declared range but not maxpool's.
        fc.pre(typed !== undefined);
        if (!typed) return;
        const r = timed(typed);
        expect(r.work).toBeLessThanOrEqual(simulationBudget);
        expect(r.ms).toBeLessThan(2000);
        expect(errors(r.diagnostics)).toEqual([]);
        expectNoteFor(r, typed);
      }),
      { numRuns: 20, seed: 21 },
    );
  });
});

describe('scaled simulations', () => {
  test('kvplan check shows the note once, naming the simulated and the declared values', () => {
    const path = 'examples/sparse-dllm.kvp';
    const text = readFileSync(path, 'utf8');
    const overrides = new Map([
      ['block', '4096'],
      ['steps_per_block', '4096'],
    ]);
    const r = checkSource({ path, text }, { overrides });
    expect(r.plans).toHaveLength(1);
    const printed = formatDiagnostics({ path, text }, r.diagnostics);
    expect(printed).toHaveLength(1);
    expect(printed[0]).toMatch(
      /^examples\/sparse-dllm\.kvp:\d+:\d+: note: the semantic simulation ran at block=\d+, steps_per_block=\d+ \(block=4096, steps_per_block=4096 would take up to [\d,]+ row-steps, over its budget of 2,000,000\); the other checks ran at the declared values\n/,
    );
    expect(checkSource({ path, text }).diagnostics).toEqual([]);
  });

  test('keep the relations the plan states: steps = block stays, and block_step < 2 still means two steps', () => {
    const { plan, text } = planOf('examples/sparse-dllm.kvp');
    const at = (block: number, steps: number) => {
      const overrides = new Map([
        ['block', String(block)],
        ['steps_per_block', String(steps)],
      ]);
      const { typed } = typecheckPlan(plan, overrides, text);
      if (!typed) throw new Error('ill-typed');
      return checkSemantics(typed).scaled;
    };
    const equal = at(4096, 4096);
    expect(equal.get('block')).toBe(equal.get('steps_per_block'));
    // Steps are compared with 2 and 1, so a small step count is kept above them.
    expect(at(4096, 2).get('steps_per_block')).toBeUndefined();
    expect(at(4096, 64).get('steps_per_block')).toBeGreaterThanOrEqual(3);
  });

  test.each(examples)('%s: a simulation scaled to fit a small budget comes to the same verdict', (path) => {
    const { plan, text } = planOf(path);
    const { typed } = typecheckPlan(plan, new Map(), text);
    if (!typed) throw new Error('ill-typed');
    const full = checkSemantics(typed);
    const scaled = checkSemantics(typed, 100_000);
    // The examples with blocks of 32 are over this budget at their defaults.
    if (plan.params.some((p) => p.name === 'block' && p.defaultValue.value === 32))
      expect(scaled.scaled.get('block')).toBeLessThan(32);
    expect(errorShapes(scaled.diagnostics)).toEqual(errorShapes(full.diagnostics));
    expect(scaled.classification.exact).toBe(full.classification.exact);
    expectNoteFor(scaled, typed);
  });

  // The invalid examples whose error only the simulation finds, and that have a size to scale.
  const simulated = [
    'hidden-missing',
    'no-refresh-at-start',
    'partial-never-computed',
    'select-before-chosen',
    'uncovered-read',
  ].map((name) => `examples/invalid/${name}.kvp`);

  test.each(simulated)('%s: the error is still found at the top of the ranges', (path) => {
    const { plan, text } = planOf(path);
    const { typed } = typecheckPlan(plan, new Map(), text);
    const big = typecheckPlan(plan, new Map([['block', '4096']]), text).typed;
    if (!typed || !big) throw new Error('ill-typed');
    const declared = checkSemantics(typed);
    expect(errors(declared.diagnostics)).toHaveLength(1);
    const r = timed(big);
    expect(r.scaled.get('block')).toBeLessThan(4096);
    expect(r.work).toBeLessThanOrEqual(simulationBudget);
    expect(r.ms).toBeLessThan(2000);
    expect(errorShapes(r.diagnostics)).toEqual(errorShapes(declared.diagnostics));
    expect(errors(r.diagnostics)[0]?.notes?.at(-1)).toBe(
      `note: found by the semantic simulation at block=${r.scaled.get('block')}`,
    );
    expectNoteFor(r, big);
  });

  test('a plan without sizes to scale is simulated at its own values, without a note', () => {
    const path = 'examples/d2cache.kvp';
    const { plan, text } = planOf(path);
    const { typed } = typecheckPlan(plan, atMaxima(plan), text);
    if (!typed) throw new Error('ill-typed');
    const r = checkSemantics(typed);
    expect(r.scaled.size).toBe(0);
    expect(notes(r.diagnostics)).toEqual([]);
  });
});
