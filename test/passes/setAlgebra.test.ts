import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { Expr } from '../../src/dsl/ast.ts';
import { checkSource } from '../../src/dsl/check.ts';
import { printExpr } from '../../src/dsl/printer.ts';
import { Canvas } from '../../src/dsl/semantics/canvas.ts';
import { type EvalEnv, evaluate, type Mask } from '../../src/dsl/semantics/evaluate.ts';
import { lowerPlan } from '../../src/ir/lower.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { initialState } from '../../src/passes/manager.ts';
import { setAlgebraPass, simplifySet } from '../../src/passes/setAlgebra.ts';
import { S } from '../support/ast.ts';

const n = (name: string): Expr => ({ kind: 'name', name, span: S });
const bin =
  (op: '|' | '&' | '-') =>
  (left: Expr, right: Expr): Expr => ({ kind: 'binary', op, left, right, span: S });
const or = bin('|');
const and = bin('&');
const minus = bin('-');
const num = (value: number): Expr => ({ kind: 'number', value, isInt: true, span: S });
const call = (name: string, ...args: Expr[]): Expr => ({
  kind: 'call',
  callee: n(name) as never,
  args,
  span: S,
});

const [A, B, C] = [n('masked'), n('prompt'), n('current_block')];
const simp = (e: Expr): string => printExpr(simplifySet(e));

describe('set-algebra rewrites', () => {
  test.each<[string, Expr, string]>([
    ['A | A → A', or(A, A), 'masked'],
    ['A & A → A', and(A, A), 'masked'],
    ['(A | B) - B → A - B', minus(or(A, B), B), 'masked - prompt'],
    ['(B | A) - B → A - B', minus(or(B, A), B), 'masked - prompt'],
    ['A - A → none', minus(A, A), 'none'],
    ['A | none → A', or(A, n('none')), 'masked'],
    ['none | A → A', or(n('none'), A), 'masked'],
    ['A & none → none', and(A, n('none')), 'none'],
    ['none & A → none', and(n('none'), A), 'none'],
    ['A - none → A', minus(A, n('none')), 'masked'],
    ['none - A → none', minus(n('none'), A), 'none'],
    ['A & all → A', and(A, n('all')), 'masked'],
    ['all & A → A', and(n('all'), A), 'masked'],
    ['A | all → all', or(A, n('all')), 'all'],
    ['all | A → all', or(n('all'), A), 'all'],
    ['A - all → none', minus(A, n('all')), 'none'],
    [
      'unions flatten, keeping first occurrences',
      or(or(A, B), or(A, or(C, B))),
      'masked | prompt | current_block',
    ],
    [
      '(A | B | C) - (B | C) → A - (B | C)',
      minus(or(or(A, B), C), or(B, C)),
      'masked - (prompt | current_block)',
    ],
    ['(A | B) - (A | B) → none', minus(or(A, B), or(A, B)), 'none'],
  ])('%s', (_, e, want) => {
    expect(simp(e)).toBe(want);
  });

  test('rules apply to a fixpoint: one rewrite enables the next', () => {
    // ((A | none) | A) - (B - B)  →  A - none  →  A
    expect(simp(minus(or(or(A, n('none')), A), minus(B, B)))).toBe('masked');
    // (A & all) | ((B | A) - B)  →  A | (A - B): no rule relates A and A - B, so this stays.
    expect(simp(or(and(A, n('all')), minus(or(B, A), B)))).toBe('masked | masked - prompt');
    // ((A | B) - B) - (A - B) → none
    expect(simp(minus(minus(or(A, B), B), minus(A, B)))).toBe('none');
  });

  test('simplifies the set arguments of calls and filters, and leaves numbers and predicates alone', () => {
    expect(simp(call('topk', or(A, A), n('confidence'), num(2)))).toBe('topk(masked, confidence, 2)');
    expect(simp(call('leftmost', and(A, n('all')), minus(num(4), num(4))))).toBe('leftmost(masked, 4 - 4)');
    const filter: Expr = {
      kind: 'filter',
      set: or(A, n('none')),
      predicate: { kind: 'binary', op: '>', left: n('confidence'), right: num(0), span: S },
      span: S,
    };
    expect(simp(filter)).toBe('masked[confidence > 0]');
    // Calls are compared structurally as members.
    const t = call('window', A, num(1));
    expect(simp(or(t, or(B, t)))).toBe('window(masked, 1) | prompt');
  });

  test('returns the very expression when nothing applies, and reuses spans', () => {
    const e = minus(or(A, B), C);
    expect(simplifySet(e)).toBe(e);
    const span = { start: { offset: 3, line: 1, col: 4 }, end: { offset: 9, line: 1, col: 10 } };
    const s = simplifySet({ kind: 'binary', op: '-', left: A, right: A, span });
    expect(s).toMatchObject({ kind: 'name', name: 'none', span });
  });
});

const names = [
  'prompt',
  'masked',
  'decoded',
  'current_block',
  'before_block',
  'after_block',
  'newly_decoded',
  'all',
  'none',
];

