import { existsSync, statSync } from 'node:fs';
import { type CheckedPlan, checkSource } from '../dsl/check.ts';
import { byPosition, formatDiagnostic, hasErrors } from '../dsl/diagnostics.ts';
import { layerScopeDiagnostics } from '../dsl/semantics/layerDepth.ts';
import { LineMap, type SourceFile } from '../dsl/source.ts';
import { ConfigError, loadConfig, type ModelConfig } from '../model/config.ts';
import { openCheckpoint } from '../model/hf/checkpoint.ts';
import { modelConfig } from '../model/hf/load.ts';
import { CheckpointError } from '../model/hf/safetensors.ts';
import { Exit, type Io, readPlanFile } from './io.ts';

export interface LoadedPlan {
  readonly path: string;
  readonly file: SourceFile;
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
    for (const checked of result.plans) plans.push({ path, file: read.file, checked });
  }
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
  for (const d of ds) io.err(`${formatDiagnostic(plan.file, d, lines)}\n`);
  return ds.length === 0;
}

/**
 * A preset name, a JSON file, or a Hugging Face checkpoint directory (its config.json and tensor
 * headers, no weights read); a bad one is a usage error with the reason.
 */
export function loadModelConfig(spec: string, io: Io): ModelConfig | undefined {
  try {
    if (existsSync(spec) && statSync(spec).isDirectory()) return modelConfig(openCheckpoint(spec));
    return loadConfig(spec);
  } catch (e) {
    if (!(e instanceof ConfigError || e instanceof CheckpointError)) throw e;
    io.err(`kvplan: --config ${spec}: ${e.message}\n`);
    return undefined;
  }
}
