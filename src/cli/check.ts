import { type CheckedPlan, checkSource } from '../dsl/check.ts';
import { type Diagnostic, formatDiagnostics, maxPrinted } from '../dsl/diagnostics.ts';
import { parsePlanText } from '../dsl/front.ts';
import { layerScopeDiagnostics } from '../dsl/semantics/layerDepth.ts';
import { LineMap } from '../dsl/source.ts';
import { Exit, type Io, readPlanFile, worstExit } from './io.ts';
import { reportUnknownOverrides } from './plans.ts';

export interface CheckCommandOptions {
  readonly set?: Map<string, string>;
  /** A model (preset or JSON file) to hold layer scopes against; mismatches are warnings. */
  readonly config?: string;
  readonly json?: boolean;
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** A file's lines: one per plan, exact or approximate and its premise; or its count of errors. */
function checkedText(path: string, errors: number, plans: readonly CheckedPlan[]): string {
  if (errors > 0) return `error  ${path}  ${plural(errors, 'error')}\n`;
  if (plans.length === 0) return `ok  ${path}  (no plans)\n`;
  return plans
    .map(({ plan, classification: c }) => {
      const verdict = c.exact ? 'exact' : `approximate: ${c.premise}`;
      return `ok  ${path}  ${plan.name}  ${verdict}\n`;
    })
    .join('');
}

const diagnosticJson = (path: string, d: Diagnostic) => ({
  severity: d.severity,
  message: d.message,
  file: path,
  line: d.span.start.line,
  col: d.span.start.col,
  end_line: d.span.end.line,
  end_col: d.span.end.col,
  ...(d.notes ? { notes: d.notes } : {}),
});

/** `--json`: a file's plans and diagnostics, as many as the text shows. */
function checkedJson(
  path: string,
  errors: number,
  plans: readonly CheckedPlan[],
  diagnostics: readonly Diagnostic[],
) {
  return {
    path,
    ok: errors === 0,
    errors,
    plans: plans.map(({ plan, classification: c }) => ({
      plan: plan.name,
      classification: c.exact ? 'exact' : 'approximate',
      ...(c.exact ? {} : { premise: c.premise }),
    })),
    diagnostics: diagnostics.slice(0, maxPrinted).map((d) => diagnosticJson(path, d)),
    ...(diagnostics.length > maxPrinted ? { diagnostics_not_shown: diagnostics.length - maxPrinted } : {}),
  };
}

/**
 * `kvplan check`: parses and checks each file; one summary line per plan (or per failed file), or
 * with `--json` one object per file. The model readers behind `--config` load only when it is given.
 */
export async function runCheck(
  paths: readonly string[],
  options: CheckCommandOptions,
  io: Io,
): Promise<number> {
  const overrides: ReadonlyMap<string, string> = options.set ?? new Map();
  const config =
    options.config === undefined
      ? undefined
      : (await import('./modelConfig.ts')).loadModelConfig(options.config, io);
  if (options.config !== undefined && !config) return Exit.usage;
  const codes: number[] = [];
  // Parameter names declared in the files read; complete while every file was read and parsed.
  const declared = new Set<string>();
  let complete = true;
  for (const path of paths) {
    const read = readPlanFile(path, io);
    if (!read.ok) {
      complete = false;
      codes.push(Exit.usage);
      continue;
    }
    const parsed = parsePlanText(read.file.text).file;
    if (!parsed) complete = false;
    for (const plan of parsed?.plans ?? []) for (const p of plan.params) declared.add(p.name);
    const result = checkSource(read.file, { overrides });
    const errors = result.diagnostics.filter((d) => d.severity === 'error').length;
    const plans = errors > 0 ? [] : result.plans;
    // The checker knows no model; which layers exist is only known here.
    const depth = config
      ? plans.flatMap((p) => layerScopeDiagnostics(p, config.layers, config.name, 'warning'))
      : [];
    if (options.json) {
      const all = [...result.diagnostics, ...depth];
      io.out(`${JSON.stringify(checkedJson(path, errors, plans, all))}\n`);
    } else {
      const lines = new LineMap(read.file.text);
      for (const ds of [result.diagnostics, depth])
        for (const t of formatDiagnostics(read.file, ds, lines)) io.err(`${t}\n`);
      io.out(checkedText(path, errors, plans));
    }
    codes.push(errors > 0 ? Exit.failed : Exit.ok);
  }
  if (complete && reportUnknownOverrides(overrides, declared, io)) codes.push(Exit.usage);
  return worstExit(codes);
}
