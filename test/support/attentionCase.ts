/**
 * Random inputs of kv_attention and one call of it: a case holds query rows, a canvas of keys and
 * values (L rows of kvh heads), the rows' positions, the keys' positions (repeats allowed) and,
 * half the time, block-causal blocks.
 */
import type { Primitives } from '../../src/backends/cpu/primitives.ts';
import { randFloats, randIndices, randInt, rng } from './random.ts';

export interface AttentionCase {
  nq: number;
  nk: number;
  heads: number;
  kvh: number;
  hd: number;
  L: number;
  scale: number;
  q: Float32Array;
  kc: Float32Array;
  vc: Float32Array;
  qpos: Int32Array;
  kpos: Int32Array;
  blocks: Int32Array | null;
  seqs?: Int32Array;
}

export function makeAttentionCase(
  seed: number,
  shape: Partial<AttentionCase> & { amp?: number } = {},
): AttentionCase {
  const r = rng(seed);
  const kvhChoices = [1, 1, 2, 4];
  const kvh = shape.kvh ?? (kvhChoices[randInt(r, 0, kvhChoices.length - 1)] as number);
  const heads = shape.heads ?? kvh * randInt(r, 1, 4);
  const hdChoices = [1, 5, 8, 16, 20, 32, 64, 72];
  const hd = shape.hd ?? (hdChoices[randInt(r, 0, hdChoices.length - 1)] as number);
  const nq = shape.nq ?? randInt(r, 1, 70);
  const nk = shape.nk ?? randInt(r, 0, 150);
  const L = shape.L ?? Math.max(nq, nk, 1) + randInt(r, 0, 20);
  const amp = shape.amp ?? 1;
  const blocks =
    shape.blocks !== undefined
      ? shape.blocks
      : r() < 0.5
        ? Int32Array.from({ length: L }, (_, i) => (i < L / 4 ? -1 : Math.floor(i / 8)))
        : null;
  return {
    nq,
    nk,
    heads,
    kvh,
    hd,
    L,
    scale: shape.scale ?? 1 / Math.sqrt(Math.max(hd, 1)),
    q: randFloats(r, nq * heads * hd, amp),
    kc: randFloats(r, L * kvh * hd, amp),
    vc: randFloats(r, L * kvh * hd),
    qpos: shape.qpos ?? randIndices(r, nq, L),
    kpos: shape.kpos ?? randIndices(r, nk, L),
    blocks,
  };
}

/**
 * The attention of a case (its own keys, or `kpos`), o and lse filled with NaN first so that an
 * output the kernel leaves unwritten shows; with `threads`, set first.
 */
export function runAttention(
  p: Primitives,
  t: AttentionCase,
  opts: { threads?: number; kpos?: Int32Array } = {},
): { o: Float32Array; lse: Float32Array } {
  if (opts.threads !== undefined) p.setThreads(opts.threads);
  const kpos = opts.kpos ?? t.kpos;
  const o = new Float32Array(t.nq * t.heads * t.hd).fill(Number.NaN);
  const lse = new Float32Array(t.nq * t.heads).fill(Number.NaN);
  p.attention(
    t.nq,
    kpos.length,
    t.heads,
    t.kvh,
    t.hd,
    t.scale,
    t.q,
    t.kc,
    t.vc,
    t.qpos,
    kpos,
    t.blocks,
    o,
    lse,
    t.seqs,
  );
  return { o, lse };
}
