// The checker's cost is bounded (issue 21): a plan with its parameters anywhere in their declared
// ranges is checked within the simulation budget, at scaled-down values where the declared ones
// would exceed it, and a note says so; scaled simulations still find the errors.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { Param, Plan } from '../../src/dsl/ast.ts';
import {
  checkSemantics,
  checkSource,
  fileSimulationBudget,
  maxPlans,
  type SemanticCheck,
  simulationBudget,
} from '../../src/dsl/check.ts';
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

/** The declared value of a scaled parameter, or of a literal (`literal 9:10`) where it is written. */
function declaredValue(typed: TypedPlan, text: string, name: string): string {
  const at = /^literal (\d+):(\d+)$/.exec(name);
  if (!at) {
    const b = typed.bindings.get(name);
    return b?.kind === 'param' ? String(b.value) : '';
  }
  const line = text.split('\n')[Number(at[1]) - 1] ?? '';
  return /^\d+/.exec(line.slice(Number(at[2]) - 1))?.[0] ?? '';
}

const listed = (values: Iterable<[string, number | string]>) =>
  [...values].map(([name, v]) => `${name}=${v}`).join(', ');

/** The note names every scaled parameter and literal at its simulated and its declared value. */
function expectNoteFor(r: SemanticCheck, typed: TypedPlan, text: string): void {
  const [note, ...more] = notes(r.diagnostics);
  if (r.scaled.size === 0) {
    expect(note).toBeUndefined();
    return;
  }
  expect(more).toEqual([]);
  expect(note?.span).toEqual(typed.plan.nameSpan);
  const declared = listed([...r.scaled.keys()].map((name) => [name, declaredValue(typed, text, name)]));
  expect(note?.message).toContain(
    `the semantic simulation ran at ${listed(r.scaled)} (${declared} would take`,
  );
}

