import { type AttrValue, type Dim, type IRType, index, printType, tensor } from './types.ts';

export type AttrKind = 'number' | 'string' | 'boolean' | 'numbers';

/**
 * One operation of the IR: its operands, attributes, result types, and meaning. The result rule
 * returns the result types, or a message saying what is wrong with the operands.
 */
export interface OpSpec {
  /** Operand names; a trailing `?` marks an optional operand (only last ones may be optional). */
  readonly args: readonly string[];
  readonly attrs: Readonly<Record<string, AttrKind>>;
  readonly optionalAttrs?: Readonly<Record<string, AttrKind>>;
  /** Ops with an effect (cache writes) have no results and are never removed as dead. */
  readonly effect?: boolean;
  readonly results: (
    args: readonly IRType[],
    attrs: Readonly<Record<string, AttrValue>>,
  ) => IRType[] | string;
  readonly doc: string;
}

type T = Extract<IRType, { kind: 'tensor' }>;
const isTensor = (t: IRType | undefined): t is T => t?.kind === 'tensor';
const sameDim = (a: Dim | undefined, b: Dim | undefined): boolean => a === b;
const rank = (t: T, n: number) => t.shape.length === n;
const show = (t: IRType | undefined) => (t ? printType(t) : 'nothing');

function need(cond: boolean, msg: string): asserts cond {
  if (!cond) throw new TypeMismatch(msg);
}
class TypeMismatch extends Error {}

/** Wraps a result rule so that `need` failures become messages. */
const rule =
  (f: (a: readonly IRType[], attrs: Readonly<Record<string, AttrValue>>) => IRType[]) =>
  (a: readonly IRType[], attrs: Readonly<Record<string, AttrValue>>): IRType[] | string => {
    try {
      return f(a, attrs);
    } catch (e) {
      if (e instanceof TypeMismatch) return e.message;
      throw e;
    }
  };

const f32 = (shape: readonly Dim[]) => tensor('f32', shape);

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

/**
 * The per-row tensors an attention's mask reads after `kpos`: `blocks` (read under `block_causal`),
 * then `seqs` as the last operand when the `sequences` attribute is set (several sequences share
 * the canvas, and a row sees only keys of its own sequence).
 */
export function maskOperands<T>(
  args: readonly T[],
  attrs: Readonly<Record<string, AttrValue>>,
): { readonly blocks: T | undefined; readonly seqs: T | undefined } {
  const sequences = attrs.sequences === true && args.length > 5;
  const blocks = args.length - (sequences ? 1 : 0) > 5 ? args[5] : undefined;
  return { blocks, seqs: sequences ? args[args.length - 1] : undefined };
}

