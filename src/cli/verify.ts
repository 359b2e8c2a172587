import type { PtxCheck } from '../backends/cuda-ptx/check.ts';
import type { CheckedPlan } from '../dsl/check.ts';
import { ConfigError, type ModelConfig } from '../model/config.ts';
import { presets } from '../model/presets.ts';
import { maxRandomParameters, parameterCount, WeightError } from '../model/weights.ts';
import { deepEnough } from '../runtime/modelFor.ts';
import { blockLength } from '../runtime/simulate.ts';
import {
  type Backend,
  type PlanVerdict,
  type RunnerFactory,
  type VerifyOptions,
  verifyCheckedPlan,
} from '../runtime/verify.ts';
import { canvasBytes, forwardFlops } from '../runtime/workEstimate.ts';
import { verifyBackends } from './commands/verify.ts';
import { canvasFits, checkRunCost, modelsWord } from './estimate.ts';
import { Exit, type Io, worstExit } from './io.ts';
import { loadModelConfig } from './modelConfig.ts';
import { fitsModelDepth, loadPlans } from './plans.ts';
import { withProgress } from './progress.ts';

export interface VerifyCommandOptions {
  readonly set?: Map<string, string>;
  readonly backend: string;
  readonly config?: string;
  readonly cases: number;
  readonly seed: number;
  readonly promptLength: number;
  readonly genLength?: number;
  readonly threads: number;
  readonly json?: boolean;
}

/** The default mix: GQA with QKV bias, plain multi-head attention, and GQA without bias. */
const defaultConfigs = (): ModelConfig[] => {
  const tiny = presets.tiny as ModelConfig;
  return [tiny, presets.small as ModelConfig, { ...tiny, name: 'tiny-no-bias', qkvBias: false }];
};

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/**
 * What verifying one plan established: the verdict of its properties, and on the ptx backend
 * ptxas's check of its kernels (absent when ptxas is not there) and why they were not launched.
 */
interface Verified {
  readonly path: string;
  readonly plan: string;
  readonly ptx?: { readonly check?: PtxCheck; readonly skipped?: string };
  readonly verdict?: PlanVerdict;
}

const ptxasOk = (c: PtxCheck): boolean => c.errors.length === 0 && c.spills.length === 0;

const exitOf = (v: Verified): number =>
  (v.verdict ? v.verdict.ok : !v.ptx?.check || ptxasOk(v.ptx.check)) ? Exit.ok : Exit.failed;

/** On ptx, ptxas's line: its check of the kernels, and why they were not launched if they were not. */
function ptxLine(path: string, plan: string, ptx: NonNullable<Verified['ptx']>, launched: boolean): string {
  if (!ptx.check) return `skipped  ${path}  ${plan}  ptx  skipped: ${ptx.skipped}\n`;
  const c = ptx.check;
  const ok = ptxasOk(c);
  const ptxas = `ptxas ${ok ? 'ok' : 'FAILED'} (${c.kernels} kernels for sm_80 and sm_90, at most ${c.maxRegisters} registers, ${c.spills.length ? `spills: ${c.spills.join('; ')}` : 'no spills'})`;
  const launch = launched
    ? ''
    : `  ${ptx.skipped === undefined ? 'launch: not attempted' : `skipped: ${ptx.skipped}`}`;
  return `${ok ? 'ok' : 'FAIL'}  ${path}  ${plan}  ptx  ${ptxas}${launch}\n`;
}

const verifiedText = ({ path, plan, ptx, verdict }: Verified): string =>
  `${ptx ? ptxLine(path, plan, ptx, verdict !== undefined) : ''}${verdict ? summary(path, verdict) : ''}`;

/** `--json`: one object per plan, with its checks and verdict. */
function verifiedJson(v: Verified, backend: string) {
  const { ptx, verdict } = v;
  return {
    path: v.path,
    plan: v.plan,
    backend,
    ok: exitOf(v) === Exit.ok,
    ...(ptx
      ? {
          ptxas: ptx.check
            ? {
                ok: ptxasOk(ptx.check),
                kernels: ptx.check.kernels,
                max_registers: ptx.check.maxRegisters,
                spills: ptx.check.spills,
                errors: ptx.check.errors,
              }
            : null,
          ...(ptx.skipped === undefined ? {} : { skipped: ptx.skipped }),
        }
      : {}),
    ...(verdict
      ? {
          exact: verdict.exact,
          cases: verdict.cases,
          checks: verdict.checks,
          mean_deviation: verdict.meanDeviation,
          max_deviation: verdict.maxDeviation,
          agreement: verdict.agreement,
          refresh_firings: verdict.firings,
        }
      : {}),
  };
}

