import type { CheckedPlan } from '../dsl/check.ts';
import {
  bundledModelFor as bundledFor,
  bundledModelDir,
  bundledModelPath,
  bundledModels,
} from '../eval/bundled.ts';
import type { ModelConfig } from '../model/config.ts';
import { modelPathProblem } from '../model/fsError.ts';
import { randomWeights, type Weights } from '../model/weights.ts';
import { CharTokenizer, defaultAlphabet, type Tokenizer } from '../runtime/tokenizer.ts';
import { planArg } from './check.ts';
import { type ConfigSource, loadModelConfig } from './config.ts';
import { choiceArg, KvplanError, seedArg, translated } from './errors.ts';

/**
 * The trained models kvplan ships (see models/): `tiny-dllm` (ONNX; count, sort, add) and one
 * Hugging Face checkpoint per attention structure for the multi-step tasks bub and fib:
 * `step-dllm` (full attention), `step-bd` (block-causal, trained with block 4), `step-v2`
 * (block-causal with an AR shift, block 4).
 */
export type BundledModelName = 'tiny-dllm' | 'step-dllm' | 'step-bd' | 'step-v2';

const bundledNames: readonly BundledModelName[] = ['tiny-dllm', 'step-dllm', 'step-bd', 'step-v2'];

/**
 * Where a model comes from: a path (an ONNX file or a Hugging Face checkpoint directory, as a
 * string or `{ path }`), a bundled model by name, or a preset configuration (a preset name, a
 * JSON config file, or a ModelConfig) with random weights drawn from `seed` (default 1).
 */
export type ModelSource =
  | string
  | { readonly path: string }
  | { readonly bundled: BundledModelName }
  | { readonly preset: ConfigSource; readonly seed?: number };

/** A model ready to run: its shape, its weights and its tokenizer. */
export interface Model {
  /** The configuration's name (a checkpoint's directory name, the preset's name, …). */
  readonly name: string;
  /** The file or directory it was read from; absent for random weights. */
  readonly path?: string;
  readonly config: ModelConfig;
  /** Tensors by kvplan's names; a checkpoint's are read on demand. */
  readonly weights: Weights;
  /**
   * Text to token ids and back: a checkpoint's tokenizer.json, the one an ONNX file stores, or the
   * default character alphabet of the vocabulary (random models). Without one, prompts must be ids.
   */
  readonly tokenizer: Tokenizer;
}

/** The path a bundled model is stored at. */
function bundledPath(name: BundledModelName): string {
  if (name === 'tiny-dllm') return bundledModelPath();
  const m = bundledModels.find((b) => b.name === name);
  if (m === undefined) throw new Error(`bundled model ${name} is not in bundledModels`);
  return bundledModelDir(m);
}

async function openPath(path: string): Promise<Model> {
  if (typeof path !== 'string')
    throw new KvplanError('invalid-argument', `a model path is a string (got ${typeof path})`);
  const problem = modelPathProblem(path);
  if (problem !== undefined) throw new KvplanError('unreadable-file', `model ${path}: ${problem}`);
  // The ONNX reader loads protobuf: only when a model is opened.
  const { openModel: open } = await import('../runtime/openModel.ts');
  const m = await translated(() => open(path));
  return { name: m.config.name, path, config: m.config, weights: m.weights, tokenizer: m.tokenizer };
}

async function randomModel(preset: ConfigSource, seed: unknown): Promise<Model> {
  const config = loadModelConfig(preset);
  const s = seedArg(seed);
  const weights = await translated(() => randomWeights(config, s), `preset ${config.name}`);
  const tokenizer = new CharTokenizer(defaultAlphabet(config.vocab, config.maskTokenId), config.maskTokenId);
  return { name: config.name, config, weights, tokenizer };
}

/**
 * Opens a model (`kvplan generate --model`, `kvplan make-model` for presets). A checkpoint
 * directory is validated against its config (every tensor present, shapes right) and its weights
 * are read on demand; an ONNX file is traced and checked against its graph. Throws a KvplanError:
 * `unreadable-file` for a path that is missing or not a file or directory, `invalid-model` for a
 * model file or checkpoint that cannot be used, `invalid-config` for a bad preset or config (or
 * one too large for random weights), `tokenizer` for a broken tokenizer file,
 * `invalid-argument` for an unknown bundled name or a bad seed.
 */
export async function openModel(source: ModelSource): Promise<Model> {
  if (typeof source === 'string') return openPath(source);
  if (typeof source !== 'object' || source === null)
    throw new KvplanError('invalid-argument', `a model source is a path or an object (got ${source})`);
  if ('path' in source) return openPath(source.path);
  if ('bundled' in source) return openPath(bundledPath(choiceArg('bundled', source.bundled, bundledNames)));
  if ('preset' in source) return randomModel(source.preset, source.seed);
  throw new KvplanError('invalid-argument', 'a model source is a path, { path }, { bundled } or { preset }');
}

/**
 * The bundled model trained for a plan's attention structure and AR shift (`step-dllm`, `step-bd`
 * or `step-v2`): on another one a plan measures the mismatch, not itself. Block-causal models were
 * trained with block 4; check a plan with `set: { block: 4 }` to run it there. Throws a KvplanError
 * `invalid-argument` when `plan` is not a checked plan.
 */
export function bundledModelFor(plan: CheckedPlan): BundledModelName | undefined {
  const name = bundledFor(planArg(plan))?.name;
  return bundledNames.find((n) => n === name);
}
