import { type CheckedPlan, checkSource } from '../dsl/check.ts';
import { byPosition, formatDiagnostics, hasErrors } from '../dsl/diagnostics.ts';
import { layerScopeDiagnostics } from '../dsl/semantics/layerDepth.ts';
import { LineMap, type SourceFile } from '../dsl/source.ts';
import { undeclaredSettings } from '../dsl/suggest.ts';
import type { ModelConfig } from '../model/config.ts';
import { Exit, type Io, readPlanFile } from './io.ts';

export interface LoadedPlan {
  readonly path: string;
  readonly file: SourceFile;
  readonly checked: CheckedPlan;
}

/**
 * Reports each override no plan declares (a misspelt `--set tua=0.5` would otherwise run with the
 * default and let the user believe they measured a setting they did not); true when there is one.
 * `spelled` gives the option a parameter came from when it was not `--set` (generate's `--steps`).
 */
export function reportUnknownOverrides(
  overrides: ReadonlyMap<string, string>,
  declared: ReadonlySet<string>,
  io: Io,
  spelled: ReadonlyMap<string, string> = new Map(),
): boolean {
  const undeclared = undeclaredSettings(overrides.keys(), declared);
  for (const { name, hint, known } of undeclared)
    io.err(
      `kvplan: ${spelled.get(name) ?? `--set ${name}`}: no plan declares a parameter '${name}' (${known})${hint ? `; did you mean '${hint}'?` : ''}\n`,
    );
  return undeclared.length > 0;
}

/**
 * Reads and checks plan files for commands that go on to compile them; diagnostics go to stderr.
 * An override that no plan declares is a usage error (see reportUnknownOverrides).
 */
export function loadPlans(
  paths: readonly string[],
  overrides: ReadonlyMap<string, string>,
  io: Io,
  spelled?: ReadonlyMap<string, string>,
): { plans: LoadedPlan[]; codes: number[] } {
  const plans: LoadedPlan[] = [];
  const codes: number[] = [];
  const declared = new Set<string>();
  let complete = true;
  for (const path of paths) {
    const read = readPlanFile(path, io);
    if (!read.ok) {
      complete = false;
      codes.push(Exit.usage);
      continue;
    }
    const result = checkSource(read.file, { overrides });
    const lines = new LineMap(read.file.text);
    for (const t of formatDiagnostics(read.file, result.diagnostics, lines)) io.err(`${t}\n`);
    if (hasErrors(result.diagnostics)) {
      io.out(`error  ${path}  not well-formed (run kvplan check ${path})\n`);
      codes.push(Exit.failed);
      complete = false;
      continue;
    }
    for (const checked of result.plans) {
      plans.push({ path, file: read.file, checked });
      for (const p of checked.plan.params) declared.add(p.name);
    }
  }
  if (complete && reportUnknownOverrides(overrides, declared, io, spelled))
    return { plans: [], codes: [...codes, Exit.usage] };
  return { plans, codes };
}

/**
 * Whether a plan can run on a model as deep as `config`: a layer scope that selects none of its
 * layers, or a probe of a layer it does not have, would never apply there. Reported as errors
 * with their place in the plan (`kvplan check --config` reports the same as warnings).
 */
export function fitsModelDepth(plan: LoadedPlan, config: ModelConfig, io: Io): boolean {
  const ds = layerScopeDiagnostics(plan.checked, config.layers, config.name).sort(byPosition);
  const lines = new LineMap(plan.file.text);
  for (const t of formatDiagnostics(plan.file, ds, lines)) io.err(`${t}\n`);
  return ds.length === 0;
}
