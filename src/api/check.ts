import { type CheckedPlan, checkSource } from '../dsl/check.ts';
import {
  byPosition,
  type Diagnostic,
  error,
  formatDiagnostics as formatEach,
  hasErrors,
} from '../dsl/diagnostics.ts';
import { parsePlanText } from '../dsl/front.ts';
import { layerScopeDiagnostics } from '../dsl/semantics/layerDepth.ts';
import type { SourceFile } from '../dsl/source.ts';
import { undeclaredSettings } from '../dsl/suggest.ts';
import { describeFsError } from '../model/fsError.ts';
import { readSmallFile, SmallFileError } from '../model/smallFile.ts';
import { type ConfigSource, loadModelConfig } from './config.ts';
import { KvplanError } from './errors.ts';

/** Parameter values that override a plan's defaults, by name (`{ block: 8, tau: 0.8 }`). */
export type ParamSettings =
  | Readonly<Record<string, number | boolean | string>>
  | ReadonlyMap<string, number | boolean | string>;

export interface CheckOptions {
  /**
   * Overrides of the plans' parameters (as `kvplan check --set`), applied to every plan of the
   * text that declares the name. A value outside the parameter's range, or a name no plan
   * declares, is an error diagnostic.
   */
  readonly set?: ParamSettings;
  /**
   * A model to hold the plans' layer scopes against (as `kvplan check --config`): a rule whose
   * scope selects none of its layers is a warning diagnostic.
   */
  readonly config?: ConfigSource;
}

export interface PlanText extends CheckOptions {
  /** The plan source: one or more `plan name(...) { ... }` definitions. */
  readonly text: string;
  /** What diagnostics call the text (default `<plan>`); nothing is read from it. */
  readonly path?: string;
}

/** The outcome of checking plan text: the checked plans, or the errors that stop them. */
export interface CheckReport {
  /** No diagnostic is an error: every plan of the text is well-formed. */
  readonly ok: boolean;
  /** The text checked and what it is called, for formatDiagnostics. */
  readonly file: SourceFile;
  /** The checked plans in source order; empty whenever `ok` is false. */
  readonly plans: readonly CheckedPlan[];
  /** Errors, warnings and notes, in source order. */
  readonly diagnostics: readonly Diagnostic[];
}

/** Where each plan checked through the API came from: what explain and errors name it by. */
const origins = new WeakMap<CheckedPlan, SourceFile>();

/** The source a plan was checked from, if it was checked through the API. */
export const originOf = (plan: CheckedPlan): SourceFile | undefined => origins.get(plan);

/**
 * `plan` when it is a plan from a CheckReport; otherwise a KvplanError `invalid-argument` (the other
 * functions take only checked plans: a plan with errors never reaches them).
 */
export function planArg(plan: unknown): CheckedPlan {
  const p = plan as Partial<CheckedPlan> | null;
  if (typeof p !== 'object' || p === null || p.typed === undefined || p.classification === undefined)
    throw new KvplanError(
      'invalid-argument',
      `plan must be a checked plan, one of checkPlan(...).plans (got ${p === null ? 'null' : typeof p})`,
    );
  return p as CheckedPlan;
}

function settings(set: ParamSettings | undefined): Map<string, string> {
  if (set !== undefined && (typeof set !== 'object' || set === null))
    throw new KvplanError(
      'invalid-argument',
      `set must be a record or a Map of parameter values (got ${set})`,
    );
  const entries = set === undefined ? [] : set instanceof Map ? [...set] : Object.entries(set);
  const out = new Map<string, string>();
  for (const [name, value] of entries) {
    if (!['number', 'boolean', 'string'].includes(typeof value))
      throw new KvplanError(
        'invalid-argument',
        `set.${name} must be a number, a boolean or a string (got ${typeof value})`,
      );
    out.set(name, String(value));
  }
  return out;
}

/**
 * An error for each setting no plan of the text declares: a misspelt `{ tua: 0.5 }` would
 * otherwise run with the default and let the caller believe it measured a setting it did not.
 * Only when the text parses (else the declared names are not known).
 */
function unknownSettings(text: string, overrides: ReadonlyMap<string, string>): Diagnostic[] {
  const plans = parsePlanText(text).file?.plans;
  const first = plans?.[0];
  if (!first) return [];
  const declared = new Set(plans.flatMap((p) => p.params.map((q) => q.name)));
  return undeclaredSettings(overrides.keys(), declared).map(({ name, hint, known }) =>
    error(
      first.nameSpan,
      `no plan declares a parameter '${name}' (${known})`,
      hint ? [`help: did you mean '${hint}'?`] : undefined,
    ),
  );
}

/**
 * Parses and checks plan text: names, types, parameter ranges, and the semantic simulation that
 * proves every key a query reads is computed or cached, and classifies each plan as exact or
 * approximate (with its premise). A mistake in the plan is returned as diagnostics (`ok` false),
 * never thrown. Throws a KvplanError only for a bad argument: `text` not a string or a `set` value
 * of the wrong type (`invalid-argument`), or a `config` that cannot be loaded (see
 * loadModelConfig).
 */
export function checkPlan(input: PlanText): CheckReport {
  const { text, path = '<plan>' } = input ?? ({} as PlanText);
  if (typeof text !== 'string' || typeof path !== 'string')
    throw new KvplanError(
      'invalid-argument',
      `checkPlan needs { text: string, path?: string } (got text ${typeof text}, path ${typeof path})`,
    );
  return checkFile({ path, text }, input);
}

function checkFile(file: SourceFile, options: CheckOptions): CheckReport {
  const overrides = settings(options.set);
  const config = options.config === undefined ? undefined : loadModelConfig(options.config);
  const result = checkSource(file, { overrides });
  const diagnostics = [...result.diagnostics, ...unknownSettings(file.text, overrides)];
  const ok = !hasErrors(diagnostics);
  const plans = ok ? result.plans : [];
  if (config)
    for (const p of plans)
      diagnostics.push(...layerScopeDiagnostics(p, config.layers, config.name, 'warning'));
  for (const p of plans) origins.set(p, file);
  return { ok, file, plans, diagnostics: diagnostics.sort(byPosition) };
}

/** Plans are a few KB; a larger file is not a plan (as `kvplan check` reads them). */
const maxPlanBytes = 1 << 20;

/**
 * Reads a plan file (UTF-8, at most 1 MiB, a leading byte-order mark dropped) and checks it as
 * checkPlan does; diagnostics name the file by `path`. Throws a KvplanError `unreadable-file` when
 * the file cannot be read (missing, a directory, a device, too large), and what checkPlan throws.
 */
export function checkPlanFile(path: string, options: CheckOptions = {}): CheckReport {
  if (typeof path !== 'string')
    throw new KvplanError('invalid-argument', `checkPlanFile needs a path (got ${typeof path})`);
  let text: string;
  try {
    text = readSmallFile(path, maxPlanBytes);
  } catch (e) {
    if (!(e instanceof SmallFileError)) throw e;
    throw new KvplanError('unreadable-file', `cannot read ${path}: ${describeFsError(e)}`, { cause: e });
  }
  return checkFile({ path, text: text.startsWith('\ufeff') ? text.slice(1) : text }, options);
}

/**
 * The diagnostics of a check as the CLI prints them: `path:line:col: severity: message`, the
 * source line with a caret under the span, and notes; one block per diagnostic, joined by
 * newlines (at most 50, then a line counting the rest). The empty string when there are none.
 */
export function formatDiagnostics(report: Pick<CheckReport, 'file' | 'diagnostics'>): string {
  return formatEach(report.file, report.diagnostics).join('\n');
}
