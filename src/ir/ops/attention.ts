import { attentionMass, attentionPartial, type MaskKind, mergePartials, queryKey } from '../attention.ts';
import type { HostInts, HostTensor } from '../tensor.ts';
import { type AttrValue, type Dim, type IRType, printType } from '../types.ts';
import {
  f32,
  isTensor,
  need,
  type OpContext,
  type OpSpec,
  rank,
  rule,
  sameDim,
  show,
  type T,
} from './spec.ts';

const attentionShapes = (a: readonly IRType[]): { q: T; k: T; v: T } => {
  const [q, k, v, qpos, kpos] = a;
  need(isTensor(q) && rank(q, 3), `q must be f32[N,H,hd], got ${show(q)}`);
  need(isTensor(k) && rank(k, 3), `k must be f32[M,KVH,hd], got ${show(k)}`);
  need(isTensor(v) && rank(v, 3), `v must be f32[M,KVH,hd], got ${show(v)}`);
  need(
    sameDim(k.shape[0], v.shape[0]) && sameDim(k.shape[1], v.shape[1]),
    `k and v differ: ${show(k)} vs ${show(v)}`,
  );
  need(
    sameDim(q.shape[2], k.shape[2]) && sameDim(k.shape[2], v.shape[2]),
    'q, k and v must share the head dimension',
  );
  const h = q.shape[1];
  const kvh = k.shape[1];
  need(
    typeof h !== 'number' || typeof kvh !== 'number' || h % kvh === 0,
    `${h} query heads cannot share ${kvh} kv heads`,
  );
  need(
    qpos?.kind === 'index' && sameDim(qpos.size, q.shape[0]),
    `qpos must be index[${q.shape[0]}], got ${show(qpos)}`,
  );
  need(
    kpos?.kind === 'index' && sameDim(kpos.size, k.shape[0]),
    `kpos must be index[${k.shape[0]}], got ${show(kpos)}`,
  );
  return { q, k, v };
};

const maskKinds = ['none', 'block_causal'];

/** Checks an optional `kv_head` attribute: a whole number below the KV head count. */
function kvHeadIn(attrs: Readonly<Record<string, AttrValue>>, kvHeads: Dim): void {
  const g = attrs.kv_head;
  if (g === undefined) return;
  need(
    typeof g === 'number' && Number.isInteger(g) && g >= 0 && (typeof kvHeads !== 'number' || g < kvHeads),
    `kv_head must be a KV head, 0 to ${typeof kvHeads === 'number' ? kvHeads - 1 : 'KVH - 1'}, got ${g}`,
  );
}

/**
 * The per-row tensors an attention's mask reads after `kpos`: `blocks` (read under `block_causal`),
 * then `seqs` as the last operand when the `sequences` attribute is set (several sequences share
 * the canvas, and a row sees only keys of its own sequence).
 */
export function maskOperands<A>(
  args: readonly A[],
  attrs: Readonly<Record<string, AttrValue>>,
): { readonly blocks: A | undefined; readonly seqs: A | undefined } {
  const sequences = attrs.sequences === true && args.length > 5;
  const blocks = args.length - (sequences ? 1 : 0) > 5 ? args[5] : undefined;
  return { blocks, seqs: sequences ? args[args.length - 1] : undefined };
}

/** The sizes and mask an attention-like op reads, checked against its operands. */
function attentionOpts(
  c: OpContext,
  q: HostTensor,
  k: HostTensor,
  qpos: Int32Array,
  kpos: Int32Array,
  blocks: HostInts | undefined,
  seqs?: HostInts,
) {
  const [nq, heads, hd] = q.shape as [number, number, number];
  const [nk, kvHeads, khd] = k.shape as [number, number, number];
  if (khd !== hd) c.fail(`q [${q.shape}] and k [${k.shape}] differ in head dimension`);
  if (kvHeads === 0 || heads % kvHeads !== 0) c.fail(`${heads} query heads cannot share ${kvHeads} kv heads`);
  if (qpos.length !== nq) c.fail(`${qpos.length} query positions for ${nq} query rows`);
  if (kpos.length !== nk) c.fail(`${kpos.length} key positions for ${nk} key rows`);
  const mask = c.str('mask');
  if (mask !== 'none' && mask !== 'block_causal') c.fail(`unknown mask '${mask}'`);
  if (mask === 'block_causal' && blocks === undefined) c.fail('a block_causal mask needs the blocks operand');
  for (const [name, t] of [
    ['blocks', blocks],
    ['seqs', seqs],
  ] as const)
    if (t !== undefined && t.data.length !== c.L)
      c.fail(`${name} has ${t.data.length} entries, the canvas ${c.L}`);
  if (blocks !== undefined || seqs !== undefined) {
    c.positions(qpos, 'query position');
    c.positions(kpos, 'key position');
  }
  const kvHead = c.attrs.kv_head === undefined ? undefined : c.num('kv_head');
  if (kvHead !== undefined && !(Number.isInteger(kvHead) && kvHead >= 0 && kvHead < kvHeads))
    c.fail(`kv_head ${kvHead} is not one of the ${kvHeads} KV heads`);
  return {
    scale: c.num('scale'),
    kvHead,
    mask: mask as MaskKind,
    blocks: blocks?.data,
    seqs: seqs?.data,
    heads,
    kvHeads,
    headDim: hd,
  };
}

