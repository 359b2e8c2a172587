/**
 * The stepper evaluates a canvas-pure expression (a function of the token state alone) once per
 * token state, however many layers of a step read it. These tests show that the memo is used, that
 * it never serves a value of an earlier state (after a commit, an advance, a lookahead), and which
 * expressions count as pure.
 */
import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { Expr } from '../../src/dsl/ast.ts';
import { checkSource } from '../../src/dsl/check.ts';
import { Canvas } from '../../src/dsl/semantics/canvas.ts';
import { canvasPure, type EvalHooks, evaluate, type RuntimeValue } from '../../src/dsl/semantics/evaluate.ts';
import { layerRules } from '../../src/dsl/semantics/layerRules.ts';
import { PlanStepper } from '../../src/dsl/semantics/stepper.ts';
import type { TypedPlan } from '../../src/dsl/typecheck.ts';

const source = `plan p(n: int = 2) {
  let active = leftmost(masked, n)
  let span = leftmost(masked, n + 2)
  let fresh = newly_decoded
  let odd = every(2)
  let keys = prompt | decoded | span
  let stale = keys & uncached
  let sure = topk(masked, confidence, 1)
  select kept = topk(all, attention_mass(active), 3) at block_start
  let near = kept | active
  compute active | newly_decoded | keys & uncached
  cache kv of all
  attend keys
  decode per_step(1) in active
}
`;

function typedOf(text: string, path = 'p.kvp'): TypedPlan {
  const checked = checkSource({ path, text });
  const typed = checked.plans[0]?.typed;
  if (!typed)
    throw new Error(`${path} does not check: ${checked.diagnostics.map((d) => d.message).join('; ')}`);
  return typed;
}

function letExpr(typed: TypedPlan, name: string): Expr {
  const b = typed.bindings.get(name);
  if (b?.kind !== 'let') throw new Error(`no let ${name}`);
  return b.expr;
}

function stepperOn(typed: TypedPlan, canvas: Canvas): PlanStepper {
  const scores = { score: () => new Float64Array(canvas.length).fill(0.5), attnSimilarity: () => 1 };
  return new PlanStepper(typed, layerRules(typed, 2), canvas, scores, new Float64Array(canvas.length));
}

const plain = (v: RuntimeValue) => (typeof v === 'object' ? Array.from(v) : v);

describe('the memo of canvas-pure values', () => {
  test('classifies what reads only the token state as pure, and nothing that reads a score, cache or selection', () => {
    const typed = typedOf(source);
    const purity = Object.fromEntries(
      ['active', 'span', 'fresh', 'odd', 'keys', 'stale', 'sure', 'near'].map((n) => [
        n,
        canvasPure(letExpr(typed, n), typed.bindings),
      ]),
    );
    expect(purity).toEqual({
      active: true,
      span: true,
      fresh: true,
      odd: true,
      keys: true,
      stale: false,
      sure: false,
      near: false,
    });
  });

  test('serves a value again on the same state, and a fresh one after a commit, an advance or a lookahead', () => {
    const typed = typedOf(source);
    // 2 prompt positions, 8 generated (2..9), one block.
    const canvas = new Canvas(2, 8, 8);
    const stepper = stepperOn(typed, canvas);
    const span = letExpr(typed, 'span');
    const fresh = letExpr(typed, 'fresh');
    const odd = letExpr(typed, 'odd');
    const first = stepper.eval(span);
    expect(stepper.eval(span)).toBe(first);
    expect(plain(first)).toEqual([0, 0, 1, 1, 1, 1, 0, 0, 0, 0]);

    canvas.commit([3]);
    expect(plain(stepper.eval(span))).toEqual([0, 0, 1, 0, 1, 1, 1, 0, 0, 0]);
    // An advance alone changes the ages (newly_decoded) and the step (every).
    expect(plain(stepper.eval(fresh))).toEqual(new Array(10).fill(0));
    expect(stepper.eval(odd)).toBe(true);
    canvas.advance();
    expect(plain(stepper.eval(fresh))).toEqual([0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    expect(stepper.eval(odd)).toBe(false);

    // Inside a lookahead the state is the one after the commit; after it, the one before again.
    const before = plain(stepper.eval(span));
    const inside = canvas.lookahead([2, 4], () => plain(stepper.eval(span)));
    expect(inside).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 0]);
    expect(plain(stepper.eval(span))).toEqual(before);
  });

  test('a state set field by field (step, block) is a new state too', () => {
    const typed = typedOf(source);
    const canvas = new Canvas(2, 8, 8);
    const stepper = stepperOn(typed, canvas);
    const odd = letExpr(typed, 'odd');
    expect(stepper.eval(odd)).toBe(true);
    canvas.step = 3;
    expect(stepper.eval(odd)).toBe(false);
  });

  test('on random token states of every example plan, each pure let reads as it does without the memo', () => {
    const plans = readdirSync('examples')
      .filter((f) => f.endsWith('.kvp'))
      .sort()
      .map((f) => typedOf(readFileSync(`examples/${f}`, 'utf8'), `examples/${f}`));
    const noHooks = new Proxy({} as EvalHooks, {
      get: () => () => {
        throw new Error('a pure expression called a hook');
      },
    });
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: plans.length - 1 }),
        fc.array(fc.array(fc.integer({ min: 0, max: 23 }), { maxLength: 4 }), { maxLength: 10 }),
        (which, steps) => {
          const typed = plans[which] as TypedPlan;
          const canvas = new Canvas(4, 20, 5);
          const stepper = stepperOn(typed, canvas);
          const lets = [...typed.bindings.values()].flatMap((b) =>
            b.kind === 'let' && canvasPure(b.expr, typed.bindings) ? [b.expr] : [],
          );
          for (const commits of steps) {
            canvas.commit(commits.filter((i) => canvas.isMasked(i)));
            canvas.advance();
            for (let pass = 0; pass < 2; pass++)
              for (const e of lets)
                expect(plain(stepper.eval(e))).toEqual(
                  plain(evaluate(e, { canvas, bindings: typed.bindings, hooks: noHooks })),
                );
          }
        },
      ),
      { numRuns: 60, seed: 11 },
    );
  });
});