describe('the simulation stays within its budget', () => {
  test.each(examples)('%s at the top of every int range', (path) => {
    const { plan, text } = planOf(path);
    const { typed } = typecheckPlan(plan, atMaxima(plan));
    if (!typed) throw new Error('the maxima do not type-check');
    const r = timed(typed);
    expect(r.work).toBeLessThanOrEqual(simulationBudget);
    expect(r.ms).toBeLessThan(2000);
    expect(errors(r.diagnostics)).toEqual([]);
    expectNoteFor(r, typed, text);
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
        const { typed } = typecheckPlan(plan, overrides);
        // An even pooling kernel is within sparse_dllm's declared range but not maxpool's.
        fc.pre(typed !== undefined);
        if (!typed) return;
        const r = timed(typed);
        expect(r.work).toBeLessThanOrEqual(simulationBudget);
        expect(r.ms).toBeLessThan(2000);
        expect(errors(r.diagnostics)).toEqual([]);
        expectNoteFor(r, typed, text);
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
    const { plan } = planOf('examples/sparse-dllm.kvp');
    const at = (block: number, steps: number) => {
      const overrides = new Map([
        ['block', String(block)],
        ['steps_per_block', String(steps)],
      ]);
      const { typed } = typecheckPlan(plan, overrides);
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
    const { typed } = typecheckPlan(plan, new Map());
    if (!typed) throw new Error('ill-typed');
    const full = checkSemantics(typed);
    const scaled = checkSemantics(typed, 100_000);
    // The examples with blocks of 32 are over this budget at their defaults.
    if (plan.params.some((p) => p.name === 'block' && p.defaultValue.value === 32))
      expect(scaled.scaled.get('block')).toBeLessThan(32);
    expect(errorShapes(scaled.diagnostics)).toEqual(errorShapes(full.diagnostics));
    expect(scaled.classification.exact).toBe(full.classification.exact);
    expectNoteFor(scaled, typed, text);
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
    const { typed } = typecheckPlan(plan, new Map());
    const big = typecheckPlan(plan, new Map([['block', '4096']])).typed;
    if (!typed || !big) throw new Error('ill-typed');
    const declared = checkSemantics(typed);
    expect(errors(declared.diagnostics)).toHaveLength(1);
    const r = timed(big);
    expect(r.scaled.get('block')).toBeLessThan(4096);
    expect(r.work).toBeLessThanOrEqual(simulationBudget);
    expect(r.ms).toBeLessThan(2000);
    expect(errorShapes(r.diagnostics)).toEqual(errorShapes(declared.diagnostics));
    expect(errors(r.diagnostics)[0]?.notes?.at(-1)).toBe(
      `note: found by the semantic simulation at ${listed(r.scaled)}`,
    );
    expectNoteFor(r, big, text);
  });

  test('a plan without sizes to scale is simulated at its own values, without a note', () => {
    const path = 'examples/d2cache.kvp';
    const { plan } = planOf(path);
    const { typed } = typecheckPlan(plan, atMaxima(plan));
    if (!typed) throw new Error('ill-typed');
    const r = checkSemantics(typed);
    expect(r.scaled.size).toBe(0);
    expect(notes(r.diagnostics)).toEqual([]);
  });
});

describe('literal sizes are scaled like parameters', () => {
  /** An example with some of its sizes written as literals in the thousands. */
  const variants: [string, string, (text: string) => string][] = [
    ['blocks 4096', 'examples/sparse-dllm.kvp', (t) => t.replace('blocks block', 'blocks 4096')],
    [
      'steps(4096) and blocks 4096',
      'examples/baseline.kvp',
      (t) => t.replace('blocks block', 'blocks 4096').replace('steps(steps_per_block)', 'steps(4096)'),
    ],
    [
      'on layer 9999 and on layers >= 10000',
      'examples/dllm-cache.kvp',
      (t) => t.replace('on layer 0', 'on layer 9999').replace('on layers >= 1', 'on layers >= 10000'),
    ],
    [
      'attn_similarity(5000) on layers > 5000',
      'examples/elastic-cache.kvp',
      (t) =>
        t.replace(
          'attn_similarity(probe) < gamma on layers > probe',
          'attn_similarity(5000) < gamma on layers > 5000',
        ),
    ],
  ];

  test.each(variants)('%s: within the budget, with the literals named in the note', (_, path, edit) => {
    const text = edit(readFileSync(path, 'utf8'));
    expect(text).not.toBe(readFileSync(path, 'utf8'));
    const plan = parsePlanText(text).file?.plans[0];
    if (!plan) throw new Error('no plan');
    const { typed } = typecheckPlan(plan, new Map());
    if (!typed) throw new Error('ill-typed');
    const r = timed(typed);
    expect(r.work).toBeLessThanOrEqual(simulationBudget);
    expect(r.ms).toBeLessThan(2000);
    expect(errors(r.diagnostics)).toEqual([]);
    expect([...r.scaled.keys()].some((name) => name.startsWith('literal '))).toBe(true);
    expectNoteFor(r, typed, text);
  });

  test('layer literals keep their order and adjacency: 9999 and 10000 stay neighbours', () => {
    const [, path, edit] = variants[2] as (typeof variants)[number];
    const text = edit(readFileSync(path, 'utf8'));
    const plan = parsePlanText(text).file?.plans[0];
    const typed = plan && typecheckPlan(plan, new Map()).typed;
    if (!typed) throw new Error('ill-typed');
    const values = [...checkSemantics(typed).scaled.values()].sort((a, b) => a - b);
    expect(values).toHaveLength(2);
    expect((values[1] as number) - (values[0] as number)).toBe(1);
  });

  test('layer bounds far apart come out in order, each gap kept up to 3 layers', () => {
    const bounds = fc.uniqueArray(fc.integer({ min: 0, max: 20_000 }), { minLength: 3, maxLength: 3 });
    fc.assert(
      fc.property(bounds, (xs) => {
        const [a, b, c] = [...xs].sort((x, y) => x - y) as [number, number, number];
        const lines = [
          'plan p() {',
          '  refresh all when step == 0',
          `  compute all on layers ${a}..${b}`,
          `  compute newly_decoded on layers > ${c}`,
          '  compute masked | newly_decoded',
          '  cache kv, hidden of all',
          '  attend all',
          '  decode steps(16) by confidence',
          '}',
        ];
        const text = lines.join('\n');
        const plan = parsePlanText(text).file?.plans[0];
        const typed = plan && typecheckPlan(plan, new Map()).typed;
        if (!typed) throw new Error(`ill-typed: ${text}`);
        const r = checkSemantics(typed);
        expect(r.work).toBeLessThanOrEqual(simulationBudget);
        expect(errors(r.diagnostics)).toEqual([]);
        /** The simulated value of the literal `v` written at `col` of line `line`. */
        const at = (v: number, line: number, col: number) => r.scaled.get(`literal ${line}:${col}`) ?? v;
        const [scope, above] = [lines[2] as string, lines[3] as string];
        const sa = at(a, 3, scope.indexOf(`${a}..`) + 1);
        const sb = at(b, 3, scope.lastIndexOf(`${b}`) + 1);
        const sc = at(c, 4, above.lastIndexOf(`${c}`) + 1);
        expect(sa).toBeLessThan(sb);
        expect(sb).toBeLessThan(sc);
        for (const [from, to, simulated] of [
          [a, b, sb - sa],
          [b, c, sc - sb],
        ] as const) {
          expect(simulated).toBeGreaterThanOrEqual(Math.min(to - from, 3));
          expect(simulated).toBeLessThanOrEqual(to - from);
        }
      }),
      { numRuns: 30, seed: 7 },
    );
  });

  test('an error is still found where the block length is a literal', () => {
    const path = 'examples/invalid/uncovered-read.kvp';
    const original = readFileSync(path, 'utf8');
    const text = original.replace('blocks block', 'blocks 4096');
    const declared = (t: string) => {
      const plan = parsePlanText(t).file?.plans[0];
      const typed = plan && typecheckPlan(plan, new Map()).typed;
      if (!typed) throw new Error('ill-typed');
      return { typed, r: timed(typed) };
    };
    const small = declared(original).r;
    const { typed, r } = declared(text);
    expect(r.work).toBeLessThanOrEqual(simulationBudget);
    expect(r.ms).toBeLessThan(2000);
    // The edit moves what follows it by one character: compare lines, not offsets.
    const shapes = (ds: readonly Diagnostic[]) =>
      errors(ds).map((d) => `${d.span.start.line}: ${d.message.replace(/\d+/g, '#')}`);
    expect(shapes(r.diagnostics)).toEqual(shapes(small.diagnostics));
    expect(shapes(r.diagnostics)).toHaveLength(1);
    expectNoteFor(r, typed, text);
  });
});

describe('a file of many plans', () => {
  const many = (n: number) => {
    const text = readFileSync('examples/sparse-dllm.kvp', 'utf8');
    return Array.from({ length: n }, (_, i) => text.replace('plan sparse_dllm(', `plan p${i}(`)).join('\n');
  };

  test(`more than ${maxPlans} plans is an error at the first plan past the limit`, () => {
    const text = many(maxPlans + 1);
    const r = checkSource({ path: 'many.kvp', text });
    expect(r.plans).toEqual([]);
    expect(formatDiagnostics({ path: 'many.kvp', text }, r.diagnostics)[0]).toMatch(
      new RegExp(
        `^many\\.kvp:\\d+:6: error: the file defines more than ${maxPlans} plans, the limit of a file\\n`,
      ),
    );
    expect(r.diagnostics[0]?.span.start.line).toBe(
      1 + maxPlans * (text.split('\n').length / (maxPlans + 1)) + 8 - 1,
    );
  });

  test(`${maxPlans} plans share one budget: the file is checked within it`, () => {
    const text = many(maxPlans);
    const t0 = performance.now();
    const r = checkSource({ path: 'many.kvp', text });
    const ms = performance.now() - t0;
    expect(r.plans).toHaveLength(maxPlans);
    expect(errors(r.diagnostics)).toEqual([]);
    // Each plan is simulated within its share of the file's budget, and says so.
    expect(notes(r.diagnostics)).toHaveLength(maxPlans);
    expect(ms).toBeLessThan(2000);
    expect(fileSimulationBudget / maxPlans).toBeLessThan(simulationBudget);
  });
});
