import type { CheckedPlan } from '../dsl/check.ts';
import { formatVerifyError, verifyPlan } from '../ir/verify.ts';
import type { ModelConfig } from '../model/config.ts';
import { createRng, randomWeights } from '../model/weights.ts';
import { compilePlan } from '../passes/compile.ts';
import { type GenerationResult, simulateGeneration } from './simulate.ts';

export interface VerifyOptions {
  /** Model configurations the cases cycle through. */
  readonly configs: readonly ModelConfig[];
  readonly cases: number;
  readonly seed: number;
  readonly promptLen: number;
  /** Generated positions per case (the plan's block length is applied on top). */
  readonly genLen: number;
}

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface PlanVerdict {
  readonly plan: string;
  readonly exact: boolean;
  readonly cases: number;
  readonly checks: readonly Check[];
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

const worst = (
  r: GenerationResult,
  config: ModelConfig,
  L: number,
  only?: (s: GenerationResult['steps'][number]) => boolean,
) => {
  let excess = 0;
  let dev = 0;
  for (const s of r.steps) {
    if (only && !only(s)) continue;
    dev = Math.max(dev, s.deviation);
    excess = Math.max(excess, s.deviation / float64Bound(config, L, s.scale));
  }
  return { dev, within: excess <= 1 };
};

const fmt = (x: number) => x.toExponential(1);

/**
 * The properties of DESIGN.md section 4 for one plan on the reference backend: exact plans equal
 * the golden at every step; approximate plans equal it on a model where their premise holds (no
 * row's state depends on another's, so cached values equal fresh ones) and at their refresh steps.
 */
export function verifyCheckedPlan(plan: CheckedPlan, opts: VerifyOptions): PlanVerdict {
  const checks: Check[] = [];
  const structural = plan.typed.plan.body.some((s) => s.kind === 'attend' && s.mask?.name === 'block_causal');
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
  for (let i = 0; i < opts.cases; i++) {
    const base = opts.configs[i % opts.configs.length] as ModelConfig;
    // Attention structure and AR shift are properties of the model a plan is written for.
    const config: ModelConfig = {
      ...base,
      attention: structural ? 'block_causal' : base.attention,
      arShift: plan.typed.decode.arShift,
    };
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
    const run = (weights: ReturnType<typeof randomWeights>) =>
      simulateGeneration(plan, lowered, { config, weights, prompt, genLen: opts.genLen, seed });
    const random = run(randomWeights(config, seed));
    for (const s of random.steps) {
      devSum += s.deviation;
      devCount++;
      maxDeviation = Math.max(maxDeviation, s.deviation);
      if (s.agrees) agreeing++;
      steps++;
    }
    if (plan.classification.exact) {
      const w = worst(random, config, L);
      exactDev = Math.max(exactDev, w.dev);
      exactOk &&= w.within;
    } else {
      const premise = worst(run(randomWeights(config, seed, { attentionOutputScale: 0 })), config, L);
      premiseDev = Math.max(premiseDev, premise.dev);
      premiseOk &&= premise.within;
      const refresh = worst(random, config, L, (s) => s.phase === 'refresh');
      refreshDev = Math.max(refreshDev, refresh.dev);
      refreshOk &&= refresh.within;
    }
  }
  if (!checks.some((c) => c.name === 'ir')) {
    checks.push({ name: 'ir', ok: true, detail: 'step programs verify' });
    if (plan.classification.exact) {
      checks.push({
        name: 'exact',
        ok: exactOk,
        detail: `max |plan - golden| ${fmt(exactDev)} at every step`,
      });
    } else {
      checks.push({
        name: 'premise',
        ok: premiseOk,
        detail: `max ${fmt(premiseDev)} when the premise holds`,
      });
      checks.push({ name: 'refresh', ok: refreshOk, detail: `max ${fmt(refreshDev)} at refresh steps` });
    }
  }
  return {
    plan: plan.plan.name,
    exact: plan.classification.exact,
    cases: opts.cases,
    checks,
    meanDeviation: devCount ? devSum / devCount : 0,
    maxDeviation,
    agreement: steps ? agreeing / steps : 1,
    ok: checks.every((c) => c.ok),
  };
}
