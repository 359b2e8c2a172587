import type { PredictionStats } from '../runtime/runner.ts';

/**
 * The softmax statistics of n rows as a device kernel writes them, in one buffer of 4n floats read
 * back at once: confidence, margin and entropy of row r at 3r..3r+2, its argmax at 3n + r (-1 for a
 * row that is not finite). The argmax is a float so that one buffer of floats carries it all:
 * exact for vocabularies of up to 2^24 tokens, which the runners check before they ask for it.
 */
export function unpackStats(out: Float32Array): PredictionStats {
  const n = out.length / 4;
  return { stats: new Float64Array(out.subarray(0, 3 * n)), argmax: Int32Array.from(out.subarray(3 * n)) };
}

/** Device statistics carry the argmax as a float: every index is exact up to 2^24 tokens. */
export const deviceStatsFit = (vocab: number): boolean => vocab <= 2 ** 24;
