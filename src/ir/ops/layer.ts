import type { RuntimeValue } from '../tensor.ts';
import { type Dim, type IRType, printType } from '../types.ts';
import { f32, isTensor, need, type OpContext, type OpSpec, rank, rule, sameDim, show } from './spec.ts';

/** Result rule of the elementwise ops over two operands of one type. */
const sameTypes = (name: string) =>
  rule(([a, b]) => {
    need(
      isTensor(a) && isTensor(b) && printType(a) === printType(b),
      `${name} needs equal types, got ${show(a)}, ${show(b)}`,
    );
    return [a];
  });

const elementwise2 =
  (f: (a: number, b: number) => number) =>
  (c: OpContext): RuntimeValue[] => {
    const a = c.float(0);
    const b = c.float(1);
    c.same(a, b, 'operands');
    const out = new Float64Array(a.data.length);
    for (let i = 0; i < out.length; i++) out[i] = f(a.data[i] as number, b.data[i] as number);
    return [{ shape: [...a.shape], data: out }];
  };

const matmul = (c: OpContext): RuntimeValue[] => {
  const x = c.float(0, 2);
  const w = c.float(1, 2);
  const bias = c.count > 2 ? c.float(2, 1) : undefined;
  const [rows, inDim] = x.shape as [number, number];
  const [outDim, wIn] = w.shape as [number, number];
  if (wIn !== inDim) c.fail(`input width ${inDim} does not match weight [${w.shape}]`);
  if (bias !== undefined && bias.shape[0] !== outDim)
    c.fail(`bias [${bias.shape}] does not match ${outDim} outputs`);
  return [{ shape: [rows, outDim], data: matmulT(x.data, w.data, rows, inDim, outDim, bias?.data) }];
};

/** What linear and logits share: their semantics and cost, out = x · w^T (+ bias). */
const projection = {
  interpret: matmul,
  flops: (rs: readonly Dim[], [x]: readonly IRType[]) => {
    const inner = x?.kind === 'tensor' ? (x.shape[1] ?? 1) : 1;
    return [[2, ...rs, inner] as const];
  },
};

/** Layer math. */
export const layerOps: Readonly<Record<string, OpSpec>> = {
  rmsnorm: {
    args: ['x', 'weight'],
    attrs: { eps: 'number' },
    results: rule(([x, w]) => {
      need(
        isTensor(x) &&
          (rank(x, 2) || rank(x, 3)) &&
          isTensor(w) &&
          rank(w, 1) &&
          sameDim(x.shape.at(-1), w.shape[0]) &&
          x.shape.slice(1).every((d) => typeof d === 'number'),
        `rmsnorm needs f32[N,D] or f32[N,H,D] (constant inner dims) and f32[D], got ${show(x)}, ${show(w)}`,
      );
      return [x];
    }),
    doc: 'out = x * weight / sqrt(mean(x^2 over the last dim) + eps); over [N,H,D], each head of each row (q/k norm)',
    interpret: (c) => {
      const x = c.float(0);
      const w = c.float(1, 1);
      const d = x.shape.at(-1) as number;
      const rows = x.data.length / d;
      if (x.shape.length < 2 || x.shape.length > 3) c.fail(`x must have rank 2 or 3, has shape [${x.shape}]`);
      if (w.shape[0] !== d) c.fail(`weight [${w.shape}] does not match rows of width ${d}`);
      const eps = c.num('eps');
      const out = new Float64Array(rows * d);
      for (let i = 0; i < rows; i++) {
        let ss = 0;
        for (let j = 0; j < d; j++) ss += (x.data[i * d + j] as number) ** 2;
        const inv = 1 / Math.sqrt(ss / d + eps);
        for (let j = 0; j < d; j++)
          out[i * d + j] = (x.data[i * d + j] as number) * (w.data[j] as number) * inv;
      }
      return [{ shape: [...x.shape], data: out }];
    },
    flops: (rs) => [[4, ...rs]],
    fusion: { anchor: 'norm' },
    listLoads: [0],
  },
  linear: {
    ...projection,
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
    fusion: { anchor: 'gemm' },
    listLoads: [0],
  },
  logits: {
    ...projection,
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
    fusion: { anchor: 'logits' },
    listLoads: [0],
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
    interpret: (c) => {
      const x = c.float(0, 3);
      const pos = c.list(1);
      const [rows, heads, hd] = x.shape as [number, number, number];
      if (pos.length !== rows) c.fail(`${pos.length} positions for ${rows} rows`);
      if (hd % 2 !== 0) c.fail(`rope needs an even head dimension, got ${hd}`);
      return [{ shape: [rows, heads, hd], data: rope(x.data, pos, heads, hd, c.num('theta')) }];
    },
    flops: (rs) => [[3, ...rs]],
    fusion: { alone: 'elementwise' },
  },
  add: {
    args: ['a', 'b'],
    attrs: {},
    commutative: true,
    results: sameTypes('add'),
    doc: 'elementwise sum',
    interpret: elementwise2((a, b) => a + b),
    flops: (rs) => [[1, ...rs]],
    fusion: { alone: 'elementwise' },
  },
  swiglu: {
    args: ['gate', 'up'],
    attrs: {},
    results: sameTypes('swiglu'),
    doc: 'silu(gate) * up, silu(x) = x / (1 + exp(-x))',
    interpret: elementwise2((g, u) => (g / (1 + Math.exp(-g))) * u),
    flops: (rs) => [[5, ...rs]],
    fusion: { alone: 'elementwise' },
  },
  softmax: {
    args: ['x'],
    attrs: {},
    results: rule(([x]) => {
      need(isTensor(x) && rank(x, 2), `softmax needs f32[N,V], got ${show(x)}`);
      return [x];
    }),
    doc: 'softmax over the last dimension',
    interpret: (c) => {
      const x = c.float(0, 2);
      const [rows, cols] = x.shape as [number, number];
      const out = new Float64Array(rows * cols);
      for (let i = 0; i < rows; i++) softmaxRow(x.data, i * cols, cols, out);
      return [{ shape: [rows, cols], data: out }];
    },
    flops: (rs) => [[5, ...rs]],
    fusion: { alone: 'elementwise' },
  },
};

