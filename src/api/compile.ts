import type { CheckedPlan } from '../dsl/check.ts';
import type { ModelConfig } from '../model/config.ts';
import { describeFsError } from '../model/fsError.ts';
import { compilePlan as runPasses } from '../passes/compile.ts';
import type { Target } from '../passes/state.ts';
import { maxCanvasPositions } from '../runtime/canvasLimit.ts';
import { type CompileStats, compileStats } from '../runtime/compileStats.ts';
import { blockLength } from '../runtime/simulate.ts';
import { planArg } from './check.ts';
import { type ConfigSource, loadModelConfig } from './config.ts';
import { choiceArg, integerArg, KvplanError, translated } from './errors.ts';
import { requireDepth } from './fit.ts';

export type { CompileStats, Target };

/** The PTX targets: sm_80 (Ampere) and sm_90 (Hopper). */
export type PtxArch = 'sm_80' | 'sm_90';

const targets: readonly Target[] = ['reference', 'cpu', 'wgsl', 'ptx'];

export interface CompileOptions {
  /** The model the plan is compiled for (default the `small` preset). */
  readonly config?: ConfigSource;
  /** What the layouts and memory plan are chosen for (default `reference`). */
  readonly target?: Target;
  /** Prompt positions of the canvas the estimates and the memory plan assume (default 64). */
  readonly promptLength?: number;
  /** Generated positions of that canvas, at least one block (default 256). */
  readonly genLength?: number;
  /**
   * Write the generated code there, as `kvplan compile -o` does: C source, shared library and
   * manifest (`cpu`, runs the system C compiler), `.wgsl` shaders and a dispatch manifest
   * (`wgsl`), `.ptx` files and a launch manifest (`ptx`). Not for the `reference` target.
   */
  readonly outDir?: string;
  /** With target `ptx`: the architecture (default sm_80). */
  readonly arch?: PtxArch;
}

/** One fused kernel of a phase, as the pass pipeline left it. */
export interface KernelSummary {
  readonly name: string;
  /** What it computes: `gemm`, `attention`, `norm`, … */
  readonly kind: string;
  /** Its iteration space, outermost first; a string is a symbolic size (`#rows.0`: an index list). */
  readonly grid: readonly (number | string)[];
  /** Index lists its loads gather through. */
  readonly indirect: readonly string[];
  /** Operations fused after the main one (bias, rope, residual, scatter, merge, …). */
  readonly epilogue: readonly string[];
}

export interface CompileReport {
  /** Kernel counts, FLOPs and bytes per step per phase, the memory plan and the passes' times. */
  readonly stats: CompileStats;
  /** The kernels of each phase (refresh, cached, reuse), in launch order. */
  readonly phases: ReadonlyMap<string, readonly KernelSummary[]>;
  /** The files written to `outDir`; empty without it. */
  readonly files: readonly string[];
}

type Emit = (
  plan: CheckedPlan,
  config: ModelConfig,
  canvas: number,
  dir: string,
  arch: PtxArch,
) => Promise<string[]>;

const emitters: Readonly<Record<Exclude<Target, 'reference'>, Emit>> = {
  cpu: async (plan, config, canvas, dir) => {
    const { buildCpu } = await import('../backends/cpu/runner.ts');
    const { writeCpuBuild } = await import('../backends/cpu/output.ts');
    const build = await translated(() => buildCpu(plan, config, canvas), 'target cpu');
    return writeCpuBuild(dir, plan.plan.name, build);
  },
  wgsl: async (plan, config, canvas, dir) => {
    const { buildWebGpu } = await import('../backends/webgpu/runner.ts');
    const { writeWebGpuBuild } = await import('../backends/webgpu/output.ts');
    return writeWebGpuBuild(dir, plan.plan.name, buildWebGpu(plan, config, canvas));
  },
  ptx: async (plan, config, canvas, dir, arch) => {
    const { buildPtx } = await import('../backends/cuda-ptx/runner.ts');
    const { writePtxBuild } = await import('../backends/cuda-ptx/output.ts');
    return writePtxBuild(dir, plan.plan.name, buildPtx(plan, config, canvas, { arch }).render);
  },
};

/** Runs `write`; a file-system error is a KvplanError naming `outDir`. */
async function writing(dir: string, write: () => Promise<string[]>): Promise<string[]> {
  try {
    return await write();
  } catch (e) {
    if (typeof (e as { code?: unknown } | null)?.code !== 'string') throw e;
    throw new KvplanError('invalid-argument', `outDir ${dir}: cannot write: ${describeFsError(e)}`, {
      cause: e,
    });
  }
}

/**
 * Runs the pass pipeline on a plan for a model and target (`kvplan compile`): step-IR cleanup,
 * hoisting, fusion into kernels, layouts and memory planning; with `outDir`, renders and writes the
 * target's code. Returns the statistics (kernels, FLOPs and bytes per step, peak and cache memory)
 * and the kernels of each phase. Throws a KvplanError: `invalid-argument` for a bad option or an
 * unwritable `outDir`, what loadModelConfig throws for `config`, `plan-model-mismatch` when the
 * plan names layers the model lacks, `backend-unavailable` when the C compiler is missing (`cpu`
 * with `outDir`).
 */
export async function compilePlan(plan: CheckedPlan, options: CompileOptions = {}): Promise<CompileReport> {
  const checked = planArg(plan);
  const target = choiceArg('target', options.target ?? 'reference', targets);
  const promptLength = integerArg('promptLength', options.promptLength ?? 64, 0, maxCanvasPositions);
  const genArg = integerArg('genLength', options.genLength ?? 256, 1, maxCanvasPositions);
  const arch = choiceArg('arch', options.arch ?? 'sm_80', ['sm_80', 'sm_90'] as const);
  if (options.arch !== undefined && target !== 'ptx')
    throw new KvplanError('invalid-argument', `arch applies to target ptx only (got target ${target})`);
  const { outDir } = options;
  if (outDir !== undefined && typeof outDir !== 'string')
    throw new KvplanError('invalid-argument', `outDir must be a directory path (got ${typeof outDir})`);
  if (outDir !== undefined && target === 'reference')
    throw new KvplanError(
      'invalid-argument',
      'outDir writes generated code, which the reference target does not have',
    );
  const config = loadModelConfig(options.config ?? 'small');
  requireDepth(checked, config);
  const genLength = Math.max(genArg, blockLength(checked, genArg));
  const canvas = promptLength + genLength;
  const compiled = runPasses(checked, config, { target, canvas });
  const phases = new Map<string, readonly KernelSummary[]>();
  for (const [phase, kp] of compiled.state.kernels ?? [])
    phases.set(
      phase,
      kp.kernels.map(({ name, kind, grid, indirect, epilogue }) => ({
        name,
        kind,
        grid,
        indirect,
        epilogue,
      })),
    );
  const stats = compileStats(checked, config, compiled, target, promptLength, genLength);
  const files =
    outDir === undefined || target === 'reference'
      ? []
      : await writing(outDir, () => emitters[target](checked, config, canvas, outDir, arch));
  return { stats, phases, files };
}
