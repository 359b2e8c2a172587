import { type CheckedPlan, checkSource } from '../dsl/check.ts';
import { formatDiagnostic, hasErrors } from '../dsl/diagnostics.ts';
import { LineMap } from '../dsl/source.ts';
import { ConfigError, loadConfig, type ModelConfig } from '../model/config.ts';
import { Exit, type Io, readPlanFile } from './io.ts';

export interface LoadedPlan {
  readonly path: string;
  readonly checked: CheckedPlan;
}

/** Reads and checks plan files for commands that go on to compile them; diagnostics go to stderr. */
export function loadPlans(
  paths: readonly string[],
  overrides: ReadonlyMap<string, string>,
  io: Io,
): { plans: LoadedPlan[]; codes: number[] } {
  const plans: LoadedPlan[] = [];
  const codes: number[] = [];
  for (const path of paths) {
    const read = readPlanFile(path, io);
    if (!read.ok) {
      codes.push(Exit.usage);
      continue;
    }
    const result = checkSource(read.file, { overrides });
    const lines = new LineMap(read.file.text);
    for (const d of result.diagnostics) io.err(`${formatDiagnostic(read.file, d, lines)}\n`);
    if (hasErrors(result.diagnostics)) {
      io.out(`error  ${path}  not well-formed (run kvplan check ${path})\n`);
      codes.push(Exit.failed);
      continue;
    }
    for (const checked of result.plans) plans.push({ path, checked });
  }
  return { plans, codes };
}

/** A preset name or a JSON file; a bad one is a usage error with the reason. */
export function loadModelConfig(spec: string, io: Io): ModelConfig | undefined {
  try {
    return loadConfig(spec);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    io.err(`kvplan: --config ${spec}: ${e.message}\n`);
    return undefined;
  }
}
