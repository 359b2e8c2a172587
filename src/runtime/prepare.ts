/**
 * The composition root of a run: a checked plan compiled for one backend and one model, ready to
 * drive generations. Commands that generate (generate, eval, demo) and the benchmarks share it.
 */
import { buildCpu, CpuRunner } from '../backends/cpu/runner.ts';
import { cudaAvailable } from '../backends/cuda-ptx/driver.ts';
import { archFor, buildPtx, PtxRunner, sharedCudaDevice } from '../backends/cuda-ptx/runner.ts';
import { sharedDevice } from '../backends/webgpu/device.ts';
import { buildWebGpu, WebGpuRunner } from '../backends/webgpu/runner.ts';
import type { CheckedPlan } from '../dsl/check.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import type { ModelConfig } from '../model/config.ts';
import type { Weights } from '../model/weights.ts';
import { compilePlan } from '../passes/compile.ts';
import { modelFor } from './modelFor.ts';
import type { StepRunner } from './runner.ts';

export const runBackends = ['reference', 'cpu', 'webgpu', 'ptx'] as const;
export type RunBackend = (typeof runBackends)[number];

export const isRunBackend = (s: string): s is RunBackend => (runBackends as readonly string[]).includes(s);

/** The machine cannot run the asked backend (no adapter, no compiler); the message says why. */
export class BackendUnavailable extends Error {
  override readonly name = 'BackendUnavailable';
}

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

/** Compiles a plan for a backend; maxCanvas bounds every canvas the runner will be given. */
export async function prepareBackend(
  backend: RunBackend,
  plan: CheckedPlan,
  config: ModelConfig,
  weights: Weights,
  maxCanvas: number,
  threads = 0,
): Promise<Prepared> {
  if (backend === 'cpu') {
    const build = buildCpu(plan, config, maxCanvas);
    return { config, lowered: build.lowered, runner: (L) => new CpuRunner(build, weights, L, threads) };
  }
  if (backend === 'webgpu') {
    const acquired = await sharedDevice();
    if (!acquired.ok) throw new BackendUnavailable(`no WebGPU adapter (${acquired.reason})`);
    const { device } = acquired.gpu;
    const build = buildWebGpu(plan, config, maxCanvas);
    return { config, lowered: build.lowered, runner: (L) => new WebGpuRunner(build, weights, L, device) };
  }
  if (backend === 'ptx') {
    const cuda = cudaAvailable();
    if (!cuda.ok) throw new BackendUnavailable(cuda.reason);
    const device = sharedCudaDevice();
    const build = buildPtx(plan, config, maxCanvas, { arch: archFor(device.computeCapability) });
    return { config, lowered: build.lowered, runner: (L) => new PtxRunner(build, weights, L, device) };
  }
  return { config, lowered: compilePlan(plan, config, { target: 'reference' }).lowered };
}
