import { fileURLToPath } from 'node:url';
import type { CheckedPlan } from '../dsl/check.ts';
import type { ModelConfig } from '../model/config.ts';
import { modelFor } from '../runtime/modelFor.ts';

/** Files shipped with kvplan, found from this module so commands work from any directory. */
const shipped = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));

/** The first trained model kvplan shipped (see its model card beside it): count, sort, add. */
export const bundledModelPath = () => shipped('models/tiny-dllm/model.onnx');

/** The example plans kvplan ships. */
export const bundledPlansDir = () => shipped('examples');

/**
 * A model trained for one attention structure, so that every plan is judged on a model made for
 * it (docs/results.md): a block-causal plan on a bidirectional model, or an AR-shift plan on a
 * model without the shift, measures the mismatch, not the plan.
 */
export interface BundledModel {
  /** The directory under models/ (a Hugging Face checkpoint). */
  readonly name: string;
  readonly attention: ModelConfig['attention'];
  readonly arShift: boolean;
  /** The block length a block-diffusion model was trained with; plans run with it. */
  readonly trainedBlock?: number;
  /** The tasks it was trained on (src/eval/tasks.ts); the first is the default. */
  readonly tasks: readonly string[];
}

export const bundledModels: readonly BundledModel[] = [
  { name: 'step-dllm', attention: 'full', arShift: false, tasks: ['bub', 'fib'] },
  { name: 'step-bd', attention: 'block_causal', arShift: false, trainedBlock: 4, tasks: ['bub', 'fib'] },
  { name: 'step-v2', attention: 'block_causal', arShift: true, trainedBlock: 4, tasks: ['bub', 'fib'] },
];

/** The tasks every bundled model was trained on: what `--task` may name in this mode. */
export const sharedTasks = (): string[] =>
  (bundledModels[0]?.tasks ?? []).filter((t) => bundledModels.every((m) => m.tasks.includes(t)));

export const bundledModelDir = (m: BundledModel) => shipped(`models/${m.name}`);

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