function summary(path: string, v: PlanVerdict): string {
  const kind = v.exact ? 'exact' : 'approximate';
  const checks = v.checks.map((c) => `${c.name} ${c.ok ? 'ok' : 'FAILED'} (${c.detail})`).join(', ');
  const gen = `generation: mean dev ${v.meanDeviation.toExponential(2)}, max dev ${v.maxDeviation.toExponential(2)}, decode agreement ${pct(v.agreement)}`;
  const fired = v.firings.length
    ? `  refresh rules fired: ${v.firings.map((f) => `line ${f.line} at ${f.steps} of ${f.of} steps`).join(', ')}`
    : '';
  return `${v.ok ? 'ok' : 'FAIL'}  ${path}  ${v.plan}  ${kind}  cases ${v.cases}  ${checks}  ${gen}${fired}\n`;
}

/** One plan to verify: its generated positions per case and the models its cases cycle through. */
interface Job {
  readonly path: string;
  readonly checked: CheckedPlan;
  readonly genLen: number;
  readonly configs: readonly ModelConfig[];
}

/**
 * The memory and work of a verification, from its sizes: the exit code of a refusal, or undefined
 * (with the estimate printed when the run is long). Each case runs the plan and the golden
 * forward at every step, on one random model (exact plans) or two (approximate plans: the premise
 * model too), and on a compiled backend the eager float32 reference run again; every step commits
 * at least one position. The golden and the float32 runs are the reference interpreter's, so the
 * time is estimated at its rate whatever the backend.
 */
function checkVerifyCost(jobs: readonly Job[], o: VerifyCommandOptions, io: Io): number | undefined {
  if (jobs.length === 0) return undefined;
  let flops = 0;
  let weights = 0;
  let canvas = 0;
  let rows = 0;
  for (const { checked, genLen, configs } of jobs) {
    const L = o.promptLength + genLen;
    const models = checked.classification.exact ? 1 : 2;
    const generations = models * (o.backend === 'reference' ? 1 : 2);
    for (const [k, c] of configs.entries()) {
      // randomWeights refuses a larger model itself (exit 2), before it allocates anything.
      if (k >= o.cases || parameterCount(c) > maxRandomParameters) continue;
      const cases = Math.floor((o.cases - 1 - k) / configs.length) + 1;
      flops += cases * generations * genLen * 2 * forwardFlops(c, L);
      // Random weights are float64; the premise model's are drawn while the first is held.
      weights = Math.max(weights, models * parameterCount(c) * 8);
      canvas = Math.max(canvas, canvasBytes(c, L, 8));
      rows = Math.max(rows, L);
    }
  }
  const steps = Math.max(...jobs.map((j) => j.genLen));
  const plans = jobs.length === 1 ? '' : `${jobs.length} plans × `;
  return checkRunCost(
    {
      command: 'verify',
      what: `${plans}${o.cases} case${o.cases === 1 ? '' : 's'}, at most ${steps} steps each on ${modelsWord(jobs.flatMap((j) => j.configs.slice(0, o.cases)))}`,
      backend: 'reference',
      flops,
      memory: { weights, canvas, rows, canvases: 1 },
      fix: 'use a smaller --prompt-length or --gen-length, or a smaller --config',
    },
    io,
  );
}

