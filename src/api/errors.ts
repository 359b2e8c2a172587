/**
 * The one error class of the public API (src/index.ts): every bad input a function cannot return as
 * data (a plan's mistakes are data: diagnostics) is thrown as a KvplanError whose `code` says what
 * kind of input was wrong. The internal error it stands for, if any, is its `cause`.
 */
import { CompilerError } from '../backends/cpu/compilerError.ts';
import { BackendUnavailable } from '../backends/registry.ts';
import { ConfigError } from '../model/config.ts';
import { CheckpointError } from '../model/hf/checkpointError.ts';
import { OnnxError } from '../model/onnx/error.ts';
import { SmallFileError } from '../model/smallFile.ts';
import { WeightError } from '../model/weights.ts';
import { GenerationError } from '../runtime/generationError.ts';
import { TokenizerError } from '../runtime/tokenizer.ts';

/**
 * What was wrong:
 * - `invalid-argument`: an option of the wrong type or out of its range, or an unknown name (task,
 *   backend, target, preset, bundled model, plan parameter).
 * - `unreadable-file`: a plan file that cannot be read (missing, a directory, too large).
 * - `invalid-config`: a model configuration that is not valid, cannot be read, or is too large for
 *   random weights.
 * - `invalid-model`: a model file or checkpoint that cannot be loaded.
 * - `tokenizer`: the prompt cannot be tokenized (no tokenizer, no chat template, a bad token id).
 * - `plan-model-mismatch`: the plan cannot run on the model (AR shift, layers it names).
 * - `backend-unavailable`: the machine cannot run the backend (no adapter, no C compiler, no CUDA).
 * - `generation-failed`: a generation stopped for a reason in the plan or the model (a decode rule
 *   that commits nothing, logits that overflow).
 */
export type KvplanErrorCode =
  | 'invalid-argument'
  | 'unreadable-file'
  | 'invalid-config'
  | 'invalid-model'
  | 'tokenizer'
  | 'plan-model-mismatch'
  | 'backend-unavailable'
  | 'generation-failed';

/** A bad input to the public API; `code` says which kind, `message` says what and where. */
export class KvplanError extends Error {
  override readonly name = 'KvplanError';
  readonly code: KvplanErrorCode;

  constructor(code: KvplanErrorCode, message: string, options?: { readonly cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** The API's code for the internal errors that mean bad input; undefined for any other (a bug). */
function codeOf(e: unknown): KvplanErrorCode | undefined {
  if (e instanceof ConfigError) return 'invalid-config';
  if (e instanceof CheckpointError || e instanceof OnnxError || e instanceof WeightError)
    return 'invalid-model';
  if (e instanceof SmallFileError) return 'unreadable-file';
  if (e instanceof TokenizerError) return 'tokenizer';
  if (e instanceof GenerationError) return 'generation-failed';
  if (e instanceof BackendUnavailable || e instanceof CompilerError) return 'backend-unavailable';
  return undefined;
}

/**
 * Runs `f`; an internal error that means bad input comes out as a KvplanError (`what`, when given,
 * prefixes its message), anything else (a bug in kvplan) as it was.
 */
export async function translated<T>(f: () => Promise<T> | T, what?: string): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw translate(e, what);
  }
}

/** The synchronous form of `translated`. */
export function translatedSync<T>(f: () => T, what?: string): T {
  try {
    return f();
  } catch (e) {
    throw translate(e, what);
  }
}

function translate(e: unknown, what: string | undefined): unknown {
  if (e instanceof KvplanError) return e;
  const code = codeOf(e);
  if (code === undefined) return e;
  const message = (e as Error).message;
  return new KvplanError(code, what === undefined ? message : `${what}: ${message}`, { cause: e });
}

const describe = (v: unknown): string =>
  typeof v === 'string' ? JSON.stringify(v) : typeof v === 'number' ? String(v) : typeof v;

/** `value` as an integer in [min, max], or a KvplanError naming the option. */
export function integerArg(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max)
    throw new KvplanError(
      'invalid-argument',
      `${name} must be an integer from ${min} to ${max} (got ${describe(value)})`,
    );
  return value;
}

/** A seed of random draws (32 bits, as the generators take them); default 1. */
export const seedArg = (value: unknown): number => integerArg('seed', value ?? 1, 0, 2 ** 32 - 1);

/** `value` as one of `choices`, or a KvplanError listing them. */
export function choiceArg<T extends string>(name: string, value: unknown, choices: readonly T[]): T {
  if (typeof value === 'string' && (choices as readonly string[]).includes(value)) return value as T;
  throw new KvplanError(
    'invalid-argument',
    `${name} must be one of ${choices.join(', ')} (got ${describe(value)})`,
  );
}
