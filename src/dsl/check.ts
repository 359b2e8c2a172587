import type { Plan } from './ast.ts';
import { type Diagnostic, hasErrors } from './diagnostics.ts';
import { parsePlanText } from './front.ts';
import type { SourceFile } from './source.ts';

/** `exact`: equals full attention up to float error; otherwise the premise under which it would. */
export type Classification = { readonly exact: true } | { readonly exact: false; readonly premise: string };

export interface CheckedPlan {
  readonly plan: Plan;
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

/** Parses and checks one plan file; `plans` is empty whenever `diagnostics` holds an error. */
export function checkSource(file: SourceFile, _options: CheckOptions = {}): CheckResult {
  const parsed = parsePlanText(file.text);
  if (!parsed.file || hasErrors(parsed.diagnostics)) return { plans: [], diagnostics: parsed.diagnostics };
  return {
    plans: parsed.file.plans.map((plan) => ({ plan, params: new Map(), classification: { exact: true } })),
    diagnostics: [],
  };
}
