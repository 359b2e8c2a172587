import type { CheckedPlan } from '../dsl/check.ts';
import { deepestNamedLayer, isBlockCausal } from '../dsl/semantics/layerRules.ts';
import type { ModelConfig } from '../model/config.ts';

/**
 * The model a plan is written for, shaped from a base configuration: the attention structure
 * (`mask block_causal`) and the AR shift (`ar_shift`) are properties of the model, which the plan
 * states, so a random model used to check the plan must have them.
 */
export function modelFor(plan: CheckedPlan, base: ModelConfig): ModelConfig {
  const attention = isBlockCausal(plan.typed) ? 'block_causal' : 'full';
  return { ...base, attention, arShift: plan.typed.decode.arShift };
}

/**
 * A random model deep enough that every layer the plan names exists with two layers above it, so
 * that layer-scoped rules and probes (`attn_similarity(16) < g on layers > 16`) actually run: a
 * check on a model too shallow for them would pass without exercising them.
 */
export function deepEnough(plan: CheckedPlan, base: ModelConfig): ModelConfig {
  const layers = Math.max(base.layers, deepestNamedLayer(plan.typed) + 3);
  return layers === base.layers ? base : { ...base, name: `${base.name}-${layers}l`, layers };
}
