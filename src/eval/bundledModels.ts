/**
 * What kvplan ships: the trained models and the example plans. Data only (bundled.ts matches a plan
 * to its model), so that the CLI can name the bundled tasks in its help without loading the checker.
 */
import { fileURLToPath } from 'node:url';
import type { ModelConfig } from '../model/config.ts';

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
  { name: 'step-dllm', attention: 'full', arShift: false, tasks: ['acc', 'rem'] },
  { name: 'step-bd', attention: 'block_causal', arShift: false, trainedBlock: 4, tasks: ['bub', 'fib'] },
  { name: 'step-v2', attention: 'block_causal', arShift: true, trainedBlock: 4, tasks: ['bub', 'fib'] },
];

/**
 * The tasks some bundled model was trained on, in the models' order: what `--task` may name in this
 * mode. A plan whose model was not trained on the task named is not run, and says so.
 */
export const bundledTasks = (): string[] => [...new Set(bundledModels.flatMap((m) => m.tasks))];

export const bundledModelDir = (m: BundledModel) => shipped(`models/${m.name}`);
