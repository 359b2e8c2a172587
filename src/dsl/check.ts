import type { Plan } from './ast.ts';
import { byPosition, type Diagnostic, error, hasErrors, note } from './diagnostics.ts';
import { parsePlanText } from './front.ts';
import {
  rowStepCost,
  scalings,
  simulationBudget,
  simulationScenarios,
  simulationWork,
  withValues,
} from './semantics/budget.ts';
import { liftLiterals } from './semantics/literals.ts';
import { premiseOf } from './semantics/premise.ts';
import { noApproximations, simulatePlan } from './semantics/simulate.ts';
import type { LayerDecision } from './semantics/stepper.ts';
import type { SourceFile } from './source.ts';
import { planSizeError, type TypedPlan, typecheckPlan } from './typecheck.ts';

export { layersToSimulate, simulationBudget } from './semantics/budget.ts';

/** `exact`: equals full attention up to float error; otherwise the premise under which it would. */
export type Classification = { readonly exact: true } | { readonly exact: false; readonly premise: string };

export interface CheckedPlan {
  readonly plan: Plan;
  /** The plan with its names resolved, as lowering and the inspector consume it. */
  readonly typed: TypedPlan;
  /** Parameter values after defaults and `--set` overrides. */
  readonly params: ReadonlyMap<string, number | boolean>;
  readonly classification: Classification;
}

export interface CheckOptions {
  /** `--set name=value` overrides, applied to every plan of the file that declares the name. */
  readonly overrides?: ReadonlyMap<string, string>;
}

export interface CheckResult {
  readonly plans: readonly CheckedPlan[];
  readonly diagnostics: readonly Diagnostic[];
}

/** The semantic check of one type-correct plan: its classification, its errors, what was simulated. */
export interface SemanticCheck {
  readonly classification: Classification;
  readonly diagnostics: readonly Diagnostic[];
  /** The parameters the simulation took at other values than declared, to stay within its budget. */
  readonly scaled: ReadonlyMap<string, number>;
  /** Row-steps the simulation took, counted as it ran (weighted as `simulationBudget` says). */
  readonly work: number;
}

const assignments = (typed: TypedPlan, names: Iterable<string>): string =>
  [...names]
    .map((name) => {
      const b = typed.bindings.get(name);
      return `${name}=${b?.kind === 'param' ? b.value : '?'}`;
    })
    .join(', ');

const grouped = (n: number): string => String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');

/** Whether the plan type-checks with some parameters at other values (an argument may leave its range). */
function wellTypedAt(typed: TypedPlan, values: ReadonlyMap<string, number>): boolean {
  const overrides = new Map<string, string>();
  for (const [name, b] of typed.bindings)
    if (b.kind === 'param') overrides.set(name, String(values.get(name) ?? b.value));
  return !hasErrors(typecheckPlan(typed.plan, overrides).diagnostics);
}

/**
 * The scaled values to simulate at, when the declared ones would take `declaredWork`, over the
 * budget: the least scaled that are within it, else the cheapest that type-check.
 */
function simulationValues(
  typed: TypedPlan,
  budget: number,
  declaredWork: number,
): ReadonlyMap<string, number> {
  const tried: { scaled: ReadonlyMap<string, number>; work: number }[] = [];
  for (const scaled of scalings(typed)) {
    if (scaled.size === 0) continue;
    const at = withValues(typed, scaled);
    const work = simulationWork(at, simulationScenarios(at));
    if (work <= budget && wellTypedAt(typed, scaled)) return scaled;
    tried.push({ scaled, work });
  }
  const cheapest = tried
    .filter((c) => c.work < declaredWork)
    .sort((a, b) => a.work - b.work)
    .find((c) => wellTypedAt(typed, c.scaled));
  return cheapest?.scaled ?? new Map();
}

/**
 * Checks one type-correct plan by simulating generations, and classifies it. A plan whose
 * simulation at its parameter values would exceed `simulationBudget` is simulated at scaled-down
 * values instead, its literal sizes included (semantics/literals.ts), and a note says which.
 */