const exprArb: fc.Arbitrary<Expr> = fc.letrec<{ e: Expr }>((tie) => ({
  e: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(...names).map(n),
    fc
      .tuple(fc.constantFrom('|', '&', '-') as fc.Arbitrary<'|' | '&' | '-'>, tie('e'), tie('e'))
      .map(([op, l, r]) => bin(op)(l, r)),
  ),
})).e;

/** A random token state: prompt and generated positions, some decoded at earlier steps, a block. */
const canvasArb = fc
  .record({
    promptLen: fc.integer({ min: 0, max: 4 }),
    genLen: fc.integer({ min: 1, max: 10 }),
    blockLen: fc.integer({ min: 1, max: 4 }),
    step: fc.integer({ min: 0, max: 8 }),
    decoded: fc.array(fc.integer({ min: -3, max: 8 }), { minLength: 10, maxLength: 10 }),
    block: fc.nat(),
  })
  .map((r) => {
    const c = new Canvas(r.promptLen, r.genLen, r.blockLen);
    c.step = r.step;
    c.block = r.block % c.numBlocks;
    for (let i = 0; i < r.genLen; i++) {
      const d = r.decoded[i] ?? -1;
      c.decodedAt[r.promptLen + i] = d < 0 || d >= r.step ? -1 : d;
    }
    return c;
  });

const throwing = () => {
  throw new Error('a set expression over builtin sets needs no hooks');
};
const env = (canvas: Canvas): EvalEnv => ({
  canvas,
  bindings: new Map(),
  hooks: {
    modelScore: throwing,
    selection: throwing,
    targets: throwing,
    uncached: throwing,
    dirty: throwing,
    attnSimilarity: throwing,
    afterDrift: throwing,
    measuredAt: throwing,
  },
});

const size = (e: Expr): number => (e.kind === 'binary' ? 1 + size(e.left) + size(e.right) : 1);

describe('set-algebra is sound', () => {
  test('the simplified expression denotes the same set on every token state', () => {
    fc.assert(
      fc.property(exprArb, canvasArb, (e, canvas) => {
        const s = simplifySet(e);
        const before = Array.from(evaluate(e, env(canvas)) as Mask);
        const after = Array.from(evaluate(s, env(canvas)) as Mask);
        expect(after).toEqual(before);
        expect(size(s)).toBeLessThanOrEqual(size(e));
        // A fixpoint: simplifying again changes nothing.
        expect(printExpr(simplifySet(s))).toBe(printExpr(s));
      }),
      { numRuns: 500 },
    );
  });
});

const config: ModelConfig = { ...(presets.tiny as ModelConfig), layers: 2 };

function lowered(text: string) {
  const r = checkSource({ path: 'test.kvp', text });
  const plan = r.plans[0];
  if (!plan) throw new Error(r.diagnostics.map((d) => d.message).join('; '));
  return lowerPlan(plan, config);
}

describe('the set-algebra pass', () => {
  test("rewrites the layers' compute, attend, cache and refresh sets", () => {
    const l = lowered(`plan p() {
  refresh (all & all) | none when step == 0
  compute (masked | masked | newly_decoded) - none
  cache kv of (prompt | decoded) & all
  attend (all | prompt) - none
  decode threshold(0.9) by confidence
}`);
    const state = initialState(l);
    const out = setAlgebraPass.run(state, { config, target: 'reference' });
    expect(out.phases).toBe(state.phases);
    for (const r of out.lowered.layers) {
      expect(printExpr(r.compute?.set as Expr)).toBe('masked | newly_decoded');
      expect(r.attend?.keys.kind === 'keys' && printExpr(r.attend.keys.set)).toBe('all');
      expect(r.caches.map((c) => printExpr(c.rule.set))).toEqual(['prompt | decoded']);
      expect(r.refreshes.map((f) => printExpr(f.set))).toEqual(['all']);
      expect(r.refreshes[0]?.when).toBe(l.layers[0]?.refreshes[0]?.when);
    }
    // A statement shared by the layers stays shared; the input is not modified.
    expect(out.lowered.layers[0]?.compute).toBe(out.lowered.layers[1]?.compute);
    expect(printExpr(l.layers[0]?.compute?.set as Expr)).toBe('(masked | masked | newly_decoded) - none');
  });

  test('simplifies split segments and returns the very state when nothing applies', () => {
    const l = lowered(`plan q(block: int = 4 in [1, 64]) {
  blocks block
  refresh all when block_start
  compute current_block
  cache kv of prompt | before_block
  attend split {
    external = (prompt | before_block | prompt) - current_block reused until block_start,
    internal = current_block & current_block
  } merge lse mask block_causal
  decode threshold(0.9) by confidence in current_block
}`);
    const state = initialState(l);
    const out = setAlgebraPass.run(state, { config, target: 'reference' });
    const keys = out.lowered.layers[0]?.attend?.keys;
    expect(keys?.kind === 'split' && keys.segments.map((g) => printExpr(g.keys))).toEqual([
      '(prompt | before_block) - current_block',
      'current_block',
    ]);
    expect(setAlgebraPass.run(out, { config, target: 'reference' })).toBe(out);
  });
});
