import { checkSource } from '../dsl/check.ts';
import { formatDiagnostics, hasErrors } from '../dsl/diagnostics.ts';
import { parsePlanText } from '../dsl/front.ts';
import { layerScopeDiagnostics } from '../dsl/semantics/layerDepth.ts';
import { LineMap } from '../dsl/source.ts';
import { Exit, type Io, readPlanFile, worstExit } from './io.ts';
import { reportUnknownOverrides } from './plans.ts';

export interface CheckCommandOptions {
  readonly set?: Map<string, string>;
  /** A model (preset or JSON file) to hold layer scopes against; mismatches are warnings. */
  readonly config?: string;
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * `kvplan check`: parses and checks each file; one summary line per plan (or per failed file). The
 * model readers behind `--config` load only when it is given.
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
    const lines = new LineMap(read.file.text);
    for (const t of formatDiagnostics(read.file, result.diagnostics, lines)) io.err(`${t}\n`);
    if (hasErrors(result.diagnostics)) {
      const n = result.diagnostics.filter((d) => d.severity === 'error').length;
      io.out(`error  ${path}  ${plural(n, 'error')}\n`);
      codes.push(Exit.failed);
      continue;
    }
    if (config) {
      // The checker knows no model; which layers exist is only known here.
      const depth = result.plans.flatMap((p) =>
        layerScopeDiagnostics(p, config.layers, config.name, 'warning'),
      );
      for (const t of formatDiagnostics(read.file, depth, lines)) io.err(`${t}\n`);
    }
    if (result.plans.length === 0) io.out(`ok  ${path}  (no plans)\n`);
    for (const { plan, classification } of result.plans) {
      const verdict = classification.exact ? 'exact' : `approximate: ${classification.premise}`;
      io.out(`ok  ${path}  ${plan.name}  ${verdict}\n`);
    }
    codes.push(Exit.ok);
  }
  if (complete && reportUnknownOverrides(overrides, declared, io)) codes.push(Exit.usage);
  return worstExit(codes);
}
