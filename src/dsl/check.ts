import type { Plan } from './ast.ts';
import { byPosition, type Diagnostic, error, hasErrors } from './diagnostics.ts';
import { parsePlanText } from './front.ts';
import { constantOf } from './semantics/constant.ts';
import { deepestNamedLayer } from './semantics/layerRules.ts';
import { premiseOf } from './semantics/premise.ts';
import { noApproximations, scenarios, simulatePlan } from './semantics/simulate.ts';
import type { SourceFile } from './source.ts';
import { type TypedPlan, typecheckPlan } from './typecheck.ts';

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

/** Enough layers to tell every layer scope of the plan apart, with layers above each probe. */
export const layersToSimulate = (typed: TypedPlan): number => Math.max(4, deepestNamedLayer(typed) + 3);

/** Checks one type-correct plan by simulating generations, and classifies it. */
function checkSemantics(typed: TypedPlan): { classification: Classification; diagnostics: Diagnostic[] } {
  const blocks = typed.plan.body.find((s) => s.kind === 'blocks');
  const blockLen = blocks ? constantOf(typed, blocks.length) : undefined;
  const approx = noApproximations();
  const diagnostics = new Map<string, Diagnostic>();
  for (const sc of scenarios(typed, blockLen, layersToSimulate(typed))) {
    for (const d of simulatePlan(typed, sc, approx)) {
      const key = `${d.span.start.offset}`;
      if (!diagnostics.has(key)) diagnostics.set(key, d);
    }
  }
  const premise = premiseOf(approx);
  return {
    classification: premise === undefined ? { exact: true } : { exact: false, premise },
    diagnostics: [...diagnostics.values()],
  };
}

/** Parses and checks one plan file; `plans` is empty whenever `diagnostics` holds an error. */
export function checkSource(file: SourceFile, options: CheckOptions = {}): CheckResult {
  const parsed = parsePlanText(file.text);
  if (!parsed.file || hasErrors(parsed.diagnostics)) return { plans: [], diagnostics: parsed.diagnostics };
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
    const { typed, diagnostics: typeErrors } = typecheckPlan(plan, options.overrides ?? new Map(), file.text);
    diagnostics.push(...typeErrors);
    if (!typed) continue;
    const { classification, diagnostics: semanticErrors } = checkSemantics(typed);
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