/** out[i, o] = sum_j x[i, j] w[o, j] (+ bias[o]). */
function matmulT(
  x: Float64Array,
  w: Float64Array,
  rows: number,
  inDim: number,
  outDim: number,
  bias: Float64Array | undefined,
): Float64Array {
  const out = new Float64Array(rows * outDim);
  for (let i = 0; i < rows; i++) {
    const xo = i * inDim;
    for (let o = 0; o < outDim; o++) {
      const wo = o * inDim;
      let acc = bias === undefined ? 0 : (bias[o] as number);
      for (let j = 0; j < inDim; j++) acc += (x[xo + j] as number) * (w[wo + j] as number);
      out[i * outDim + o] = acc;
    }
  }
  return out;
}

/** Rotate-half rotary embedding: pairs (i, i + hd/2) rotated by pos * theta^(-2i/hd). */
export function rope(
  x: Float64Array,
  pos: Int32Array,
  heads: number,
  hd: number,
  theta: number,
): Float64Array {
  const half = hd / 2;
  const out = new Float64Array(x.length);
  const freq = new Float64Array(half);
  for (let i = 0; i < half; i++) freq[i] = theta ** ((-2 * i) / hd);
  for (let r = 0; r < pos.length; r++) {
    const p = pos[r] as number;
    for (let i = 0; i < half; i++) {
      const a = p * (freq[i] as number);
      const c = Math.cos(a);
      const s = Math.sin(a);
      for (let h = 0; h < heads; h++) {
        const base = (r * heads + h) * hd;
        const lo = x[base + i] as number;
        const hi = x[base + i + half] as number;
        out[base + i] = lo * c - hi * s;
        out[base + i + half] = hi * c + lo * s;
      }
    }
  }
  return out;
}

/** Stable softmax of x[off .. off+n) into out[outOff ..]. */
export function softmaxRow(x: Float64Array, off: number, n: number, out: Float64Array, outOff = off): void {
  let m = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < n; j++) {
    const v = x[off + j] as number;
    if (!(v <= m)) m = v;
  }
  let sum = 0;
  for (let j = 0; j < n; j++) {
    const e = Math.exp((x[off + j] as number) - m);
    out[outOff + j] = e;
    sum += e;
  }
  for (let j = 0; j < n; j++) out[outOff + j] = (out[outOff + j] as number) / sum;
}
