import type { ModelConfig } from '../../model/config.ts';
import { weightSpec } from '../../model/weights.ts';
import { GEMM_SPLIT, splitScratchBytes } from './kernels/index.ts';

/**
 * The split-K scratch the PTX backend allocates for a model at a canvas of maxRows rows, from the
 * shape alone (inspect-model reports it beside the weights): the renderer runs one GEMM per linear
 * weight, and the head's on the table when it is tied.
 */
export function modelSplitScratch(c: ModelConfig, maxRows: number, policy = GEMM_SPLIT): number {
  const gemms = weightSpec(c)
    .filter((w) => w.kind === 'linear')
    .map((w) => [w.shape[0], w.shape[1]] as [number, number]);
  if (c.tieEmbeddings) gemms.push([c.vocab, c.dModel]);
  return splitScratchBytes(gemms, maxRows, policy);
}
