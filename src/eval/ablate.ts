/**
 * The papers' ablation (Fast-dLLM's "cache alone, parallel decoding alone, both") for one plan:
 * the plan, its decode-matched no-cache twin and the one-token-per-step baseline answer the same
 * held-out problems, and the three effects are the paired differences between them
 * (docs/eval.md, "Ablation").
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckedPlan } from '../dsl/check.ts';
import { checkSource } from '../dsl/check.ts';
import type { Diagnostic } from '../dsl/diagnostics.ts';
import { decodeMatchedTwin, runKey, withStructure } from '../dsl/twin.ts';
import { blockLength } from '../runtime/simulate.ts';
import { bundledPlansDir } from './bundled.ts';
import { type EvalResult, evaluateOnModel, type ModelRun } from './evaluate.ts';
import { type Interval, pairedDifference, pairsOf } from './pairedCi.ts';

export type Role = 'plan' | 'twin' | 'baseline';

export interface Effect {
  readonly name: 'cache alone' | 'decode rule alone' | 'both';
  /** The run whose effect it is, and the run it is measured against. */
  readonly of: Role;
  readonly against: Role;
  /** Accuracy of `of` minus accuracy of `against`, on the same problems. */
  readonly accuracyDelta: number;
  /** 95% interval of the accuracy delta (Newcombe's paired score method, see pairedCi.ts). */
  readonly ci: Interval;
  /** Tokens/s of `of` over tokens/s of `against`. */
  readonly speedup: number;
}

/** What one plan is compared with: its twin and the baseline, derived and checked. */
export type Contrasts =
  | { readonly ok: true; readonly twin: CheckedPlan; readonly baseline: CheckedPlan }
  | { readonly ok: false; readonly what: string; readonly diagnostics: readonly Diagnostic[] };

/**
 * The one-token-per-step baseline for a plan: examples/baseline.kvp with the plan's block length
 * (the whole canvas when it has no blocks) and as many steps per block as positions, attending
 * with the plan's mask and reading predictions with its AR shift, so that it runs on the model the
 * plan was written for.
 */
export function contrastsOf(plan: CheckedPlan, genLength: number): Contrasts {
  const twin = decodeMatchedTwin(plan);
  if (!twin.ok) return { ok: false, what: `the twin of ${plan.plan.name}`, diagnostics: twin.diagnostics };
  const path = join(bundledPlansDir(), 'baseline.kvp');
  const block = String(blockLength(plan, genLength));
  const overrides = new Map([
    ['block', block],
    ['steps_per_block', block],
  ]);
  const checked = checkSource({ path, text: readFileSync(path, 'utf8') }, { overrides });
  const base = checked.plans[0];
  if (!base) return { ok: false, what: `the baseline (block ${block})`, diagnostics: checked.diagnostics };
  const baseline = withStructure(base, plan.typed);
  if (!baseline.ok)
    return { ok: false, what: `the baseline of ${plan.plan.name}`, diagnostics: baseline.diagnostics };
  return { ok: true, twin: twin.checked, baseline: baseline.checked };
}

/** How run `of` differs from run `against` on the same problems: accuracy (paired) and speed. */
export type Contrast = Pick<Effect, 'accuracyDelta' | 'ci' | 'speedup'>;

export function contrast(of: EvalResult, against: EvalResult): Contrast {
  const correct = (r: EvalResult) => r.problems.map((p) => p.correct);
  const d = pairedDifference(pairsOf(correct(of), correct(against)));
  return {
    accuracyDelta: d.delta,
    ci: { lo: d.lo, hi: d.hi },
    speedup: of.tokensPerSecond / against.tokensPerSecond,
  };
}

export interface Ablation {
  readonly plans: Readonly<Record<Role, CheckedPlan>>;
  readonly runs: Readonly<Record<Role, EvalResult>>;
  /** Roles that ran as another role's plan (the same statements and values), sharing its result. */
  readonly shared: ReadonlyMap<Role, Role>;
  readonly effects: readonly Effect[];
}

const roles: readonly Role[] = ['plan', 'twin', 'baseline'];

export const ablationEffects: readonly Pick<Effect, 'name' | 'of' | 'against'>[] = [
  { name: 'cache alone', of: 'plan', against: 'twin' },
  { name: 'decode rule alone', of: 'twin', against: 'baseline' },
  { name: 'both', of: 'plan', against: 'baseline' },
];

/**
 * Evaluates plans on one set of problems, each distinct plan once: plans with the same runKey (the
 * same statements and values under other names) generate the same tokens, so they share a result
 * and the effect between them is exactly zero, not timing noise.
 */
export function runOnce(o: ModelRun): (plan: CheckedPlan, onStart?: () => void) => Promise<EvalResult> {
  const done = new Map<string, EvalResult>();
  return async (plan, onStart) => {
    const key = runKey(plan);
    const known = done.get(key);
    if (known) return known;
    onStart?.();
    const r = await evaluateOnModel(plan, o);
    done.set(key, r);
    return r;
  };
}

/** Evaluates the plan, its twin and the baseline on the same problems, and their three effects. */
export async function ablate(
  plans: Readonly<Record<Role, CheckedPlan>>,
  o: ModelRun,
  onRun?: (role: Role) => void,
): Promise<Ablation> {
  const evaluate = runOnce(o);
  const runs: Partial<Record<Role, EvalResult>> = {};
  const shared = new Map<Role, Role>();
  for (const role of roles) {
    const result = await evaluate(plans[role], () => onRun?.(role));
    const same = roles.find((r) => runs[r] === result);
    if (same) shared.set(role, same);
    runs[role] = result;
  }
  const done = runs as Record<Role, EvalResult>;
  return {
    plans,
    runs: done,
    shared,
    effects: ablationEffects.map((e) => ({ ...e, ...contrast(done[e.of], done[e.against]) })),
  };
}