export function checkSemantics(declared: TypedPlan, budget = simulationBudget): SemanticCheck {
  const declaredWork = simulationWork(declared, simulationScenarios(declared));
  const over = declaredWork > budget;
  const subject = (over && liftLiterals(declared)?.typed) || declared;
  const scaled = over ? simulationValues(subject, budget, declaredWork) : new Map<string, number>();
  const typed = withValues(subject, scaled);
  const at = assignments(typed, scaled.keys());
  // An error found at scaled values names them: its steps and positions are theirs.
  const found = (d: Diagnostic): Diagnostic =>
    scaled.size > 0
      ? { ...d, notes: [...(d.notes ?? []), `note: found by the semantic simulation at ${at}`] }
      : d;
  const approx = noApproximations();
  const diagnostics = new Map<string, Diagnostic>();
  let work = 0;
  const cost = rowStepCost(typed);
  const trace = {
    layer: (d: LayerDecision) => {
      work += d.rows.length * cost(d.rows.length);
    },
  };
  for (const sc of simulationScenarios(typed)) {
    for (const d of simulatePlan(typed, sc, approx, trace)) {
      const key = `${d.span.start.offset}`;
      if (!diagnostics.has(key)) diagnostics.set(key, found(d));
    }
  }
  if (scaled.size > 0)
    diagnostics.set(
      'scaled',
      note(
        declared.plan.nameSpan,
        `the semantic simulation ran at ${at} (${assignments(subject, scaled.keys())} would take up to ${grouped(declaredWork)} row-steps, over its budget of ${grouped(budget)}); the other checks ran at the declared values`,
      ),
    );
  const premise = premiseOf(approx);
  return {
    classification: premise === undefined ? { exact: true } : { exact: false, premise },
    diagnostics: [...diagnostics.values()],
    scaled,
    work,
  };
}

/** The most plans one file may define. */
export const maxPlans = 64;
/** The simulation budget all plans of a file share: two plans at the budget of one. */
export const fileSimulationBudget = 2 * simulationBudget;

/** Parses and checks one plan file; `plans` is empty whenever `diagnostics` holds an error. */
export function checkSource(file: SourceFile, options: CheckOptions = {}): CheckResult {
  const parsed = parsePlanText(file.text);
  if (!parsed.file || hasErrors(parsed.diagnostics)) return { plans: [], diagnostics: parsed.diagnostics };
  const extra = parsed.file.plans[maxPlans];
  if (extra)
    return {
      plans: [],
      diagnostics: [
        error(extra.nameSpan, `the file defines more than ${maxPlans} plans, the limit of a file`, [
          'help: split the plans into several files',
        ]),
      ],
    };
  // The plans of a file share one budget, so that a file's check is bounded as a plan's is.
  const budget = Math.min(simulationBudget, fileSimulationBudget / parsed.file.plans.length);
  const diagnostics: Diagnostic[] = [];
  const plans: CheckedPlan[] = [];
  const seen = new Map<string, Plan>();
  for (const plan of parsed.file.plans) {
    const prior = seen.get(plan.name);
    if (prior)
      diagnostics.push(
        error(plan.nameSpan, `plan '${plan.name}' is already defined at line ${prior.nameSpan.start.line}`),
      );
    seen.set(plan.name, plan);
    const tooLarge = planSizeError(plan);
    if (tooLarge) {
      diagnostics.push(tooLarge);
      continue;
    }
    const { typed, diagnostics: typeErrors } = typecheckPlan(plan, options.overrides ?? new Map());
    diagnostics.push(...typeErrors);
    if (!typed) continue;
    const { classification, diagnostics: semanticErrors } = checkSemantics(typed, budget);
    diagnostics.push(...semanticErrors);
    const params = new Map<string, number | boolean>();
    for (const [name, b] of typed.bindings) if (b.kind === 'param') params.set(name, b.value);
    plans.push({ plan, typed, params, classification });
  }
  if (parsed.file.plans.length === 0) {
    diagnostics.push(
      error(
        { start: { offset: 0, line: 1, col: 1 }, end: { offset: 0, line: 1, col: 1 } },
        'the file defines no plan',
      ),
    );
  }
  diagnostics.sort(byPosition);
  return hasErrors(diagnostics) ? { plans: [], diagnostics } : { plans, diagnostics };
}
