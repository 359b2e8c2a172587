/**
 * The cache parts drift scores compare with (`key_drift`, `value_drift`, `hidden_drift`): where a
 * backend keeps each, and how its rows are shaped, so that every runner hands them to the host alike.
 */
import { resources } from '../ir/names.ts';
import { float32Tensor, type HostTensor } from '../ir/tensor.ts';
import type { ModelConfig } from '../model/config.ts';

/** A part of a layer's cache that drift scores read: its K, its V, or the hidden state it outputs. */
export type CachePart = 'k' | 'v' | 'hidden';

/** The resource of a layer that holds a cache part. */
export const cachePartResource = (part: CachePart, layer: number): string =>
  part === 'hidden' ? resources.feature('hidden', layer) : resources.kv(part, layer);

/** The shape of a row of a cache part. */
export const cachePartRow = (part: CachePart, c: ModelConfig): readonly number[] =>
  part === 'hidden' ? [c.dModel] : [c.kvHeads, c.headDim];

/**
 * A cache part of a layer over L rows, from where a backend keeps it: `floats(resource, count)`
 * gives its first `count` floats, or undefined when the plan has no such resource.
 */
export function cachePartTensor(
  part: CachePart,
  layer: number,
  c: ModelConfig,
  L: number,
  floats: (resource: string, count: number) => ArrayLike<number> | undefined,
): HostTensor | undefined {
  const row = cachePartRow(part, c);
  const v = floats(cachePartResource(part, layer), L * row.reduce((a, b) => a * b, 1));
  if (!v) return undefined;
  // A view, valid until the runner runs again (StepRunner.cachePart). A float32 cache stays float32
  // until read as float64.
  const shape = [L, ...row];
  return v instanceof Float32Array ? float32Tensor(shape, v) : { shape, data: new Float64Array(v) };
}
