/**
 * A checkpoint directory as a model kvplan runs: its shape in kvplan's terms and its weights under
 * kvplan's names, read on demand in the dtype they are stored in (bf16 and f16 as bit patterns).
 * A backend widens what it cannot read as it is, one tensor at a time; the CPU backend's GEMMs
 * and embedding gather read 16-bit weights directly.
 */
import type { ModelConfig } from '../config.ts';
import type { Weights } from '../weights.ts';
import { type Checkpoint, openCheckpoint } from './checkpoint.ts';
import { StoredWeights } from './storedWeights.ts';

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

/**
 * Opens a checkpoint: its headers are validated against its config (every tensor present with
 * its shape, nothing unknown) and no tensor is read; each is read, and checked to be finite, when
 * a backend asks for it. Throws CheckpointError naming the problem.
 */
export function loadCheckpointModel(dir: string): CheckpointModel {
  const checkpoint = openCheckpoint(dir);
  return { checkpoint, config: modelConfig(checkpoint), weights: new StoredWeights(checkpoint) };
}
