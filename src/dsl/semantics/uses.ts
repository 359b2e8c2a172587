import type { Expr, Plan } from '../ast.ts';
import { forEachChild, forEachStmtExpr, type TypedPlan } from '../typecheck.ts';
import { constantOf } from './constant.ts';

/** Whether any statement of the plan names one of `names` (as a value or a function). */
export function planUses(plan: Plan, names: ReadonlySet<string>): boolean {
  let found = false;
  const visit = (e: Expr): void => {
    if ((e.kind === 'name' && names.has(e.name)) || (e.kind === 'call' && names.has(e.callee.name)))
      found = true;
    if (!found) forEachChild(e, visit);
  };
  for (const s of plan.body) if (!found) forEachStmtExpr(s, visit);
  return found;
}

/** Scores measured from the model's hidden state (by probe programs), not from its predictions. */
export const modelInternalScores: ReadonlySet<string> = new Set([
  'rollout',
  'attention_mass',
  'query_key',
  'value_drift',
  'hidden_drift',
  'key_drift',
  'attn_similarity',
  'after_drift',
]);

/**
 * The layers whose attention rows a plan compares with those of the last full refresh: the
 * constant layers its `attn_similarity` calls name, or every layer of `layers` when it uses
 * `after_drift` (which reads every layer below the current one).
 */
export function similarityLayers(typed: TypedPlan, layers: readonly number[]): number[] {
  if (planUses(typed.plan, new Set(['after_drift']))) return [...layers];
  const named = new Set<number>();
  const visit = (e: Expr): void => {
    if (e.kind === 'call' && e.callee.name === 'attn_similarity' && e.args[0])
      named.add(constantOf(typed, e.args[0]));
    forEachChild(e, visit);
  };
  for (const s of typed.plan.body) forEachStmtExpr(s, visit);
  return layers.filter((l) => named.has(l));
}

/**
 * The layers whose entering hidden state a plan's scores may read: the layer an `attn_similarity`
 * call names, the layer a `measured_at` pins the scores inside it to (they are measured as that
 * layer is decided, and never elsewhere), and every layer for any other score measured from the
 * hidden state (read on the layer its rule is evaluated on) or for `after_drift` (any layer below).
 * A runner copies out the state of these layers only: a copy of the canvas's hidden state at every
 * layer of every step was 1.5% of `elastic_cache`'s quick step, for one layer read.
 */
export function hiddenLayers(typed: TypedPlan, layers: readonly number[]): readonly number[] {
  if (planUses(typed.plan, new Set(['after_drift']))) return [...layers];
  const read = new Set<number>();
  let everywhere = false;
  const visit = (e: Expr, pinned: number | undefined): void => {
    if (e.kind === 'call' && e.callee.name === 'measured_at' && e.args[1]) {
      const at = constantOf(typed, e.args[1]);
      forEachChild(e, (c) => visit(c, at));
      return;
    }
    if (e.kind === 'call' && e.callee.name === 'attn_similarity' && e.args[0])
      read.add(constantOf(typed, e.args[0]));
    else if (modelInternalScores.has(e.kind === 'call' ? e.callee.name : e.kind === 'name' ? e.name : '')) {
      if (pinned === undefined) everywhere = true;
      else read.add(pinned);
    }
    forEachChild(e, (c) => visit(c, pinned));
  };
  for (const st of typed.plan.body) forEachStmtExpr(st, (e) => visit(e, undefined));
  return everywhere ? [...layers] : layers.filter((l) => read.has(l));
}
