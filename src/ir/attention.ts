/**
 * Float64 reference kernels for attention and its relatives. Layouts are row-major and flat:
 * q is [NQ, H, hd], k and v are [NK, KVH, hd], o is [NQ, H, hd], lse is [NQ, H]. Positions
 * (qpos, kpos) are canvas positions; `blocks` and `seqs` are indexed by canvas position (block -1
 * for the prompt; the sequence of each row when a batch shares the canvas).
 * LSE uses the natural log. A row that sees no key has o = 0 and lse = -Infinity, never NaN.
 */
export type MaskKind = 'none' | 'block_causal';

export interface AttentionOptions {
  readonly scale: number;
  readonly mask: MaskKind;
  /** Block of each canvas position; required for `block_causal`. */
  readonly blocks?: Int32Array | undefined;
  /** Sequence of each canvas position: a query sees only keys of its own sequence. */
  readonly seqs?: Int32Array | undefined;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /**
   * Only the query heads of this KV head's group are computed; every other head gets output 0 and
   * LSE -Infinity, the partial of an empty key set, so that merging one such partial per KV head
   * gives attention with a key set per KV head.
   */
  readonly kvHead?: number | undefined;
}

export interface Partial {
  /** [NQ, H, hd] */
  readonly o: Float64Array;
  /** [NQ, H], natural log */
  readonly lse: Float64Array;
}

export type ShapeOptions = Pick<AttentionOptions, 'heads' | 'kvHeads' | 'headDim'>;

function checkLayout(
  q: Float64Array,
  k: Float64Array,
  nq: number,
  nk: number,
  { heads, kvHeads, headDim }: ShapeOptions,
): number {
  if (!(heads > 0 && kvHeads > 0 && heads % kvHeads === 0)) {
    throw new Error(`${heads} query heads cannot share ${kvHeads} kv heads`);
  }
  if (q.length !== nq * heads * headDim)
    throw new Error(`q has ${q.length} values, expected ${nq}x${heads}x${headDim}`);
  if (k.length !== nk * kvHeads * headDim) {
    throw new Error(`k has ${k.length} values, expected ${nk}x${kvHeads}x${headDim}`);
  }
  return heads / kvHeads;
}

/** A predicate `visible(i, j)` for query row i and key row j, or null when every key is visible. */
function visibility(
  qpos: Int32Array,
  kpos: Int32Array,
  mask: MaskKind,
  blocks: Int32Array | undefined,
  seqs: Int32Array | undefined,
): ((i: number, j: number) => boolean) | null {
  if (mask !== 'none' && mask !== 'block_causal') throw new Error(`unknown mask ${String(mask)}`);
  if (mask === 'block_causal' && blocks === undefined) throw new Error('a block_causal mask needs blocks');
  const at =
    (table: Int32Array) =>
    (p: number): number => {
      if (!(p >= 0 && p < table.length))
        throw new Error(`position ${p} is outside the canvas (${table.length})`);
      return table[p] as number;
    };
  const tags = (table: Int32Array | undefined) =>
    table && { q: Int32Array.from(qpos, at(table)), k: Int32Array.from(kpos, at(table)) };
  const b = mask === 'block_causal' ? tags(blocks) : undefined;
  const s = tags(seqs);
  if (!b && !s) return null;
  return (i, j) => (!b || (b.k[j] as number) <= (b.q[i] as number)) && (!s || s.k[j] === s.q[i]);
}

/**
 * Visits every (query row, query head) pair with the scaled scores of the keys it may see and
 * their maximum; rows that see no key are reported to `empty` instead.
 */
function forEachScoreRow(
  q: Float64Array,
  k: Float64Array,
  qpos: Int32Array,
  kpos: Int32Array,
  opts: AttentionOptions,
  visit: (i: number, h: number, g: number, scores: Float64Array, seen: Uint8Array, max: number) => void,
  empty: (i: number, h: number) => void,
): void {
  const nq = qpos.length;
  const nk = kpos.length;
  const { heads, kvHeads, headDim: hd, scale } = opts;
  const group = checkLayout(q, k, nq, nk, opts);
  const visible = visibility(qpos, kpos, opts.mask, opts.blocks, opts.seqs);
  const s = new Float64Array(nk);
  const seen = new Uint8Array(nk);
  for (let i = 0; i < nq; i++) {
    let any = false;
    for (let j = 0; j < nk; j++) {
      const vis = visible === null || visible(i, j);
      seen[j] = vis ? 1 : 0;
      any ||= vis;
    }
    if (!any) {
      for (let h = 0; h < heads; h++) empty(i, h);
      continue;
    }
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / group);
      if (opts.kvHead !== undefined && g !== opts.kvHead) {
        empty(i, h);
        continue;
      }
      const qo = (i * heads + h) * hd;
      let m = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < nk; j++) {
        if (!seen[j]) continue;
        const ko = (j * kvHeads + g) * hd;
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += (q[qo + d] as number) * (k[ko + d] as number);
        const x = dot * scale;
        s[j] = x;
        if (!(x <= m)) m = x; // also lets a NaN score poison the row
      }
      visit(i, h, g, s, seen, m);
    }
  }
}

