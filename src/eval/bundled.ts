import type { CheckedPlan } from '../dsl/check.ts';
import type { ModelConfig } from '../model/config.ts';
import { modelFor } from '../runtime/modelFor.ts';
import { type BundledModel, bundledModels } from './bundledModels.ts';

// Re-exported so that one module answers both which models ship and which one a plan runs on.
export {
  type BundledModel,
  bundledModelDir,
  bundledModelPath,
  bundledModels,
  bundledPlansDir,
  bundledTasks,
} from './bundledModels.ts';

/** The bundled model made for a plan's attention structure and AR shift, if kvplan ships one. */
export function bundledModelFor(plan: CheckedPlan): BundledModel | undefined {
  // Only the plan's side of modelFor matters here; the base shape is irrelevant.
  const wanted = modelFor(plan, { attention: 'full', arShift: false } as ModelConfig);
  return bundledModels.find((m) => m.attention === wanted.attention && m.arShift === wanted.arShift);
}

/**
 * The `--set` a plan needs to run at a model's trained block length: its `blocks` statement names
 * a parameter, bound to that length. Undefined when the model has no trained block, the plan
 * already runs at it, or its block length is not a parameter (then it runs as written).
 */
export function trainedBlockOverride(plan: CheckedPlan, model: BundledModel): [string, string] | undefined {
  if (model.trainedBlock === undefined) return undefined;
  const blocks = plan.plan.body.find((s) => s.kind === 'blocks');
  if (blocks?.kind !== 'blocks' || blocks.length.kind !== 'name') return undefined;
  const name = blocks.length.name;
  const value = plan.params.get(name);
  if (value === undefined || value === model.trainedBlock) return undefined;
  return [name, String(model.trainedBlock)];
}
