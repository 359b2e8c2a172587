import type { Expr } from '../dsl/ast.ts';
import type { CheckedPlan } from '../dsl/check.ts';
import { constantOf } from '../dsl/semantics/constant.ts';
import { forEachChild, forEachStmtExpr } from '../dsl/typecheck.ts';
import type { ModelConfig } from '../model/config.ts';

/**
 * The model a plan is written for, shaped from a base configuration: the attention structure
 * (`mask block_causal`) and the AR shift (`ar_shift`) are properties of the model, which the plan
 * states, so a random model used to check the plan must have them.
 */
export function modelFor(plan: CheckedPlan, base: ModelConfig): ModelConfig {
  const causal = plan.typed.plan.body.some((s) => s.kind === 'attend' && s.mask?.name === 'block_causal');
  return { ...base, attention: causal ? 'block_causal' : 'full', arShift: plan.typed.decode.arShift };
}

/**
 * The deepest layer a plan names (a layer-scope bound or the layer an `attn_similarity` probes),
 * or -1. Layer-scope bounds are constants; a probe layer may be a parameter, never token state.
 */
export function deepestNamedLayer(plan: CheckedPlan): number {
  let top = -1;
  const visit = (e: Expr): void => {
    if (e.kind === 'call' && e.callee.name === 'attn_similarity' && e.args[0])
      top = Math.max(top, constantOf(plan.typed, e.args[0]));
    forEachChild(e, visit);
  };
  for (const s of plan.typed.plan.body) {
    if ('layers' in s && s.layers) {
      const bounds = s.layers.kind === 'cmp' ? [s.layers.bound] : [s.layers.lo, s.layers.hi];
      for (const b of bounds) top = Math.max(top, constantOf(plan.typed, b));
    }
    forEachStmtExpr(s, visit);
  }
  return top;
}

/**
 * A random model deep enough that every layer the plan names exists with two layers above it, so
 * that layer-scoped rules and probes (`attn_similarity(16) < g on layers > 16`) actually run: a
 * check on a model too shallow for them would pass without exercising them.
 */
export function deepEnough(plan: CheckedPlan, base: ModelConfig): ModelConfig {
  const layers = Math.max(base.layers, deepestNamedLayer(plan) + 3);
  return layers === base.layers ? base : { ...base, name: `${base.name}-${layers}l`, layers };
}
