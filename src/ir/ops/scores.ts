import { type RuntimeValue, rowSize } from '../tensor.ts';
import { type Dim, type IRType, index, printType, shapeOf } from '../types.ts';
import { softmaxRow } from './layer.ts';
import { f32, isTensor, need, type OpContext, type OpSpec, rank, rule, show } from './spec.ts';

/** An op reducing each row of logits to one number, computed from the row's softmax. */
const perRow = (name: string, doc: string, of: (p: Float64Array) => number): OpSpec => ({
  args: ['logits'],
  attrs: {},
  results: rule(([x]) => {
    need(isTensor(x) && rank(x, 2), `${name} needs f32[N,V], got ${show(x)}`);
    return [f32([x.shape[0] as Dim])];
  }),
  doc,
  interpret: (c) => {
    const x = c.float(0, 2);
    const [rows, cols] = x.shape as [number, number];
    if (cols === 0) c.fail('a row of zero logits has no distribution');
    const p = new Float64Array(cols);
    const out = new Float64Array(rows);
    for (let i = 0; i < rows; i++) {
      softmaxRow(x.data, i * cols, cols, p, 0);
      out[i] = of(p);
    }
    return [{ shape: [rows], data: out }];
  },
  flops: (_, [x]) => [[5, ...shapeOf(x as IRType)]],
  fusion: { alone: 'elementwise' },
});

/**
 * An op choosing candidates by score: ranked by descending score, ties by ascending position,
 * the first `take` of them (given the ranking) are returned in position order. Scores are indexed
 * by canvas position; `param` is the op's attribute besides `out`.
 */
const selection = (
  name: string,
  param: string,
  doc: string,
  take: (c: OpContext, ranked: Int32Array, scores: Float64Array) => number,
): OpSpec => ({
  args: ['scores', 'candidates'],
  attrs: { [param]: 'number', out: 'string' },
  results: rule(([s, c], attrs) => {
    need(
      isTensor(s) && rank(s, 1) && c?.kind === 'index',
      `${name} needs f32[L] scores and an index list, got ${show(s)}, ${show(c)}`,
    );
    return [index(String(attrs.out))];
  }),
  doc,
  interpret: (c) => {
    const scores = c.float(0, 1).data;
    const ranked = rankCandidates(c, scores, c.list(1));
    return [ranked.slice(0, take(c, ranked, scores)).sort()];
  },
  fusion: { alone: 'elementwise' },
});

/** Scores and selection. */
export const scoreOps: Readonly<Record<string, OpSpec>> = {
  confidence: perRow('confidence', 'max softmax probability of each row', maxOf),
  margin: perRow('margin', 'top-1 minus top-2 softmax probability of each row', marginOf),
  entropy: perRow('entropy', 'entropy (natural log) of the softmax of each row', entropyOf),
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
    interpret: (c): RuntimeValue[] => {
      const a = c.float(0);
      const b = c.float(1);
      c.same(a, b, 'operands');
      if (a.shape.length < 1) c.fail('cosine needs rows');
      const rows = a.shape[0] as number;
      const n = rowSize(a.shape);
      const out = new Float64Array(rows);
      for (let i = 0; i < rows; i++) {
        let dot = 0;
        let na = 0;
        let nb = 0;
        for (let j = i * n; j < (i + 1) * n; j++) {
          const x = a.data[j] as number;
          const y = b.data[j] as number;
          dot += x * y;
          na += x * x;
          nb += y * y;
        }
        out[i] = na === 0 && nb === 0 ? 1 : na === 0 || nb === 0 ? 0 : dot / (Math.sqrt(na) * Math.sqrt(nb));
      }
      return [{ shape: [rows], data: out }];
    },
    fusion: { alone: 'elementwise' },
  },
  topk: selection(
    'topk',
    'k',
    'the k candidates with the highest score (ties: lower position first), in position order',
    (c, ranked) => {
      const k = c.num('k');
      if (!(Number.isInteger(k) && k >= 0)) c.fail(`k must be a natural number, got ${k}`);
      return Math.min(k, ranked.length);
    },
  ),
  topp: selection(
    'topp',
    'p',
    'the fewest best-scored candidates whose (non-negative) scores reach fraction p of the total, in position order',
    (c, ranked, scores) => {
      const p = c.num('p');
      if (!(p >= 0 && p <= 1)) c.fail(`p must be in [0, 1], got ${p}`);
      let total = 0;
      for (const r of ranked) {
        const s = scores[r] as number;
        if (s < 0) c.fail(`topp needs non-negative scores; position ${r} scores ${s}`);
        total += s;
      }
      // Summing in rank order makes the running sum reach `total` exactly at the last positive score.
      const target = p * total;
      let acc = 0;
      let take = 0;
      while (take < ranked.length && acc < target) acc += scores[ranked[take++] as number] as number;
      return take;
    },
  ),
  keep: selection(
    'keep',
    'ratio',
    'the ceil(ratio * N) best-scored candidates, in position order',
    (c, ranked) => {
      const ratio = c.num('ratio');
      if (!(ratio >= 0 && ratio <= 1)) c.fail(`ratio must be in [0, 1], got ${ratio}`);
      const x = ratio * ranked.length;
      const near = Math.round(x);
      // ceil, but 0.3 * 10 = 3.0000000000000004 must keep 3, not 4.
      return Math.abs(x - near) <= 1e-9 * Math.max(1, x) ? near : Math.ceil(x);
    },
  ),
};

function maxOf(p: Float64Array): number {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of p) if (!(v <= m)) m = v;
  return m;
}

/** Top-1 minus top-2 probability (a single-entry distribution has margin 1). */
function marginOf(p: Float64Array): number {
  let a = Number.NEGATIVE_INFINITY;
  let b = 0;
  let first = true;
  for (const v of p) {
    if (Number.isNaN(v)) return Number.NaN;
    if (first) {
      a = v;
      first = false;
    } else if (v > a) {
      b = a;
      a = v;
    } else if (v > b) b = v;
  }
  return a - b;
}

function entropyOf(p: Float64Array): number {
  let h = 0;
  for (const v of p) if (v !== 0) h -= v * Math.log(v);
  return h;
}

/** The candidates by descending score, ties by ascending position. */
function rankCandidates(c: OpContext, scores: Float64Array, cands: Int32Array): Int32Array {
  c.positions(cands, 'candidate', scores.length);
  const seen = new Set<number>();
  for (const p of cands) {
    if (seen.has(p)) c.fail(`candidate position ${p} is listed twice`);
    seen.add(p);
    if (Number.isNaN(scores[p])) c.fail(`the score of position ${p} is NaN (a cache row never written?)`);
  }
  return Int32Array.from(cands).sort((a, b) => {
    const d = (scores[b] as number) - (scores[a] as number);
    return d !== 0 && !Number.isNaN(d) ? d : a - b;
  });
}