export const ops: Readonly<Record<string, OpSpec>> = {
  embed: {
    args: ['table', 'ids'],
    attrs: {},
    results: rule(([table, ids]) => {
      need(isTensor(table) && rank(table, 2), `table must be f32[V,D], got ${show(table)}`);
      need(isTensor(ids) && ids.dtype === 'i32' && rank(ids, 1), `ids must be i32[N], got ${show(ids)}`);
      return [f32([ids.shape[0] as Dim, table.shape[1] as Dim])];
    }),
    doc: 'rows of the embedding table for each token id: out[i] = table[ids[i]]',
  },
  gather: {
    args: ['x', 'rows'],
    attrs: {},
    results: rule(([x, r]) => {
      need(
        x !== undefined && r?.kind === 'index',
        `gather takes a value and an index list, got ${show(x)}, ${show(r)}`,
      );
      if (x.kind === 'index') return [index(r.size)];
      return [tensor(x.dtype, [r.size, ...x.shape.slice(1)])];
    }),
    doc: 'out[i] = x[rows[i]] (rows of a tensor, or entries of an index list)',
  },
  scatter: {
    args: ['base', 'rows', 'values'],
    attrs: {},
    results: rule(([base, r, v]) => {
      need(
        isTensor(base) && r?.kind === 'index' && isTensor(v),
        'scatter takes a tensor, an index list and a tensor',
      );
      need(sameDim(v.shape[0], r.size), `values must have ${r.size} rows, got ${show(v)}`);
      need(
        printType(tensor(base.dtype, base.shape.slice(1))) === printType(tensor(v.dtype, v.shape.slice(1))),
        `row types differ: ${show(base)} vs ${show(v)}`,
      );
      return [base];
    }),
    doc: 'a copy of base with out[rows[i]] = values[i] (functional; base is unchanged)',
  },
  place: {
    args: ['values', 'rows'],
    attrs: {},
    results: rule(([v, r]) => {
      need(
        isTensor(v) && r?.kind === 'index' && sameDim(v.shape[0], r.size),
        `place needs values with one row per index, got ${show(v)}, ${show(r)}`,
      );
      return [tensor(v.dtype, ['L', ...v.shape.slice(1)])];
    }),
    doc: 'a canvas-sized tensor (L rows) that is zero except out[rows[i]] = values[i]',
  },
  rmsnorm: {
    args: ['x', 'weight'],
    attrs: { eps: 'number' },
    results: rule(([x, w]) => {
      need(
        isTensor(x) && rank(x, 2) && isTensor(w) && rank(w, 1) && sameDim(x.shape[1], w.shape[0]),
        `rmsnorm needs f32[N,D] and f32[D], got ${show(x)}, ${show(w)}`,
      );
      return [x];
    }),
    doc: 'out = x * weight / sqrt(mean(x^2 over the last dim) + eps)',
  },
  linear: {
    args: ['x', 'weight', 'bias?'],
    attrs: {},
    results: rule(([x, w, b]) => {
      need(
        isTensor(x) && rank(x, 2) && isTensor(w) && rank(w, 2),
        `linear needs f32[N,In] and f32[Out,In], got ${show(x)}, ${show(w)}`,
      );
      need(sameDim(x.shape[1], w.shape[1]), `input width ${x.shape[1]} does not match weight ${show(w)}`);
      need(
        b === undefined || (isTensor(b) && rank(b, 1) && sameDim(b.shape[0], w.shape[0])),
        `bias must be f32[${w.shape[0]}], got ${show(b)}`,
      );
      return [f32([x.shape[0] as Dim, w.shape[0] as Dim])];
    }),
    doc: 'out = x · weight^T (+ bias)',
  },
  logits: {
    args: ['x', 'head'],
    attrs: {},
    results: rule(([x, w]) => {
      need(
        isTensor(x) && rank(x, 2) && isTensor(w) && rank(w, 2) && sameDim(x.shape[1], w.shape[1]),
        `logits needs f32[N,D] and f32[V,D], got ${show(x)}, ${show(w)}`,
      );
      return [f32([x.shape[0] as Dim, w.shape[0] as Dim])];
    }),
    doc: 'out = x · head^T: the vocabulary scores of each row (head is lm_head or the tied embedding)',
  },
  reshape: {
    args: ['x'],
    attrs: { inner: 'numbers' },
    results: rule(([x], attrs) => {
      need(isTensor(x), `reshape needs a tensor, got ${show(x)}`);
      const inner = attrs.inner as readonly number[];
      const have = x.shape.slice(1);
      need(
        have.every((d) => typeof d === 'number'),
        'reshape needs concrete inner dimensions',
      );
      const size = (ds: readonly Dim[]) => ds.reduce<number>((a, d) => a * Number(d), 1);
      need(size(have) === size(inner), `cannot reshape ${show(x)} rows to [${inner.join(',')}]`);
      return [tensor(x.dtype, [x.shape[0] as Dim, ...inner])];
    }),
    doc: 'keeps the first (row) dimension and reshapes each row to `inner`',
  },
  rope: {
    args: ['x', 'positions'],
    attrs: { theta: 'number' },
    results: rule(([x, p]) => {
      need(isTensor(x) && rank(x, 3), `rope needs f32[N,H,hd], got ${show(x)}`);
      need(
        p?.kind === 'index' && sameDim(p.size, x.shape[0]),
        `positions must be index[${x.shape[0]}], got ${show(p)}`,
      );
      need(typeof x.shape[2] !== 'number' || x.shape[2] % 2 === 0, 'rope needs an even head dimension');
      return [x];
    }),
    doc: 'rotary embedding at the given canvas positions, rotate-half convention: pairs (i, i + hd/2), angle pos * theta^(-2i/hd)',
  },
  attention: {
    args: ['q', 'k', 'v', 'qpos', 'kpos', 'blocks?', 'seqs?'],
    attrs: { scale: 'number', mask: 'string' },
    // `segment` names the split segment a partial belongs to, so that hoisting can find reusable ones.
    optionalAttrs: { segment: 'string', sequences: 'boolean' },
    results: rule((a, attrs) => {
      const { q } = attentionShapes(a);
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
    doc: 'softmax(q·k^T * scale + mask) · v per query head (GQA: head h reads kv head h / (H/KVH)); returns the output and its log-sum-exp (natural log) per row and head. A row with no visible key gets output 0 and LSE -Infinity. With sequences, a row sees only keys of its own sequence (seqs[kpos[j]] = seqs[qpos[i]])',
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
  },
  add: {
    args: ['a', 'b'],
    attrs: {},
    results: rule(([a, b]) => {
      need(
        isTensor(a) && isTensor(b) && printType(a) === printType(b),
        `add needs equal types, got ${show(a)}, ${show(b)}`,
      );
      return [a];
    }),
    doc: 'elementwise sum',
  },
  swiglu: {
    args: ['gate', 'up'],
    attrs: {},
    results: rule(([g, u]) => {
      need(
        isTensor(g) && isTensor(u) && printType(g) === printType(u),
        `swiglu needs equal types, got ${show(g)}, ${show(u)}`,
      );
      return [g];
    }),
    doc: 'silu(gate) * up, silu(x) = x / (1 + exp(-x))',
  },
  softmax: {
    args: ['x'],
    attrs: {},
    results: rule(([x]) => {
      need(isTensor(x) && rank(x, 2), `softmax needs f32[N,V], got ${show(x)}`);
      return [x];
    }),
    doc: 'softmax over the last dimension',
  },
  confidence: {
    args: ['logits'],
    attrs: {},
    results: rule(([x]) => {
      need(isTensor(x) && rank(x, 2), `confidence needs f32[N,V], got ${show(x)}`);
      return [f32([x.shape[0] as Dim])];
    }),
    doc: 'max softmax probability of each row',
  },
  margin: {
    args: ['logits'],
    attrs: {},
    results: rule(([x]) => {
      need(isTensor(x) && rank(x, 2), `margin needs f32[N,V], got ${show(x)}`);
      return [f32([x.shape[0] as Dim])];
    }),
    doc: 'top-1 minus top-2 softmax probability of each row',
  },
  entropy: {
    args: ['logits'],
    attrs: {},
    results: rule(([x]) => {
      need(isTensor(x) && rank(x, 2), `entropy needs f32[N,V], got ${show(x)}`);
      return [f32([x.shape[0] as Dim])];
    }),
    doc: 'entropy (natural log) of the softmax of each row',
  },
  cosine: {
    args: ['a', 'b'],
    attrs: {},
    results: rule(([a, b]) => {
      need(
        isTensor(a) && isTensor(b) && printType(a) === printType(b),
        `cosine needs equal types, got ${show(a)}, ${show(b)}`,
      );
      return [f32([a.shape[0] as Dim])];
    }),
    doc: 'cosine similarity of each row pair (rows flattened); 1 when both rows are zero',
  },
  attention_mass: {
    args: ['q', 'k', 'qpos', 'kpos', 'blocks?'],
    attrs: { scale: 'number', mask: 'string' },
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
      return [f32([kk.shape[0] as Dim])];
    }),
    doc: 'attention probability each key receives, summed over queries and heads',
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
  },
  topk: {
    args: ['scores', 'candidates'],
    attrs: { k: 'number', out: 'string' },
    results: rule(([s, c], attrs) => {
      need(
        isTensor(s) && rank(s, 1) && c?.kind === 'index',
        `topk needs f32[L] scores and an index list, got ${show(s)}, ${show(c)}`,
      );
      return [index(String(attrs.out))];
    }),
    doc: 'the k candidates with the highest score (ties: lower position first), in position order',
  },
  topp: {
    args: ['scores', 'candidates'],
    attrs: { p: 'number', out: 'string' },
    results: rule(([s, c], attrs) => {
      need(
        isTensor(s) && rank(s, 1) && c?.kind === 'index',
        `topp needs f32[L] scores and an index list, got ${show(s)}, ${show(c)}`,
      );
      return [index(String(attrs.out))];
    }),
    doc: 'the fewest best-scored candidates whose (non-negative) scores reach fraction p of the total, in position order',
  },
  keep: {
    args: ['scores', 'candidates'],
    attrs: { ratio: 'number', out: 'string' },
    results: rule(([s, c], attrs) => {
      need(
        isTensor(s) && rank(s, 1) && c?.kind === 'index',
        `keep needs f32[L] scores and an index list, got ${show(s)}, ${show(c)}`,
      );
      return [index(String(attrs.out))];
    }),
    doc: 'the ceil(ratio * N) best-scored candidates, in position order',
  },
  cache_read: {
    args: [],
    attrs: { resource: 'string' },
    results: () => 'cache_read takes its type from the resource; the builder and verifier resolve it',
    doc: 'the whole current content of a resource (all canvas rows)',
  },
  cache_write: {
    args: ['rows', 'values'],
    attrs: { resource: 'string' },
    effect: true,
    results: rule(([r, v]) => {
      need(
        r?.kind === 'index' && isTensor(v) && sameDim(v.shape[0], r.size),
        `cache_write needs an index list and matching rows, got ${show(r)}, ${show(v)}`,
      );
      return [];
    }),
    doc: 'stores values[i] into row rows[i] of the resource; visible to later steps (and to later reads in this step)',
  },
};
