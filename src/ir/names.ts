/**
 * Every name the lowering gives a stage, an index list or a persistent resource, and that the
 * inspector, the passes and the runners look up: built here only, so that a rename is one edit and
 * a typo is a type error rather than a missing input at run time.
 */

/** The stage that runs layer `l`. */
export const layerStage = (l: number): string => `layer.${l}`;

/** Index lists of a layer stage, built by the inspector each step. */
export const lists = {
  /** The rows the layer recomputes. */
  rows: (l: number): string => `rows.${l}`,
  /** The keys its queries attend to, or those of one split segment. */
  keys: (l: number, segment?: string): string =>
    segment === undefined ? `keys.${l}` : `keys.${l}.${segment}`,
  /** The keys the query heads of KV head `g` attend to, when each KV head has its own. */
  headKeys: (l: number, g: number): string => `keys.${l}.kv_head.${g}`,
  /** The rows a cache rule (by its index in the plan) writes. */
  write: (l: number, rule: number): string => `write.${l}.${rule}`,
  /** Rows whose input comes from the hidden-state cache of the layer below. */
  restore: (l: number): string => `restore.${l}`,
  /** Rows that carry their residual stream on with cached attention and FFN outputs. */
  delta: (l: number): string => `delta.${l}`,
  /** The positions RoPE rotates the rows of `rows(l)` by (their positions in their own sequence). */
  positions: (l: number): string => `pos.${l}`,
} as const;

/** Cache kinds stored as one row of the model width per canvas row (every kind but `kv`). */
export const featureKinds = ['attn', 'ffn', 'hidden'] as const;
export type FeatureKind = (typeof featureKinds)[number];
export const isFeatureKind = (k: string): k is FeatureKind => (featureKinds as readonly string[]).includes(k);

/** Persistent resources: caches by kind and the partials of reused split segments. */
export const resources = {
  kv: (part: 'k' | 'v', l: number): string => `kv.${part}.${l}`,
  feature: (kind: FeatureKind, l: number): string => `${kind}.${l}`,
  partial: (part: 'o' | 'lse', l: number, segment: string): string => `partial.${part}.${l}.${segment}`,
} as const;

/** The Hugging Face name of a weight of layer `l` (`self_attn.q_proj.weight`, ...). */
export const layerWeight = (l: number, name: string): string => `model.layers.${l}.${name}`;

/** The layer a stage runs, or undefined for the embedding and the head. */
export function layerOfStage(stage: string): number | undefined {
  const m = /^layer\.(\d+)$/.exec(stage);
  return m ? Number(m[1]) : undefined;
}
