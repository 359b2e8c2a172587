/**
 * The backends a run can use, composed in one place above the runtime: the CLI and the benchmarks
 * pick one here and hand the runtime its runner (the runtime imports no backend). A backend's
 * modules load when a run asks for it: the CLI declares its options from this list at start-up,
 * and koffi, the WebGPU bindings and the PTX generators cost time that most commands never need.
 */
import type { CheckedPlan } from '../dsl/check.ts';
import type { ModelConfig } from '../model/config.ts';
import { layerPrefix, storedForm, type Weights } from '../model/weights.ts';
import type { Prepared } from '../runtime/prepare.ts';

export const runBackends = ['reference', 'cpu', 'webgpu', 'ptx'] as const;
export type RunBackend = (typeof runBackends)[number];

export const isRunBackend = (s: string): s is RunBackend => (runBackends as readonly string[]).includes(s);

/** The machine cannot run the asked backend (no adapter, no compiler); the message says why. */
export class BackendUnavailable extends Error {
  override readonly name = 'BackendUnavailable';
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
    const { buildCpu, CpuRunner } = await import('./cpu/runner.ts');
    const build = buildCpu(plan, config, maxCanvas);
    return { config, lowered: build.lowered, runner: (L) => new CpuRunner(build, weights, L, threads) };
  }
  if (backend === 'webgpu') {
    const { sharedDevice } = await import('./webgpu/device.ts');
    const acquired = await sharedDevice();
    if (!acquired.ok) throw new BackendUnavailable(`no WebGPU adapter (${acquired.reason})`);
    const { device } = acquired.gpu;
    const { buildWebGpu, WebGpuRunner, weightFormats } = await import('./webgpu/runner.ts');
    const build = buildWebGpu(plan, config, maxCanvas, weightFormats(weights, device));
    return { config, lowered: build.lowered, runner: (L) => new WebGpuRunner(build, weights, L, device) };
  }
  if (backend === 'ptx') {
    const { cudaAvailable } = await import('./cuda-ptx/driver.ts');
    const cuda = cudaAvailable();
    if (!cuda.ok) throw new BackendUnavailable(cuda.reason);
    const { archFor, buildPtx, PtxRunner, sharedCudaDevice } = await import('./cuda-ptx/runner.ts');
    const device = sharedCudaDevice();
    // A model stored in 16 bits runs its GEMMs on tensor cores in that dtype, reading the stored
    // bits (as PyTorch runs it); a float32 model keeps the float32 path.
    const half = storedForm(weights, `${layerPrefix(0)}.self_attn.q_proj.weight`)?.half;
    const build = buildPtx(plan, config, maxCanvas, {
      arch: archFor(device.computeCapability),
      ...(half ? { gemm: `mma-${half}` as const, weights } : {}),
    });
    return { config, lowered: build.lowered, runner: (L) => new PtxRunner(build, weights, L, device) };
  }
  const { compilePlan } = await import('../passes/compile.ts');
  return { config, lowered: compilePlan(plan, config, { target: 'reference' }).lowered };
}
