import type { CheckedPlan } from '../dsl/check.ts';
import type { ModelConfig } from '../model/config.ts';
import { presets } from '../model/presets.ts';
import { maxCanvasPositions } from '../runtime/canvasLimit.ts';
import { deepEnough } from '../runtime/modelFor.ts';
import { blockLength } from '../runtime/simulate.ts';
import { type PlanVerdict, verifyCheckedPlan } from '../runtime/verify.ts';
import { type Backend, backends, runnerFactory, threadsArg } from './backends.ts';
import { planArg } from './check.ts';
import { type ConfigSource, loadModelConfig } from './config.ts';
import { choiceArg, integerArg, KvplanError, seedArg, translated } from './errors.ts';
import { requireDepth } from './fit.ts';

export type { Check, PlanVerdict, RefreshFiring } from '../runtime/verify.ts';

export interface VerifyOptions {
  /** Where the plan's step programs run (default `reference`); the golden is always float64. */
  readonly backend?: Backend;
  /**
   * The model shapes the cases cycle through, used as given (random weights). Default: `tiny`
   * (GQA, QKV bias), `small` (multi-head) and `tiny` without QKV bias, each deepened so that every
   * layer the plan names exists.
   */
  readonly configs?: readonly ConfigSource[];
  /** Random models and prompts (default 3). */
  readonly cases?: number;
  /** Seed of the first case (default 1). */
  readonly seed?: number;
  /** Prompt positions per case (default 5). */
  readonly promptLength?: number;
  /** Generated positions per case (default two blocks of the plan, at most 64). */
  readonly genLength?: number;
  /** Threads of the cpu backend (default 0: every core). */
  readonly threads?: number;
}

/** The default mix of `kvplan verify`: GQA with QKV bias, plain multi-head, GQA without bias. */
function defaultShapes(plan: CheckedPlan): ModelConfig[] {
  const { tiny, small } = presets as Record<'tiny' | 'small', ModelConfig>;
  const shapes = [tiny, small, { ...tiny, name: 'tiny-no-bias', qkvBias: false }];
  return shapes.map((c) => deepEnough(plan, c));
}

/**
 * Proves a plan against full attention (`kvplan verify`): whole generations on random models,
 * every step compared with a plain float64 full-attention forward. Exact plans must equal it at
 * every step; approximate plans on a model where their premise holds, and at their refresh steps.
 * A failed property is data (`ok` false, the failed check with its detail); throws a KvplanError
 * only for bad input: `invalid-argument` (a bad option), what loadModelConfig throws for a config,
 * `plan-model-mismatch` (the plan names layers a given config lacks), `invalid-config` (a config
 * too large for random weights), `backend-unavailable`.
 */
export async function verifyPlan(plan: CheckedPlan, options: VerifyOptions = {}): Promise<PlanVerdict> {
  const checked = planArg(plan);
  const backend = choiceArg('backend', options.backend ?? 'reference', backends);
  const cases = integerArg('cases', options.cases ?? 3, 1, 1_000_000);
  const seed = seedArg(options.seed);
  const promptLen = integerArg('promptLength', options.promptLength ?? 5, 1, maxCanvasPositions);
  const genLen = integerArg(
    'genLength',
    options.genLength ?? 2 * Math.min(blockLength(checked, 16), 32),
    1,
    maxCanvasPositions - promptLen,
  );
  const threads = threadsArg(options.threads);
  if (options.configs !== undefined && (!Array.isArray(options.configs) || options.configs.length === 0))
    throw new KvplanError('invalid-argument', 'configs must be a non-empty array');
  const configs = options.configs?.map(loadModelConfig) ?? defaultShapes(checked);
  if (options.configs) for (const c of configs) requireDepth(checked, c);
  const runnerFor = await runnerFactory(backend, threads);
  return translated(() =>
    verifyCheckedPlan(checked, {
      backend,
      ...(runnerFor ? { runnerFor } : {}),
      configs,
      cases,
      seed,
      promptLen,
      genLen,
    }),
  );
}
