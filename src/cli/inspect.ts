import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { modelSplitScratch } from '../backends/cuda-ptx/scratch.ts';
import { bundledPlansDir } from '../eval/bundledModels.ts';
import { ConfigError, type ModelConfig } from '../model/config.ts';
import { modelPathProblem } from '../model/fsError.ts';
import { type Checkpoint, openCheckpoint } from '../model/hf/checkpoint.ts';
import { CheckpointError } from '../model/hf/checkpointError.ts';
import { familyLabel } from '../model/hf/families.ts';
import { modelConfig } from '../model/hf/load.ts';
import { OnnxError } from '../model/onnx/error.ts';
import { parameterCount } from '../model/weights.ts';
import { maxCanvasPositions } from '../runtime/canvasLimit.ts';
import { planOnModel } from '../runtime/prepare.ts';
import { TokenizerError } from '../runtime/tokenizer.ts';
import { backendMemory, formatBytes } from '../runtime/workEstimate.ts';
import { Exit, type Io } from './io.ts';

import { loadPlans } from './plans.ts';

export interface InspectOptions {
  readonly plan?: string[];
  readonly json?: boolean;
}

/** What inspect-model reports of a model, whatever its format. */
interface Inspection {
  readonly path: string;
  readonly format: 'hf' | 'onnx';
  readonly family: string;
  readonly config: ModelConfig & { qkNorm?: boolean; blockSize?: number };
  readonly parameters: number;
  /** Stored dtype → bytes of the weights in it. */
  readonly stored: Readonly<Record<string, number>>;
  readonly files: readonly string[];
  readonly tokenizer: string;
  /** Bytes each backend holds for the weights, and the host's own copy (none for a checkpoint). */
  readonly memory: Readonly<Record<string, number>>;
  /**
   * Device memory the PTX backend takes besides the weights and the canvas: split-K partials, at
   * most this much (at kvplan's largest canvas, `rows`).
   */
  readonly scratch: { readonly ptx: number; readonly rows: number };
  readonly plans: readonly { readonly path: string; readonly plan: string; readonly fits: string }[];
}

function fromCheckpoint(c: Checkpoint): Omit<Inspection, 'plans'> {
  const stored: Record<string, number> = {};
  for (const [dtype, d] of Object.entries(c.memory.byDtype)) stored[dtype] = d.bytes;
  const tok = c.tokenizer.json
    ? `tokenizer.json${c.tokenizer.config ? ' + tokenizer_config.json' : ''}`
    : 'none (no tokenizer.json)';
  return {
    path: c.dir,
    format: 'hf',
    family: familyLabel(c.family),
    config: c.config,
    parameters: c.memory.parameters,
    stored,
    files: [...(c.index ? [c.index] : []), ...c.files],
    tokenizer: tok,
    memory: backendMemory(
      modelConfig(c),
      c.memory.byDtype.BF16 ? 'bf16' : c.memory.byDtype.F16 ? 'f16' : undefined,
      0,
    ),
    scratch: ptxScratch(modelConfig(c)),
  };
}

async function fromOnnx(path: string): Promise<Omit<Inspection, 'plans'>> {
  // The ONNX reader loads onnx-proto, which a checkpoint does not need.
  const { openModel } = await import('../runtime/openModel.ts');
  const m = openModel(path);
  const parameters = parameterCount(m.config);
  return {
    path,
    format: 'onnx',
    family: 'kvplan ONNX',
    config: m.config,
    parameters,
    stored: { F32: parameters * 4 },
    files: [path],
    tokenizer: `character (${m.config.vocab} ids)`,
    memory: backendMemory(m.config, undefined, parameters * 4),
    scratch: ptxScratch(m.config),
  };
}

const ptxScratch = (c: ModelConfig): Inspection['scratch'] => ({
  ptx: modelSplitScratch(c, maxCanvasPositions),
  rows: maxCanvasPositions,
});

