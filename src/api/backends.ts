/**
 * The backends, loaded on first use (as src/backends/registry.ts loads them): the CPU and PTX
 * backends load koffi (a native module) and WebGPU loads Dawn, so a program that only checks
 * plans, or runs the reference interpreter, loads none of them.
 */
import { availableParallelism } from 'node:os';
import { prepareBackend, type RunBackend, runBackends } from '../backends/registry.ts';
import type { CheckedPlan } from '../dsl/check.ts';
import type { ModelConfig } from '../model/config.ts';
import type { Weights } from '../model/weights.ts';
import type { Prepared } from '../runtime/prepare.ts';
import type { RunnerFactory } from '../runtime/verify.ts';
import { integerArg, KvplanError, translated } from './errors.ts';

/**
 * Where a plan's step programs run: `reference` (the float64 interpreter, any machine), `cpu`
 * (generated C, needs a C compiler), `webgpu` (WGSL on Dawn, needs an adapter), `ptx` (needs an
 * NVIDIA GPU and its driver).
 */
export type Backend = RunBackend;

export const backends: readonly Backend[] = runBackends;

/** Threads of the cpu backend: 0 (every core) up to the cores this machine has. */
export const threadsArg = (threads: unknown): number =>
  integerArg('threads', threads ?? 0, 0, availableParallelism());

/** Compiles a plan for a backend and canvases of at most `maxCanvas` rows. */
export async function prepareFor(
  backend: Backend,
  plan: CheckedPlan,
  config: ModelConfig,
  weights: Weights,
  maxCanvas: number,
  threads: number,
): Promise<Prepared> {
  return translated(
    () => prepareBackend(backend, plan, config, weights, maxCanvas, threads),
    `backend ${backend}`,
  );
}

const unavailable = (backend: Backend, reason: string) =>
  new KvplanError('backend-unavailable', `backend ${backend}: ${reason}`);

/** What verifyCheckedPlan builds each case's runner with; undefined for the reference backend. */
export async function runnerFactory(backend: Backend, threads: number): Promise<RunnerFactory | undefined> {
  if (backend === 'cpu') {
    const { buildCpu, CpuRunner } = await import('../backends/cpu/runner.ts');
    return (plan, config, weights, L) => {
      const build = buildCpu(plan, config, L);
      return (rows) => new CpuRunner(build, weights, rows, threads);
    };
  }
  if (backend === 'webgpu') {
    const { sharedDevice } = await import('../backends/webgpu/device.ts');
    const acquired = await sharedDevice();
    if (!acquired.ok) throw unavailable(backend, `no WebGPU adapter (${acquired.reason})`);
    const { webGpuRunnerFactory } = await import('../backends/webgpu/runner.ts');
    return webGpuRunnerFactory();
  }
  if (backend === 'ptx') {
    const { cudaAvailable } = await import('../backends/cuda-ptx/driver.ts');
    const cuda = cudaAvailable();
    if (!cuda.ok) throw unavailable(backend, cuda.reason);
    const { ptxRunnerFactory, sharedCudaDevice } = await import('../backends/cuda-ptx/runner.ts');
    return ptxRunnerFactory(sharedCudaDevice());
  }
  return undefined;
}