/** Attention and its partials. */
export const attentionOps: Readonly<Record<string, OpSpec>> = {
  attention: {
    args: ['q', 'k', 'v', 'qpos', 'kpos', 'blocks?', 'seqs?'],
    attrs: { scale: 'number', mask: 'string' },
    // `segment` names the split segment a partial belongs to, so that hoisting can find reusable ones.
    // `kv_head` computes one KV head's group of query heads (plans with a key set per KV head).
    optionalAttrs: { segment: 'string', sequences: 'boolean', kv_head: 'number' },
    results: rule((a, attrs) => {
      const { q, k } = attentionShapes(a);
      kvHeadIn(attrs, k.shape[1] as Dim);
      need(maskKinds.includes(String(attrs.mask)), `mask must be one of ${maskKinds.join(', ')}`);
      const { blocks, seqs } = maskOperands(a, attrs);
      need(
        attrs.sequences !== true || seqs !== undefined,
        'an attention over sequences needs the seqs operand',
      );
      need(
        attrs.mask !== 'block_causal' || blocks !== undefined,
        'a block_causal mask needs the blocks operand',
      );
      for (const [name, t] of [
        ['blocks', blocks],
        ['seqs', seqs],
      ] as const)
        need(
          t === undefined || (isTensor(t) && t.dtype === 'i32' && rank(t, 1)),
          `${name} must be i32[L], got ${show(t)}`,
        );
      return [q, f32([q.shape[0] as Dim, q.shape[1] as Dim])];
    }),
    doc: 'softmax(q·k^T * scale + mask) · v per query head (GQA: head h reads kv head h / (H/KVH)); returns the output and its log-sum-exp (natural log) per row and head. A row with no visible key gets output 0 and LSE -Infinity. With sequences, a row sees only keys of its own sequence (seqs[kpos[j]] = seqs[qpos[i]]). With kv_head = g, only the query heads reading KV head g are computed; every other head gets output 0 and LSE -Infinity (merging one such partial per KV head gives a key set per KV head)',
    interpret: (c) => {
      const q = c.float(0, 3);
      const k = c.float(1, 3);
      const v = c.float(2, 3);
      const qpos = c.list(3);
      const kpos = c.list(4);
      c.same(k, v, 'k and v');
      const at = maskOperands(
        Array.from({ length: c.count }, (_, i) => i),
        c.attrs,
      );
      const ints = (i: number | undefined) => (i === undefined ? undefined : c.ints(i, 1));
      const opts = attentionOpts(c, q, k, qpos, kpos, ints(at.blocks), ints(at.seqs));
      const { o, lse } = attentionPartial(q.data, k.data, v.data, qpos, kpos, opts);
      return [
        { shape: [...q.shape], data: o },
        { shape: [q.shape[0] as number, q.shape[1] as number], data: lse },
      ];
    },
    flops: (_, [q, k], attrs) => {
      if (q?.kind !== 'tensor' || k?.kind !== 'tensor') return [];
      const [nq, heads, hd] = q.shape as [Dim, Dim, Dim];
      const kvh = k.shape[1];
      // One KV head's attention computes its group of query heads only.
      const h =
        attrs.kv_head !== undefined && typeof heads === 'number' && typeof kvh === 'number'
          ? heads / kvh
          : heads;
      return [
        [4, nq, k.shape[0] as Dim, h, hd],
        [5, nq, k.shape[0] as Dim, h],
      ];
    },
    fusion: { anchor: 'attention' },
    listLoads: [1, 2],
  },
  merge: {
    args: ['o1', 'lse1', 'o2', 'lse2'],
    attrs: {},
    results: rule(([o1, l1, o2, l2]) => {
      need(
        isTensor(o1) && isTensor(o2) && printType(o1) === printType(o2),
        `partial outputs differ: ${show(o1)} vs ${show(o2)}`,
      );
      need(
        isTensor(l1) && isTensor(l2) && printType(l1) === printType(l2),
        `partial LSEs differ: ${show(l1)} vs ${show(l2)}`,
      );
      return [o1, l1];
    }),
    doc: 'combines two attention partials over disjoint key sets: m = max(lse1, lse2), w_i = exp(lse_i - m), o = (w1 o1 + w2 o2) / (w1 + w2), lse = m + log(w1 + w2); two empty partials give o = 0, lse = -Infinity',
    interpret: (c) => {
      const o1 = c.float(0);
      const l1 = c.float(1);
      const o2 = c.float(2);
      const l2 = c.float(3);
      c.same(o1, o2, 'partial outputs');
      c.same(l1, l2, 'partial LSEs');
      if (o1.shape.length < 1 || o1.shape.slice(0, -1).join(',') !== l1.shape.join(',')) {
        c.fail(`LSE [${l1.shape}] does not match output [${o1.shape}]`);
      }
      const { o, lse } = mergePartials(o1.data, l1.data, o2.data, l2.data, o1.shape.at(-1) as number);
      return [
        { shape: [...o1.shape], data: o },
        { shape: [...l1.shape], data: lse },
      ];
    },
    flops: (rs) => [[6, ...rs]],
    fusion: { alone: 'elementwise' },
  },
  attention_mass: {
    args: ['q', 'k', 'qpos', 'kpos', 'blocks?'],
    attrs: { scale: 'number', mask: 'string' },
    optionalAttrs: { per_kv_head: 'boolean' },
    results: rule((a, attrs) => {
      const [q, k, qpos, kpos, blocks] = a;
      const { k: kk } = attentionShapes([
        q as IRType,
        k as IRType,
        k as IRType,
        qpos as IRType,
        kpos as IRType,
      ]);
      need(maskKinds.includes(String(attrs.mask)), `mask must be one of ${maskKinds.join(', ')}`);
      need(
        attrs.mask !== 'block_causal' || blocks !== undefined,
        'a block_causal mask needs the blocks operand',
      );
      need(
        blocks === undefined || (isTensor(blocks) && blocks.dtype === 'i32'),
        `blocks must be i32[L], got ${show(blocks)}`,
      );
      return [
        f32(attrs.per_kv_head === true ? [kk.shape[0] as Dim, kk.shape[1] as Dim] : [kk.shape[0] as Dim]),
      ];
    }),
    doc: 'attention probability each key receives, summed over queries and heads: f32[M]; with per_kv_head, summed over the query heads of each KV head: f32[M,KVH]',
    interpret: (c) => {
      const q = c.float(0, 3);
      const k = c.float(1, 3);
      const qpos = c.list(2);
      const kpos = c.list(3);
      const opts = attentionOpts(c, q, k, qpos, kpos, c.count > 4 ? c.ints(4, 1) : undefined);
      const perHead = c.attrs.per_kv_head === true;
      const shape = perHead ? [k.shape[0] as number, k.shape[1] as number] : [k.shape[0] as number];
      return [{ shape, data: attentionMass(q.data, k.data, qpos, kpos, opts, perHead) }];
    },
    fusion: { alone: 'elementwise' },
  },
  query_key: {
    args: ['q', 'k'],
    attrs: {},
    results: rule(([q, k]) => {
      need(
        isTensor(q) && rank(q, 3) && isTensor(k) && rank(k, 3) && sameDim(q.shape[2], k.shape[2]),
        `query_key needs f32[N,H,hd] and f32[M,KVH,hd], got ${show(q)}, ${show(k)}`,
      );
      return [f32([k.shape[0] as Dim])];
    }),
    doc: 'mean over query rows of q · k for each key, averaged over query heads (GQA mapping as in attention)',
    interpret: (c) => {
      const q = c.float(0, 3);
      const k = c.float(1, 3);
      const [nq, heads, hd] = q.shape as [number, number, number];
      const [nk, kvHeads, khd] = k.shape as [number, number, number];
      if (khd !== hd) c.fail(`q [${q.shape}] and k [${k.shape}] differ in head dimension`);
      if (kvHeads === 0 || heads % kvHeads !== 0)
        c.fail(`${heads} query heads cannot share ${kvHeads} kv heads`);
      return [{ shape: [nk], data: queryKey(q.data, k.data, nq, nk, { heads, kvHeads, headDim: hd }) }];
    },
    fusion: { alone: 'elementwise' },
  },
};