/** Attention of the queries over the given keys: the partial state (O, LSE) per row and head. */
export function attentionPartial(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  qpos: Int32Array,
  kpos: Int32Array,
  opts: AttentionOptions,
): Partial {
  const { heads, kvHeads, headDim: hd } = opts;
  if (v.length !== k.length) throw new Error(`v has ${v.length} values, k has ${k.length}`);
  const o = new Float64Array(qpos.length * heads * hd);
  const lse = new Float64Array(qpos.length * heads);
  const visit = (i: number, h: number, g: number, s: Float64Array, seen: Uint8Array, m: number) => {
    const r = i * heads + h;
    const qo = r * hd;
    let sum = 0;
    for (let j = 0; j < kpos.length; j++) {
      if (!seen[j]) continue;
      const w = Math.exp((s[j] as number) - m);
      sum += w;
      const vo = (j * kvHeads + g) * hd;
      for (let d = 0; d < hd; d++) o[qo + d] = (o[qo + d] as number) + w * (v[vo + d] as number);
    }
    for (let d = 0; d < hd; d++) o[qo + d] = (o[qo + d] as number) / sum;
    lse[r] = m + Math.log(sum);
  };
  // o stays 0 for a row that sees no key.
  const empty = (i: number, h: number) => {
    lse[i * heads + h] = Number.NEGATIVE_INFINITY;
  };
  forEachScoreRow(q, k, qpos, kpos, opts, visit, empty);
  return { o, lse };
}

/**
 * Merges two partials over disjoint key sets by the log-sum-exp rule. Two empty partials
 * (LSE -Infinity) give o = 0 and LSE -Infinity.
 */
export function mergePartials(
  o1: Float64Array,
  lse1: Float64Array,
  o2: Float64Array,
  lse2: Float64Array,
  headDim: number,
): Partial {
  const rows = lse1.length;
  if (lse2.length !== rows || o1.length !== rows * headDim || o2.length !== rows * headDim) {
    throw new Error(`partials differ in size: o ${o1.length}/${o2.length}, lse ${rows}/${lse2.length}`);
  }
  const o = new Float64Array(rows * headDim);
  const lse = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const l1 = lse1[r] as number;
    const l2 = lse2[r] as number;
    const m = Math.max(l1, l2);
    if (m === Number.NEGATIVE_INFINITY) {
      lse[r] = Number.NEGATIVE_INFINITY;
      continue;
    }
    const w1 = Math.exp(l1 - m);
    const w2 = Math.exp(l2 - m);
    const total = w1 + w2;
    const a = w1 / total;
    const b = w2 / total;
    const base = r * headDim;
    for (let d = 0; d < headDim; d++) {
      // A side with weight 0 contributes nothing, even if its output were not finite.
      const x = a === 0 ? 0 : a * (o1[base + d] as number);
      const y = b === 0 ? 0 : b * (o2[base + d] as number);
      o[base + d] = x + y;
    }
    lse[r] = m + Math.log(total);
  }
  return { o, lse };
}

/**
 * The attention probability each key receives, summed over all query rows and query heads
 * (same masking as attentionPartial; a query that sees no key contributes nothing): [NK]; or, with
 * `perKvHead`, summed over the query heads of each KV head's group: [NK, KVH].
 */
export function attentionMass(
  q: Float64Array,
  k: Float64Array,
  qpos: Int32Array,
  kpos: Int32Array,
  opts: AttentionOptions,
  perKvHead = false,
): Float64Array {
  const nk = kpos.length;
  const width = perKvHead ? opts.kvHeads : 1;
  const mass = new Float64Array(nk * width);
  const visit = (_i: number, _h: number, g: number, s: Float64Array, seen: Uint8Array, m: number) => {
    const col = perKvHead ? g : 0;
    let sum = 0;
    for (let j = 0; j < nk; j++) if (seen[j]) sum += Math.exp((s[j] as number) - m);
    for (let j = 0; j < nk; j++)
      if (seen[j])
        mass[j * width + col] = (mass[j * width + col] as number) + Math.exp((s[j] as number) - m) / sum;
  };
  forEachScoreRow(q, k, qpos, kpos, opts, visit, () => {});
  return mass;
}

/**
 * For each key j: the mean over query rows i and query heads h of q[i,h] · k[j, kv head of h]
 * (no scale). With no query rows every key scores 0. [NK]
 */
export function queryKey(
  q: Float64Array,
  k: Float64Array,
  nq: number,
  nk: number,
  opts: ShapeOptions,
): Float64Array {
  const { heads, kvHeads, headDim: hd } = opts;
  const group = checkLayout(q, k, nq, nk, opts);
  // Sum the queries of each kv-head group first: mean_i,h q·k = (sum_i,h q) · k / (NQ H).
  const qsum = new Float64Array(kvHeads * hd);
  for (let i = 0; i < nq; i++) {
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / group);
      const qo = (i * heads + h) * hd;
      for (let d = 0; d < hd; d++) qsum[g * hd + d] = (qsum[g * hd + d] as number) + (q[qo + d] as number);
    }
  }
  const out = new Float64Array(nk);
  if (nq === 0) return out;
  const denom = nq * heads;
  for (let j = 0; j < nk; j++) {
    let acc = 0;
    for (let g = 0; g < kvHeads; g++) {
      const ko = (j * kvHeads + g) * hd;
      for (let d = 0; d < hd; d++) acc += (qsum[g * hd + d] as number) * (k[ko + d] as number);
    }
    out[j] = acc / denom;
  }
  return out;
}
