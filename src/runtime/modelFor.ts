import type { CheckedPlan } from '../dsl/check.ts';
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
