import type { RefreshStmt } from '../dsl/ast.ts';
import type { CheckedPlan } from '../dsl/check.ts';
import { printExpr } from '../dsl/printer.ts';
import { formatVerifyError, verifyPlan } from '../ir/verify.ts';
import type { ModelConfig } from '../model/config.ts';
import { createRng, randomWeights, type Weights } from '../model/weights.ts';
import { compilePlan } from '../passes/compile.ts';
import { GenerationError } from './generationError.ts';
import { LockstepRunner } from './lockstep.ts';
import { modelFor } from './modelFor.ts';
import { ReferenceRunner } from './referenceRunner.ts';
import type { StepRunner } from './runner.ts';
import { type GenerationResult, simulateGeneration } from './simulate.ts';

export type Backend = 'reference' | 'cpu' | 'webgpu' | 'ptx';

/** Builds the runner of a compiled backend for one case; the reference backend needs none. */
export type RunnerFactory = (
  plan: CheckedPlan,
  config: ModelConfig,
  weights: Weights,
  L: number,
) => (L: number) => StepRunner;

export interface VerifyOptions {
  readonly backend?: Backend;
  /** Required for compiled backends. */
  readonly runnerFor?: RunnerFactory;
  /** Model configurations the cases cycle through. */
  readonly configs: readonly ModelConfig[];
  readonly cases: number;
  readonly seed: number;
  readonly promptLen: number;
  /** Generated positions per case (the plan's block length is applied on top). */
  readonly genLen: number;
  /** Called after each case: cases done of all (a verdict that fails early skips the rest). */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** How often one refresh rule fired over all the generations of a verification. */
export interface RefreshFiring {
  /** The rule as written, and its line. */
  readonly rule: string;
  readonly line: number;
  /** Steps at which its condition held on at least one of its layers, and steps run in all. */
  readonly steps: number;
  readonly of: number;
}

export interface PlanVerdict {
  readonly plan: string;
  readonly exact: boolean;
  readonly cases: number;
  readonly checks: readonly Check[];
  readonly firings: readonly RefreshFiring[];
  /** Over the generations on the random models (not the premise models). */
  readonly meanDeviation: number;
  readonly maxDeviation: number;
  readonly agreement: number;
  readonly ok: boolean;
}

/**
 * The error a float64 computation of this model may accumulate by reordering sums: unit round-off
 * times the longest chain of accumulations a logit goes through (every layer sums over the model
 * width, the FFN width and the canvas), times the logits' scale. Derived from the sizes, not tuned.
 */
export function float64Bound(config: ModelConfig, L: number, scale: number): number {
  const chain = config.layers * (config.dModel + config.dFF + L) + config.dModel;
  return 2 ** -52 * 16 * chain * (1 + scale);
}

type Step = GenerationResult['steps'][number];

/**
 * The float32 budget: a small multiple of the error the eager float32 evaluation of the same
 * programs makes against float64 (the FlexAttention / attention-gym practice), plus a few units of
 * float32 round-off at the logits' scale for when that error happens to vanish.
 */
export const float32Budget = (eagerError: number, scale: number): number =>
  4 * eagerError + 8 * 2 ** -24 * (1 + scale);

/** The largest deviation over the selected steps, and whether every one is within its bound. */
function worst(r: GenerationResult, bound: (s: Step) => number, only?: (s: Step) => boolean) {
  let excess = 0;
  let dev = 0;
  for (const s of r.steps) {
    if (only && !only(s)) continue;
    dev = Math.max(dev, s.deviation);
    excess = Math.max(excess, s.deviation / bound(s));
  }
  return { dev, within: excess <= 1 };
}

const fmt = (x: number) => x.toExponential(1);

/**
 * The properties of DESIGN.md section 4 for one plan on the reference backend: exact plans equal
 * the golden at every step; approximate plans equal it on a model where their premise holds (no
 * row's state depends on another's, so cached values equal fresh ones) and at their refresh steps.
 */
export async function verifyCheckedPlan(plan: CheckedPlan, opts: VerifyOptions): Promise<PlanVerdict> {
  const checks: Check[] = [];
  let devSum = 0;
  let devCount = 0;
  let maxDeviation = 0;
  let agreeing = 0;
  let steps = 0;
  let exactOk = true;
  let premiseOk = true;
  let refreshOk = true;
  let exactDev = 0;
  let premiseDev = 0;
  let refreshDev = 0;
  let refreshSteps = 0;
  let backendOk = true;
  let backendDev = 0;
  let stalled: string | undefined;
  const fired = new Map<RefreshStmt, number>();
  const count = (r: GenerationResult) => {
    for (const [rule, n] of r.firings) fired.set(rule, (fired.get(rule) ?? 0) + n);
  };
  for (let i = 0; i < opts.cases; i++) {
    const config = modelFor(plan, opts.configs[i % opts.configs.length] as ModelConfig);
    // The optimized phases: verify proves what the pass pipeline produces, not just the lowering.
    const { lowered } = compilePlan(plan, config, { target: 'reference' });
    const irErrors = verifyPlan([
      lowered.programs.refresh,
      lowered.programs.cached,
      ...(lowered.programs.reuse ? [lowered.programs.reuse] : []),
    ]);
    if (irErrors.length > 0) {
      checks.push({ name: 'ir', ok: false, detail: irErrors.slice(0, 3).map(formatVerifyError).join('; ') });
      break;
    }
    const seed = opts.seed + i;
    const rng = createRng(seed);
    const prompt = Int32Array.from({ length: opts.promptLen }, () =>
      Math.floor(rng.uniform() * (config.vocab - 1)),
    );
    const L = opts.promptLen + opts.genLen;
    const backend = opts.backend ?? 'reference';
    // The eager float32 run that sets a compiled backend's budget is always the reference
    // interpreter rounding to float32, never the backend under test: a budget derived from the
    // thing it judges would scale with that thing's own error, and the check could not fail.
    // With `lockstep`, the float64 reference runs the same plan beside the runner, on the same lists.
    const run = async (weights: Weights, float32 = false, lockstep = false) => {
      const base = float32
        ? (n: number) => new ReferenceRunner(lowered, weights, n, true)
        : backend === 'reference'
          ? undefined
          : opts.runnerFor?.(plan, config, weights, L);
      if (backend !== 'reference' && !float32 && !base) throw new Error(`backend ${backend} needs a runner`);
      let pair: LockstepRunner | undefined;
      const runner =
        lockstep && base
          ? (n: number) => {
              pair = new LockstepRunner(base(n), new ReferenceRunner(lowered, weights, n));
              return pair;
            }
          : base;
      const result = await simulateGeneration(plan, lowered, {
        config,
        weights,
        prompt,
        genLen: opts.genLen,
        seed,
        ...(runner ? { runner } : {}),
      });
      return { result, gaps: pair?.gaps ?? [] };
    };
    // Float64 programs are held to round-off; float32 backends to a multiple of eager float32's
    // error, against the golden at the steps `only` selects and, with `lockstep`, against the
    // reference running the same plan at every step.
    const bounded = async (weights: Weights, only?: (s: Step) => boolean, lockstep = false) => {
      if (backend === 'reference') {
        const { result } = await run(weights);
        return {
          result,
          ...worst(result, (s) => float64Bound(config, L, s.scale), only),
          lockstepGap: undefined,
        };
      }
      const { result, gaps } = await run(weights, false, lockstep);
      const eagerRun = await run(weights, true, lockstep);
      const eager = worst(eagerRun.result, () => 1, only).dev;
      const eagerGap = Math.max(0, ...eagerRun.gaps.map((g) => g.deviation));
      const lockstepGap = gaps.reduce(
        (w, g) => ({
          dev: Math.max(w.dev, g.deviation),
          within: w.within && g.deviation <= float32Budget(eagerGap, g.scale),
        }),
        { dev: 0, within: true },
      );
      return { result, ...worst(result, (s) => float32Budget(eager, s.scale), only), lockstepGap };
    };
    const randomModel = randomWeights(config, seed);
    // A decode rule that stops committing on a model, or logits that overflow on a backend, fail
    // the plan, with the reason.
    const orStalled = async <T>(what: string, f: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await f();
      } catch (e) {
        if (!(e instanceof GenerationError)) throw e;
        stalled = `${what}: ${e.message}`;
        return undefined;
      }
    };
    const primary = await orStalled(`case ${i + 1}`, () =>
      bounded(randomModel, plan.classification.exact ? undefined : (s) => s.phase === 'refresh', true),
    );
    if (!primary) break;
    if (primary.lockstepGap) {
      backendDev = Math.max(backendDev, primary.lockstepGap.dev);
      backendOk &&= primary.lockstepGap.within;
    }
    const random = primary.result;
    count(random);
    refreshSteps += random.steps.filter((s) => s.phase === 'refresh').length;
    for (const s of random.steps) {
      devSum += s.deviation;
      devCount++;
      maxDeviation = Math.max(maxDeviation, s.deviation);
      if (s.agrees) agreeing++;
      steps++;
    }
    if (plan.classification.exact) {
      exactDev = Math.max(exactDev, primary.dev);
      exactOk &&= primary.within;
    } else {
      const premise = await orStalled(`case ${i + 1}, premise model`, () =>
        bounded(randomWeights(config, seed, { attentionOutputScale: 0 })),
      );
      if (!premise) break;
      premiseDev = Math.max(premiseDev, premise.dev);
      premiseOk &&= premise.within;
      refreshDev = Math.max(refreshDev, primary.dev);
      refreshOk &&= primary.within;
    }
    opts.onProgress?.(i + 1, opts.cases);
  }
  const comparisons = (): Check[] => [
    ...(opts.backend !== undefined && opts.backend !== 'reference'
      ? [
          {
            name: 'backend',
            ok: backendOk,
            detail: `max |${opts.backend} - reference| ${fmt(backendDev)} at every step, both running the plan on the same lists`,
          },
        ]
      : []),
    ...(plan.classification.exact
      ? [{ name: 'exact', ok: exactOk, detail: `max |plan - golden| ${fmt(exactDev)} at every step` }]
      : [
          { name: 'premise', ok: premiseOk, detail: `max ${fmt(premiseDev)} when the premise holds` },
          {
            name: 'refresh',
            ok: refreshOk,
            detail:
              refreshSteps === 0
                ? 'no full-refresh step in any case, nothing to compare'
                : `max ${fmt(refreshDev)} at ${refreshSteps} refresh steps`,
          },
        ]),
  ];
  if (!checks.some((c) => c.name === 'ir')) {
    checks.push({ name: 'ir', ok: true, detail: 'step programs verify' });
    // A generation cut short compares nothing: only the reason is reported.
    if (stalled) checks.push({ name: 'progress', ok: false, detail: stalled });
    else checks.push(...comparisons());
  }
  return {
    plan: plan.plan.name,
    exact: plan.classification.exact,
    cases: opts.cases,
    checks,
    firings: plan.plan.body.flatMap((s) =>
      s.kind === 'refresh'
        ? [
            {
              rule: `refresh ${printExpr(s.set)} when ${printExpr(s.when)}`,
              line: s.span.start.line,
              steps: fired.get(s) ?? 0,
              of: steps,
            },
          ]
        : [],
    ),
    meanDeviation: devCount ? devSum / devCount : 0,
    maxDeviation,
    agreement: steps ? agreeing / steps : 1,
    ok: checks.every((c) => c.ok),
  };
}
