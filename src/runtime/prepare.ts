/**
 * What a run needs from a backend, and how a plan fits the model it runs on. The backends themselves
 * are composed above the runtime (src/backends/registry.ts, used by the CLI and the benchmarks): the
 * runtime drives any StepRunner and imports none of them.
 */
import type { CheckedPlan } from '../dsl/check.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import type { ModelConfig } from '../model/config.ts';
import type { Weights } from '../model/weights.ts';
import { modelFor } from './modelFor.ts';
import type { StepRunner } from './runner.ts';

export interface Prepared {
  /** The model configuration the plan runs with (see planOnModel). */
  readonly config: ModelConfig;
  readonly lowered: LoweredPlan;
  /** The backend's runner for a canvas of L rows; absent for the float64 reference. */
  readonly runner?: (L: number) => StepRunner;
}

/**
 * How a plan runs on a model it was not necessarily written for. A plan states the model's
 * attention structure (`mask block_causal`) and AR shift; an AR shift the model does not have
 * would read every prediction from the wrong row, so it is refused. Block-causal attention on a
 * bidirectional model only hides later blocks, so it runs, with a warning the caller prints.
 */
export function planOnModel(
  plan: CheckedPlan,
  model: ModelConfig,
): { ok: true; config: ModelConfig; warning?: string } | { ok: false; error: string } {
  const wanted = modelFor(plan, model);
  const name = plan.plan.name;
  if (wanted.arShift !== model.arShift) {
    const has = (b: boolean) => (b ? 'with' : 'without');
    return {
      ok: false,
      error: `plan ${name} decodes ${has(wanted.arShift)} an AR shift, but model ${model.name} was trained ${has(model.arShift)} one`,
    };
  }
  if (wanted.attention !== model.attention) {
    return {
      ok: true,
      config: wanted,
      warning: `plan ${name} attends with ${wanted.attention} attention; model ${model.name} declares ${model.attention}, so it runs with the plan's`,
    };
  }
  return { ok: true, config: wanted };
}

/** Compiles a plan for one backend and model; maxCanvas bounds every canvas the runner is given. */
export type PrepareBackend = (
  plan: CheckedPlan,
  config: ModelConfig,
  weights: Weights,
  maxCanvas: number,
) => Promise<Prepared>;
