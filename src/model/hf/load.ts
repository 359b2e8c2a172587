/**
 * A checkpoint directory as a model kvplan runs: its shape in kvplan's terms and its weights under
 * kvplan's names, each in the dtype it is stored in (bf16 and f16 as bit patterns). A backend
 * widens what it cannot read as it is, one tensor at a time; the CPU backend's GEMMs read 16-bit
 * weights directly.
 */
import type { ModelConfig } from '../config.ts';
import { checkWeights, WeightError, type Weights } from '../weights.ts';
import { type Checkpoint, openCheckpoint } from './checkpoint.ts';
import { CheckpointError } from './safetensors.ts';

export interface CheckpointModel {
  readonly checkpoint: Checkpoint;
  readonly config: ModelConfig;
  readonly weights: Weights;
}

/** The ModelConfig part of a checkpoint's description (the family extras dropped). */
export function modelConfig(c: Checkpoint): ModelConfig {
  const { qkNorm, blockSize: _b, ...config } = c.config;
  return qkNorm ? { ...config, qkNorm } : config;
}

/** Opens a checkpoint and reads every tensor kvplan needs; throws CheckpointError naming the problem. */
export function loadCheckpointModel(dir: string): CheckpointModel {
  const checkpoint = openCheckpoint(dir);
  const config = modelConfig(checkpoint);
  const weights: Weights = new Map();
  for (const [name, info] of checkpoint.tensors) {
    const t = checkpoint.tensor(name);
    const shape = [...info.shape];
    weights.set(
      name,
      t.dtype === 'F32'
        ? { shape, data: t.data }
        : { shape, half: t.dtype === 'BF16' ? 'bf16' : 'f16', bits: t.data },
    );
  }
  try {
    checkWeights(config, weights);
  } catch (e) {
    if (!(e instanceof WeightError)) throw e;
    throw new CheckpointError(`${dir}: ${e.message}`);
  }
  return { checkpoint, config, weights };
}