/** The plans to try: the given files, else the example plans kvplan ships. */
function planFiles(given: readonly string[] | undefined): string[] {
  if (given && given.length > 0) return [...given];
  const dir = bundledPlansDir();
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.kvp'))
    .sort()
    .map((f) => join(dir, f));
}

function render(i: Inspection): string {
  const c = i.config;
  const row = (k: string, v: string | number | boolean) => `  ${k.padEnd(18)}${v}`;
  // Plan names as long as the column (elastic_cache_adaptive) keep a gap before their verdict.
  const width = Math.max(18, ...i.plans.map((p) => p.plan.length + 2));
  return [
    `${i.path}: ${i.family} (${i.format === 'hf' ? 'Hugging Face checkpoint' : 'ONNX'})`,
    row('layers', c.layers),
    row('d_model', c.dModel),
    row('heads', `${c.heads} (kv ${c.kvHeads}, head dim ${c.headDim})`),
    row('d_ff', c.dFF),
    row('vocab', `${c.vocab} (mask token ${c.maskTokenId})`),
    row('rope theta', c.ropeTheta),
    row('qkv bias', c.qkvBias),
    ...(c.qkNorm !== undefined ? [row('q/k norm', c.qkNorm)] : []),
    row('attention', `${c.attention}${c.blockSize ? ` (trained block size ${c.blockSize})` : ''}`),
    row('AR shift', c.arShift),
    row('tied embeddings', c.tieEmbeddings),
    row('parameters', i.parameters.toLocaleString('en-US')),
    row(
      'stored',
      Object.entries(i.stored)
        .map(([d, b]) => `${d} ${formatBytes(b)}`)
        .join(', '),
    ),
    row('files', i.files.length === 1 ? (i.files[0] as string) : `${i.files.length} (${i.files[0]}, …)`),
    row('tokenizer', i.tokenizer),
    row(
      'weights in memory',
      Object.entries(i.memory)
        .map(([b, n]) => `${b} ${formatBytes(n)}`)
        .join(', '),
    ),
    row(
      'ptx scratch',
      i.scratch.ptx > 0
        ? `at most ${formatBytes(i.scratch.ptx)} (split-K partials, at a canvas of ${i.scratch.rows.toLocaleString('en-US')} rows)`
        : 'none (no GEMM of this model splits K)',
    ),
    ...(i.plans.length > 0
      ? ['  plans:', ...i.plans.map((p) => `    ${p.plan.padEnd(width)}${p.fits}`)]
      : []),
    '',
  ].join('\n');
}

/** `kvplan inspect-model`: what a checkpoint or model file is, what it costs, which plans fit it. */
export async function runInspect(path: string, o: InspectOptions, io: Io): Promise<number> {
  const problem = modelPathProblem(path);
  if (problem !== undefined) {
    io.err(`kvplan: ${path}: ${problem}\n`);
    return Exit.usage;
  }
  let base: Omit<Inspection, 'plans'>;
  try {
    base = statSync(path).isDirectory() ? fromCheckpoint(openCheckpoint(path)) : await fromOnnx(path);
  } catch (e) {
    if (
      !(
        e instanceof CheckpointError ||
        e instanceof OnnxError ||
        e instanceof TokenizerError ||
        e instanceof ConfigError
      )
    )
      throw e;
    io.err(`kvplan: ${e.message}\n`);
    return Exit.failed;
  }
  const { plans: loaded, codes } = loadPlans(planFiles(o.plan), new Map(), io);
  const plans = loaded.map((p) => {
    const fit = planOnModel(p.checked, base.config);
    const fits = !fit.ok ? `no: ${fit.error}` : fit.warning ? `yes, with a warning: ${fit.warning}` : 'yes';
    return { path: p.path, plan: p.checked.plan.name, fits };
  });
  const inspection: Inspection = { ...base, plans };
  io.out(o.json ? `${JSON.stringify(inspection, null, 2)}\n` : render(inspection));
  return Math.max(Exit.ok, ...codes);
}
