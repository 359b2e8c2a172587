import { existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { closest } from '../dsl/suggest.ts';
import { ConfigError, loadConfig, type ModelConfig } from '../model/config.ts';
import { describeFsError } from '../model/fsError.ts';
import { familyTokenizer, writeTokenizerFiles } from '../model/hf/bpe.ts';
import { CheckpointError } from '../model/hf/checkpointError.ts';
import { describeConfig, type Family, familyLabel } from '../model/hf/families.ts';
import { readJsonFile, type StoredDtype } from '../model/hf/safetensors.ts';
import {
  asFamilyModel,
  CheckpointWriteError,
  checkWritable,
  defaultShardBytes,
  freeDiskBytes,
  smallShape,
  writeCheckpoint,
} from '../model/hf/write.ts';
import { randomWeights, WeightError } from '../model/weights.ts';
import { CharTokenizer, defaultAlphabet } from '../runtime/tokenizer.ts';
import { parseByteSize } from './byteSize.ts';
import { families } from './commands/makeModel.ts';
import { checkOutputFile, Exit, type Io, makeOutputDir, writingTo } from './io.ts';
import { loadModelConfig } from './modelConfig.ts';

export interface MakeModelOptions {
  readonly config?: string;
  readonly seed: number;
  readonly output: string;
  readonly maxPositions?: number;
  readonly format: string;
  readonly family?: string;
  readonly dtype?: string;
  readonly shardSize?: string;
}

/** `kvplan make-model`: a random-weight model of any configuration, as an ONNX file or a Hugging Face checkpoint. */
export async function runMakeModel(o: MakeModelOptions, io: Io): Promise<number> {
  if (o.format === 'hf') return runMakeCheckpoint(o, io);
  if (o.format !== 'onnx') {
    io.err(`kvplan: --format must be onnx or hf (got '${o.format}')\n`);
    return Exit.usage;
  }
  const hfOnly = (
    [
      ['--family', o.family],
      ['--dtype', o.dtype],
      ['--shard-size', o.shardSize],
    ] as const
  )
    .filter(([, v]) => v !== undefined)
    .map(([flag]) => flag);
  if (hfOnly.length > 0) {
    io.err(`kvplan: ${hfOnly.join(', ')} ${hfOnly.length === 1 ? 'applies' : 'apply'} to --format hf only\n`);
    return Exit.usage;
  }
  return runMakeOnnx(o, io);
}

async function runMakeOnnx(o: MakeModelOptions, io: Io): Promise<number> {
  const { seed } = o;
  const maxPositions = o.maxPositions ?? 4096;
  const config = loadModelConfig(o.config ?? 'small', io);
  if (!config) return Exit.usage;
  if (!checkOutputFile(o.output, io)) return Exit.usage;
  // The ONNX writer loads onnx-proto, which a checkpoint does not need.
  const { exportOnnx } = await import('../model/onnx/export.ts');
  try {
    const tokenizer = new CharTokenizer(
      defaultAlphabet(config.vocab, config.maskTokenId),
      config.maskTokenId,
    );
    const bytes = exportOnnx(config, randomWeights(config, seed), {
      maxPositions,
      tokenizer: tokenizer.toJSON(),
    });
    if (!writingTo(o.output, io, () => writeFileSync(o.output, bytes))) return Exit.usage;
    io.err(
      `wrote ${o.output} (${config.name}, ${(bytes.length / 1e6).toFixed(2)} MB, alphabet ${JSON.stringify(tokenizer.chars)})\n`,
    );
    return Exit.ok;
  } catch (e) {
    if (!(e instanceof WeightError || e instanceof ConfigError)) throw e;
    io.err(`kvplan: ${e.message}\n`);
    return Exit.usage;
  }
}

const dtypes: Readonly<Record<string, StoredDtype>> = { bf16: 'BF16', f16: 'F16', f32: 'F32' };

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

type Shape = ModelConfig & { blockSize?: number };

/**
 * The shape `--config` names for a checkpoint: a preset, a kvplan JSON config, a Hugging Face
 * config.json (or a checkpoint directory holding one) whose family it also names. Throws
 * ConfigError or CheckpointError.
 */
function checkpointShape(spec: string): { shape: Shape; family?: Family } {
  const isDir = existsSync(spec) && statSync(spec).isDirectory();
  const file = isDir ? join(spec, 'config.json') : spec;
  if (isDir || (spec.toLowerCase().endsWith('.json') && existsSync(spec))) {
    const json = readJsonFile(file);
    if (isRecord(json) && (json.model_type !== undefined || json.architectures !== undefined)) {
      const name = basename(isDir ? spec : spec.replace(/\.json$/i, ''));
      const { family, config } = describeConfig(json, file, name);
      return { shape: config, family };
    }
  }
  return { shape: loadConfig(spec) };
}

const count = (n: number): string => n.toLocaleString('en-US');

/** Ids [from, to) for a message. */
const idRange = (from: number, to: number): string => `${count(from)}–${count(to - 1)}`;

/** `make-model --format hf`: a random checkpoint directory in a family's layout, with its tokenizer. */
function runMakeCheckpoint(o: MakeModelOptions, io: Io): number {
  const usage = (msg: string): number => {
    io.err(`kvplan: ${msg}\n`);
    return Exit.usage;
  };
  if (o.family === undefined) return usage(`--format hf needs --family (${families.join(', ')})`);
  if (!(families as readonly string[]).includes(o.family)) {
    const hit = closest(o.family, families);
    return usage(
      `--family must be one of ${families.join(', ')} (got '${o.family}')${hit ? `; did you mean '${hit}'?` : ''}`,
    );
  }
  const family = o.family as Family;
  if (o.maxPositions !== undefined) return usage('--max-positions applies to --format onnx only');
  const dtype = dtypes[(o.dtype ?? 'bf16').toLowerCase()];
  if (dtype === undefined) return usage(`--dtype must be bf16, f16 or f32 (got '${o.dtype}')`);
  const { seed } = o;
  const shardBytes = o.shardSize === undefined ? defaultShardBytes : parseByteSize(o.shardSize);
  if (shardBytes === undefined)
    return usage(`--shard-size must be a size such as 2GB, 500MB or 1GiB (got '${o.shardSize}')`);

  let shape: Shape;
  try {
    const given = o.config === undefined ? { shape: smallShape(family) } : checkpointShape(o.config);
    if (given.family !== undefined && given.family !== family)
      return usage(
        `--config ${o.config} is a ${familyLabel(given.family)} config; it cannot be written with --family ${family}`,
      );
    shape = given.shape;
  } catch (e) {
    if (!(e instanceof ConfigError || e instanceof CheckpointError)) throw e;
    return usage(`--config ${o.config}: ${e.message}`);
  }
  let model: ReturnType<typeof asFamilyModel>;
  try {
    model = asFamilyModel(family, shape);
  } catch (e) {
    if (!(e instanceof CheckpointWriteError)) throw e;
    return usage(`${o.config === undefined ? '' : `--config ${o.config}: `}${e.message}`);
  }

  const out = o.output;
  const existed = existsSync(out);
  if (existed && !statSync(out).isDirectory()) return usage(`-o ${out} exists and is not a directory`);
  if (existed && readdirSync(out).length > 0)
    return usage(`-o ${out} is not empty; make-model writes a checkpoint into a new or empty directory`);
  if (!makeOutputDir(out, io)) return Exit.usage;
  try {
    checkWritable(model, dtype, freeDiskBytes(out));
  } catch (e) {
    if (!(e instanceof CheckpointWriteError)) throw e;
    io.err(`kvplan: ${e.message}\n`);
    if (!existed) rmSync(out, { recursive: true, force: true });
    return Exit.failed;
  }

  const tokenizer = familyTokenizer(family, model);
  const start = performance.now();
  try {
    const files: { path: string; bytes: number }[] = [];
    const written = writeCheckpoint(
      out,
      family,
      model,
      { seed },
      { dtype, shardBytes, ...('reason' in tokenizer ? {} : { tokenIds: tokenizer.ids }) },
    );
    files.push(...written.files);
    if (!('reason' in tokenizer)) files.push(...writeTokenizerFiles(out, tokenizer));
    const seconds = (performance.now() - start) / 1000;
    const total = files.reduce((a, f) => a + f.bytes, 0);
    const width = Math.max(...files.map((f) => basename(f.path).length));
    io.err(
      `wrote ${out}: ${familyLabel(family)} checkpoint, ${dtype}, ${model.layers} layers, d_model ${model.dModel}, vocab ${count(model.vocab)}, seed ${seed}\n` +
        files
          .map((f) => `  ${basename(f.path).padEnd(width)}  ${count(f.bytes).padStart(16)} bytes\n`)
          .join('') +
        `  ${count(written.parameters)} parameters in ${count(written.tensors)} tensors; ${count(total)} bytes in ${files.length} files, ${seconds.toFixed(1)} s\n` +
        ('reason' in tokenizer
          ? `  no tokenizer: ${tokenizer.reason}; give prompts as ids (--prompt-ids)\n`
          : `  tokenizer: byte-level BPE; ids ${idRange(0, tokenizer.learned)} bytes and merges, ${tokenizer.firstSpecial > tokenizer.learned ? `${idRange(tokenizer.learned, tokenizer.firstSpecial)} placeholders, ` : ''}${idRange(tokenizer.firstSpecial, tokenizer.size)} special tokens (mask ${model.maskTokenId})\n`),
    );
    return Exit.ok;
  } catch (e) {
    if (e instanceof CheckpointWriteError) io.err(`kvplan: ${e.message}\n`);
    else if (typeof (e as { code?: unknown } | null)?.code === 'string')
      io.err(`kvplan: cannot write ${out}: ${describeFsError(e)}\n`);
    else throw e;
    // The directory was new or empty: whatever is in it now was written here.
    if (!existed) rmSync(out, { recursive: true, force: true });
    else if (existsSync(out)) for (const f of readdirSync(out)) rmSync(join(out, f), { force: true });
    return Exit.failed;
  }
}
