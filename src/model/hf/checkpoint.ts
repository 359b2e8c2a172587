/**
 * A Hugging Face dLLM checkpoint directory (config.json, safetensors, tokenizer files), opened and
 * checked against its config without reading any tensor data: every tensor kvplan needs must be
 * there with the shape the config implies, and nothing else may be (an unknown tensor means an
 * architecture kvplan would silently get wrong). Tensors are then read one at a time, in their
 * stored dtype. See docs/checkpoints.md.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { tensorCount, weightSpec } from '../weights.ts';
import { CheckpointError } from './checkpointError.ts';
import { type CheckpointModel, describeConfig, type Family, familyLabel, tensorName } from './families.ts';
import {
  openSafetensors,
  quoted,
  readJsonFile,
  readTensor,
  type StoredDtype,
  type StoredTensor,
  type TensorInfo,
} from './safetensors.ts';

export interface CheckpointTensor extends TensorInfo {
  /** kvplan's name for it (`name` is the checkpoint's). */
  canonical: string;
}

export interface WeightMemory {
  /** Scalars. */
  parameters: number;
  /** Bytes in the stored dtypes. */
  bytes: number;
  byDtype: Partial<Record<StoredDtype, { tensors: number; parameters: number; bytes: number }>>;
}

export interface Checkpoint {
  dir: string;
  family: Family;
  config: CheckpointModel;
  /** Every tensor kvplan reads, by canonical name, in `weightSpec` order. */
  tensors: ReadonlyMap<string, CheckpointTensor>;
  /** Parameters and bytes of those tensors, in their stored dtypes. */
  memory: WeightMemory;
  /** The index file, when sharded. */
  index: string | undefined;
  /** The safetensors files. */
  files: string[];
  /** Tokenizer files present in the directory. */
  tokenizer: { json: string | undefined; config: string | undefined };
  /** Stored tensors kvplan does not read: an output head saved although the embeddings are tied. */
  ignored: string[];
  /** Reads one tensor, by canonical name, into its stored dtype. */
  tensor(canonical: string): StoredTensor;
}

/** Memory of a set of tensors in their stored dtypes, from their headers alone. */
export function weightMemory(tensors: Iterable<TensorInfo>): WeightMemory {
  const out: WeightMemory = { parameters: 0, bytes: 0, byDtype: {} };
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const d = out.byDtype[t.dtype] ?? { tensors: 0, parameters: 0, bytes: 0 };
    d.tensors++;
    d.parameters += n;
    d.bytes += t.byteLength;
    out.byDtype[t.dtype] = d;
    out.parameters += n;
    out.bytes += t.byteLength;
  }
  return out;
}

/** At most this many names per kind of problem; the rest are counted. */
const listed = 8;

const some = (items: string[]): string =>
  items.slice(0, listed).join(', ') + (items.length > listed ? `, and ${items.length - listed} more` : '');

const showShape = (s: readonly number[]): string => `[${s.join(', ')}]`;

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * Opens a checkpoint directory: detects the family from config.json, reads and validates the
 * safetensors headers (single or sharded), and checks every tensor kvplan needs against the
 * config. Reads no tensor data. Every problem is a CheckpointError naming the file.
 */
export function openCheckpoint(dir: string): Checkpoint {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new CheckpointError(`${dir}: not a checkpoint directory`);
  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath))
    throw new CheckpointError(`${dir}: no config.json (not a Hugging Face checkpoint?)`);
  const { family, config } = describeConfig(readJsonFile(configPath), configPath, basename(resolve(dir)));
  const label = familyLabel(family);
  const set = openSafetensors(dir);

  // A config claiming far more layers than the files hold is refused before its tensors are listed.
  const expected = tensorCount(config);
  if (expected > set.tensors.size + 1024)
    throw new CheckpointError(
      `${configPath}: describes a ${label} model of ${config.layers.toLocaleString('en-US')} layers, ` +
        `${expected.toLocaleString('en-US')} tensors, but the checkpoint holds ${set.tensors.size}`,
    );

  const tensors = new Map<string, CheckpointTensor>();
  const missing: string[] = [];
  const misshapen: string[] = [];
  for (const w of weightSpec(config)) {
    const name = tensorName(family, w.name);
    const info = set.tensors.get(name);
    if (info === undefined) missing.push(`${quoted(name)} ${showShape(w.shape)}`);
    else if (info.shape.length !== w.shape.length || info.shape.some((n, i) => n !== w.shape[i]))
      misshapen.push(`${quoted(name)} is ${showShape(info.shape)}, expected ${showShape(w.shape)}`);
    else tensors.set(w.name, { ...info, canonical: w.name });
  }
  const used = new Set([...tensors.values()].map((t) => t.name));
  const tiedHead = config.tieEmbeddings ? tensorName(family, 'lm_head.weight') : undefined;
  const ignored: string[] = [];
  const unexpected: string[] = [];
  for (const name of set.tensors.keys()) {
    if (used.has(name)) continue;
    if (name === tiedHead) ignored.push(name);
    else unexpected.push(quoted(name));
  }
  if (missing.length + misshapen.length + unexpected.length > 0) {
    const problems = [
      missing.length ? `${plural(missing.length, 'missing tensor')}: ${some(missing)}` : '',
      misshapen.length
        ? `${plural(misshapen.length, 'tensor')} with the wrong shape: ${some(misshapen)}`
        : '',
      unexpected.length
        ? `${plural(unexpected.length, 'tensor')} a ${label} model of this config does not have: ${some(unexpected)}`
        : '',
    ].filter((p) => p !== '');
    throw new CheckpointError(
      `${set.index ?? set.files[0]}: does not match ${configPath}; ${problems.join('; ')}`,
    );
  }

  const present = (f: string): string | undefined => (existsSync(join(dir, f)) ? join(dir, f) : undefined);
  return {
    dir,
    family,
    config,
    tensors,
    memory: weightMemory(tensors.values()),
    index: set.index,
    files: set.files,
    tokenizer: { json: present('tokenizer.json'), config: present('tokenizer_config.json') },
    ignored,
    tensor(canonical: string): StoredTensor {
      const info = tensors.get(canonical);
      if (info === undefined)
        throw new CheckpointError(
          `${dir}: the ${label} checkpoint has no tensor kvplan calls "${canonical}"`,
        );
      return readTensor(info);
    },
  };
}