export async function runVerify(paths: readonly string[], o: VerifyCommandOptions, io: Io): Promise<number> {
  if (!verifyBackends.includes(o.backend)) {
    io.err(`kvplan: --backend ${o.backend} is not available; backends: ${verifyBackends.join(', ')}\n`);
    return Exit.usage;
  }
  const { cases, seed, promptLength: promptLen, genLength: genArg } = o;
  const config = o.config === undefined ? undefined : loadModelConfig(o.config, io);
  if (o.config !== undefined && !config) return Exit.usage;
  const { plans, codes } = loadPlans(paths, o.set ?? new Map(), io);
  const jobs: Job[] = [];
  for (const p of plans) {
    const { path, checked } = p;
    if (config && !fitsModelDepth(p, config, io)) {
      codes.push(Exit.failed);
      continue;
    }
    // Two blocks by default, so that every plan meets a block boundary.
    const genLen = genArg ?? 2 * Math.min(blockLength(checked, 16), 32);
    if (!canvasFits(promptLen, genLen, 'a smaller --prompt-length or --gen-length', io)) return Exit.usage;
    // The default models are deepened so that every layer the plan names runs; a model the user
    // names is taken as it is.
    const configs = config ? [config] : defaultConfigs().map((c) => deepEnough(checked, c));
    jobs.push({ path, checked, genLen, configs });
  }
  const refused = checkVerifyCost(jobs, o, io);
  if (refused !== undefined) return refused;
  await withProgress(
    io,
    { command: 'verify', total: jobs.length * cases, unit: 'cases' },
    async (progress) => {
      for (const [k, { path, checked, genLen, configs }] of jobs.entries()) {
        const common = {
          configs,
          cases,
          seed,
          promptLen,
          genLen,
          onProgress: (done: number) => progress.update(k * cases + done),
        };
        try {
          const v =
            o.backend === 'ptx'
              ? await verifyPtx(path, checked, common, progress.io)
              : await verifyOn(o.backend as Backend, o.threads, path, checked, common);
          progress.io.out(o.json ? `${JSON.stringify(verifiedJson(v, o.backend))}\n` : verifiedText(v));
          codes.push(exitOf(v));
        } catch (e) {
          if (!(e instanceof WeightError || e instanceof ConfigError)) throw e;
          progress.io.err(`kvplan: ${e.message}\n`);
          codes.push(Exit.usage);
        }
        progress.update((k + 1) * cases);
      }
    },
  );
  return worstExit(codes);
}

type Common = Omit<VerifyOptions, 'backend' | 'runnerFor'>;

async function verifyOn(
  backend: Backend,
  threads: number,
  path: string,
  plan: CheckedPlan,
  common: Common,
): Promise<Verified> {
  const runnerFor = await compiledRunner(backend, threads);
  const verdict = await verifyCheckedPlan(plan, { ...common, backend, ...(runnerFor ? { runnerFor } : {}) });
  return { path, plan: plan.plan.name, verdict };
}

/**
 * The runner factory of a compiled backend, its modules imported only when it is asked for (the
 * CPU one loads koffi); undefined for the reference interpreter.
 */
async function compiledRunner(backend: Backend, threads: number): Promise<RunnerFactory | undefined> {
  if (backend === 'cpu') {
    const { buildCpu, CpuRunner } = await import('../backends/cpu/runner.ts');
    // Each case compiles (or finds in the cache) the plan for its model and canvas.
    return (plan, cfg, weights, L) => {
      const build = buildCpu(plan, cfg, L);
      return (n) => new CpuRunner(build, weights, n, threads);
    };
  }
  if (backend === 'webgpu') return (await import('../backends/webgpu/runner.ts')).webGpuRunnerFactory();
  return undefined;
}

/**
 * The PTX backend: ptxas checks every kernel for both architectures first; then, on a CUDA device,
 * the same properties and float32 budgets as the other compiled backends. Without a device the
 * launch is reported as skipped, with the reason.
 */
async function verifyPtx(path: string, plan: CheckedPlan, opts: Common, io: Io): Promise<Verified> {
  const [{ findPtxas }, { checkPlanPtx }, { cudaAvailable }, { ptxRunnerFactory, sharedCudaDevice }] =
    await Promise.all([
      import('../backends/cuda-ptx/ptxas.ts'),
      import('../backends/cuda-ptx/check.ts'),
      import('../backends/cuda-ptx/driver.ts'),
      import('../backends/cuda-ptx/runner.ts'),
    ]);
  const name = plan.plan.name;
  if (!findPtxas()) return { path, plan: name, ptx: { skipped: 'ptxas not found' } };
  const check = checkPlanPtx(plan, opts.configs, opts.promptLen + opts.genLen);
  for (const e of check.errors) io.err(`kvplan: ${e}\n`);
  const cuda = cudaAvailable();
  if (!cuda.ok) return { path, plan: name, ptx: { check, skipped: cuda.reason } };
  if (!ptxasOk(check)) return { path, plan: name, ptx: { check } };
  const verdict = await verifyCheckedPlan(plan, {
    ...opts,
    backend: 'ptx',
    runnerFor: ptxRunnerFactory(sharedCudaDevice()),
  });
  return { path, plan: name, ptx: { check }, verdict };
}
