import type { CheckedPlan } from '../dsl/check.ts';
import { byPosition, formatDiagnostic } from '../dsl/diagnostics.ts';
import { layerScopeDiagnostics } from '../dsl/semantics/layerDepth.ts';
import type { ModelConfig } from '../model/config.ts';
import { planOnModel } from '../runtime/prepare.ts';
import { originOf, planArg } from './check.ts';
import { KvplanError } from './errors.ts';
import type { Model } from './model.ts';

/**
 * Throws a KvplanError `plan-model-mismatch` when the plan names layers `config` does not have: a
 * layer scope that selects none of its layers, or a probe of a missing layer, would never apply
 * (the CLI refuses the same before it compiles or runs a plan). The message holds the
 * diagnostics, formatted against the plan's source.
 */
export function requireDepth(plan: CheckedPlan, config: ModelConfig): void {
  const ds = layerScopeDiagnostics(plan, config.layers, config.name).sort(byPosition);
  if (ds.length === 0) return;
  const file = originOf(plan) ?? { path: `plan ${plan.plan.name}`, text: '' };
  const shown = file.text === '' ? ds.map((d) => d.message) : ds.map((d) => formatDiagnostic(file, d));
  throw new KvplanError(
    'plan-model-mismatch',
    `plan ${plan.plan.name} names layers model ${config.name} does not have:\n${shown.join('\n')}`,
  );
}

/** `model` when it is a Model (as openModel returns), else a KvplanError `invalid-argument`. */
function modelArg(model: Model): Model {
  const m = model as Partial<Model> | null;
  if (typeof m !== 'object' || m === null || !m.config || !m.weights || !m.tokenizer)
    throw new KvplanError('invalid-argument', 'model must be a Model, as openModel returns');
  return model;
}

/**
 * How a plan runs on a model (`planOnModel`): the configuration it runs with, and a warning when
 * that differs from the model's (a block-causal plan on a bidirectional model). Throws a
 * KvplanError: `invalid-argument` when `plan` or `model` is not what checkPlan or openModel
 * returns, `plan-model-mismatch` for an AR shift the model lacks or layers it does not have.
 */
export function fitPlan(
  plan: CheckedPlan,
  model: Model,
): { readonly plan: CheckedPlan; readonly config: ModelConfig; readonly warnings: readonly string[] } {
  const checked = planArg(plan);
  requireDepth(checked, modelArg(model).config);
  const fit = planOnModel(checked, model.config);
  if (!fit.ok) throw new KvplanError('plan-model-mismatch', fit.error);
  return { plan: checked, config: fit.config, warnings: fit.warning === undefined ? [] : [fit.warning] };
}
