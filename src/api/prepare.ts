import type { CheckedPlan } from '../dsl/check.ts';
import type { ModelConfig } from '../model/config.ts';
import { maxCanvasPositions } from '../runtime/canvasLimit.ts';
import type { Prepared } from '../runtime/prepare.ts';
import { type Backend, backends, prepareFor, threadsArg } from './backends.ts';
import { choiceArg, integerArg, KvplanError } from './errors.ts';
import { fitPlan } from './fit.ts';
import type { Model } from './model.ts';

export interface PrepareOptions {
  /** Where the step programs run (default `reference`, the float64 interpreter). */
  readonly backend?: Backend;
  /**
   * The most canvas rows one batch of a generation may hold: the sum over its sequences of prompt
   * length + genLength (default 1024, at most 16384). Compiled backends size their buffers for it.
   */
  readonly maxCanvas?: number;
  /** Threads of the cpu backend (default 0: every core). */
  readonly threads?: number;
}

/** A plan compiled for a model and a backend: what generate runs. */
export interface PreparedPlan {
  readonly plan: CheckedPlan;
  readonly model: Model;
  readonly backend: Backend;
  /**
   * The configuration the plan runs with: the model's, with the attention structure the plan
   * states (a block-causal plan on a bidirectional model runs block-causal; see `warnings`).
   */
  readonly config: ModelConfig;
  readonly maxCanvas: number;
  /** What the caller should know, e.g. that the plan's attention differs from the model's. */
  readonly warnings: readonly string[];
}

/** The compiled form of each prepared plan; kept out of the public type. */
const compiled = new WeakMap<PreparedPlan, Prepared>();

/** The compiled form of a prepared plan, or a KvplanError when `p` is not one. */
export function compiledOf(p: PreparedPlan): Prepared {
  const c = typeof p === 'object' && p !== null ? compiled.get(p) : undefined;
  if (c === undefined) throw new KvplanError('invalid-argument', 'expected a plan from prepare(...)');
  return c;
}

/**
 * Fits a plan to a model (`planOnModel`: an AR shift the model lacks is refused; a different
 * attention structure runs the plan's, with a warning) and compiles it for a backend. Throws a
 * KvplanError: `invalid-argument` for a bad plan, model or option, `plan-model-mismatch` when the
 * plan cannot run on the model (AR shift, layers it names), `backend-unavailable` when the machine
 * cannot run the backend (no WebGPU adapter, no C compiler, no CUDA device).
 */
export async function prepare(
  plan: CheckedPlan,
  model: Model,
  options: PrepareOptions = {},
): Promise<PreparedPlan> {
  const fit = fitPlan(plan, model);
  const backend = choiceArg('backend', options.backend ?? 'reference', backends);
  const maxCanvas = integerArg('maxCanvas', options.maxCanvas ?? 1024, 1, maxCanvasPositions);
  const threads = threadsArg(options.threads);
  const p = await prepareFor(backend, fit.plan, fit.config, model.weights, maxCanvas, threads);
  const prepared: PreparedPlan = {
    plan: fit.plan,
    model,
    backend,
    config: p.config,
    maxCanvas,
    warnings: fit.warnings,
  };
  compiled.set(prepared, p);
  return prepared;
}
