import type { CheckedPlan } from '../dsl/check.ts';
import { explainPlan as explainText } from '../runtime/explain.ts';
import { originOf, planArg } from './check.ts';
import { type ConfigSource, loadModelConfig } from './config.ts';
import { requireDepth } from './fit.ts';

export interface ExplainOptions {
  /** The model the plan is lowered for (default the `tiny` preset). */
  readonly config?: ConfigSource;
  /** Include the IR of every phase (default true). */
  readonly ir?: boolean;
}

/**
 * How a plan lowers for a model, as `kvplan explain` prints it: its parameters and
 * classification, its phases (refresh, cached, reuse) with their stage and instruction counts, the
 * schedule the inspector follows, the index lists it builds for a sample token state, and (with
 * `ir`) the IR of each phase. Throws a KvplanError: `invalid-argument` when `plan` is not a checked
 * plan, what loadModelConfig throws for `config`, and `plan-model-mismatch` when the plan names
 * layers the model does not have.
 */
export function explainPlan(plan: CheckedPlan, options: ExplainOptions = {}): string {
  const checked = planArg(plan);
  const config = loadModelConfig(options.config ?? 'tiny');
  requireDepth(checked, config);
  return explainText(originOf(checked)?.path ?? '<plan>', checked, config, options.ir ?? true);
}
