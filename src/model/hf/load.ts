/**
 * A checkpoint directory as a model kvplan runs: its shape in kvplan's terms and its weights under
 * kvplan's names. Each tensor is widened from its stored dtype to float32 as it is read, one at a
 * time, so the whole model is never held as float64 (a bf16 checkpoint costs twice its size here,
 * until the backends read 16-bit weights themselves).
 */
import type { ModelConfig } from '../config.ts';
import { checkWeights, WeightError, type Weights } from '../weights.ts';
import { type Checkpoint, openCheckpoint } from './checkpoint.ts';
import { CheckpointError, toFloat32 } from './safetensors.ts';

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
    weights.set(name, { shape: [...info.shape], data: toFloat32(checkpoint.tensor(name)) });
  }
  try {
    checkWeights(config, weights);
  } catch (e) {
    if (!(e instanceof WeightError)) throw e;
    throw new CheckpointError(`${dir}: ${e.message}`);
  }
  return { checkpoint, config, weights };
}
