/**
 * Finds the LLaMA-family forward in a plain `torch.onnx.export` graph by walking it backwards from
 * the logits: lm_head, the final RMSNorm, then per layer the residual Adds, the SwiGLU MLP, the
 * attention (RoPE on q and k, softmax(q k^T * scale) v, no mask), down to the embedding Gather.
 * Weights are identified by the node that reads them, not by name: constant folding stores
 * projections as anonymous transposed `onnx::MatMul_*` initializers. Anything off the pattern is
 * a problem naming the node; the walk goes on where it can so that one error lists them all.
 */
import { attrInt, attrInts, describe, type NodeProto, type OnnxGraph } from './graph.ts';
import { dimsOf, FLOAT, type TensorProto } from './tensors.ts';

/** A stored weight as a node reads it; `transposed`: the file holds W^T ([in, out]). */
export interface Stored {
  readonly tensor: TensorProto;
  readonly transposed: boolean;
}

/** A weight slot: found, or why not (the message names the node that should read it). */
export type Slot = Stored | { readonly missing: string };

export interface Linear {
  readonly x: string;
  readonly weight: Slot;
  readonly bias?: TensorProto;
  readonly node: NodeProto;
}

export interface Norm {
  readonly x: string;
  readonly weight: Slot;
  readonly eps?: number;
}

/** How a query or key projection is split into heads: the Reshape's last two constant dims, if constant. */
export interface Split {
  readonly node: NodeProto;
  readonly heads?: number;
  readonly headDim?: number;
}

export interface Rope {
  /** The Cos/Sin argument; layers sharing one rotary embedding share it. */
  readonly angle: string;
  readonly node: NodeProto;
}

export interface Layer {
  readonly attnNorm: Norm;
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly mlpNorm: Norm;
  readonly gate: Linear;
  readonly up: Linear;
  readonly down: Linear;
  readonly splits: readonly (Split & { readonly what: 'queries' | 'keys' })[];
  /** The product of the constant factors between q k^T and the softmax (and on q and k). */
  readonly scale: number;
  readonly scaleNode: NodeProto;
  readonly ropes: readonly Rope[];
}

export interface Traced {
  readonly embed: Slot;
  /** Bottom-up; undefined for a layer off the pattern (its problems are recorded). */
  readonly layers: readonly (Layer | undefined)[];
  readonly norm: Norm;
  readonly head: Linear;
}

/** Ops a LLaMA export is made of (the shape arithmetic of dynamic axes included). */
const supportedOps = new Set([
  'Add',
  'Cast',
  'Concat',
  'Constant',
  'ConstantOfShape',
  'Cos',
  'Div',
  'Equal',
  'Expand',
  'Gather',
  'Identity',
  'MatMul',
  'Mul',
  'Neg',
  'Pow',
  'Range',
  'Reciprocal',
  'ReduceMean',
  'Reshape',
  'Shape',
  'Sigmoid',
  'Sin',
  'Slice',
  'Softmax',
  'Sqrt',
  'Squeeze',
  'Sub',
  'Transpose',
  'Unsqueeze',
  'Where',
]);

/** Ops that move or broadcast values without computing: q, k and v pass through them between stages. */
const layoutOps = new Set(['Reshape', 'Transpose', 'Unsqueeze', 'Squeeze', 'Expand', 'Identity']);

export class Tracer {
  readonly problems: string[] = [];

  constructor(private readonly g: OnnxGraph) {}

  private fail(node: NodeProto | undefined, msg: string): undefined {
    this.problems.push(node ? `${describe(node)}: ${msg}` : msg);
    return undefined;
  }

  /** A value with float32 Casts and Identities looked through (HF's RMSNorm upcasts its input). */
  private strip(v: string): string {
    for (let n = this.g.producer(v); n; n = this.g.producer(v)) {
      if (n.opType !== 'Identity' && !(n.opType === 'Cast' && attrInt(n, 'to') === FLOAT)) break;
      v = n.input?.[0] ?? '';
    }
    return v;
  }

  private made(v: string, op: string): NodeProto | undefined {
    const n = this.g.producer(this.strip(v));
    return n?.opType === op ? n : undefined;
  }

  /** The node producing `v`, which must be `op`; a problem naming what is there instead otherwise. */
  private expect(v: string, op: string, role: string): NodeProto | undefined {
    const n = this.g.producer(this.strip(v));
    if (n?.opType === op) return n;
    if (n) return this.fail(n, `expected ${op} (${role}), found ${n.opType}`);
    return this.fail(undefined, `value "${v}" (${role}) is not computed by any node`);
  }

  private ins(n: NodeProto): string[] {
    return n.input ?? [];
  }

  unsupportedOps(): void {
    for (const n of this.g.nodes)
      if (!supportedOps.has(n.opType ?? '') || (n.opType === 'Cast' && !castOk(n)))
        this.fail(
          n,
          n.opType === 'Cast'
            ? `casts to data type ${attrInt(n, 'to')}; only float32 models are supported`
            : `op ${n.opType} is not part of the LLaMA forward kvplan reads`,
        );
  }

  /** The stored weight input `v` of `user`, as it is stored (W^T) or under a Transpose (W). */
  private weight(v: string, user: NodeProto): Slot {
    const init = this.g.initializer(v);
    if (init) return { tensor: init, transposed: true };
    const t = this.g.producer(v);
    const under = t?.opType === 'Transpose' ? this.g.initializer(this.ins(t)[0] ?? '') : undefined;
    if (t && under && sameInts(attrInts(t, 'perm') ?? [1, 0], [1, 0]))
      return { tensor: under, transposed: false };
    if (!this.g.defines(v)) return { missing: `input "${v}" of ${describe(user)} is not in the file` };
    return {
      missing: `input "${v}" of ${describe(user)} is computed (by ${t ? describe(t) : '?'}), not a stored weight`,
    };
  }

  /** `x W^T (+ b)`: a MatMul with a stored weight, optionally followed by an Add of a stored vector. */
  private linear(v: string, role: string): Linear | undefined {
    let out = this.strip(v);
    let bias: TensorProto | undefined;
    const add = this.made(out, 'Add');
    if (add) {
      const [a = '', b = ''] = this.ins(add);
      const stored = [a, b].map((x) => this.g.initializer(x));
      const i = stored.findIndex((t) => t !== undefined && dimsOf(t).length === 1);
      if (i < 0)
        return this.fail(add, `expected the ${role} projection (MatMul, maybe + bias), found an Add`);
      bias = stored[i];
      out = i === 0 ? b : a;
    }
    const mm = this.expect(out, 'MatMul', `${role} projection`);
    if (!mm) return undefined;
    const [x = '', w = ''] = this.ins(mm);
    return { x, weight: this.weight(w, mm), node: mm, ...(bias ? { bias } : {}) };
  }

  /** `w * x / sqrt(mean(x^2) + eps)`, in its exported spellings (rsqrt as 1/Sqrt or Reciprocal, Pow or Mul). */
  private norm(v: string, role: string): Norm | undefined {
    const mul = this.expect(v, 'Mul', `${role} RMSNorm weight`);
    if (!mul) return undefined;
    const [a = '', b = ''] = this.ins(mul);
    const wi = this.g.initializer(a) ? 0 : this.g.initializer(b) ? 1 : -1;
    if (wi < 0) return this.fail(mul, `expected the ${role} RMSNorm weight (a stored vector) as an input`);
    const weight: Slot = { tensor: this.g.initializer(wi === 0 ? a : b) as TensorProto, transposed: false };
    const n = this.g.producer(this.strip(wi === 0 ? b : a));
    // x * r with r = 1 / sqrt(.) or Reciprocal(sqrt(.)), or x / sqrt(.).
    let x: string | undefined;
    let sqrt: NodeProto | undefined;
    if (n?.opType === 'Div') {
      [x] = this.ins(n);
      sqrt = this.made(this.ins(n)[1] ?? '', 'Sqrt');
    } else if (n?.opType === 'Mul') {
      for (const [p, q] of pairs(this.ins(n))) {
        const r = this.g.producer(this.strip(q));
        const inv =
          r?.opType === 'Reciprocal' || (r?.opType === 'Div' && this.g.scalar(this.ins(r)[0] ?? '') === 1);
        if (!r || !inv) continue;
        x = p;
        sqrt = this.made(this.ins(r)[r.opType === 'Div' ? 1 : 0] ?? '', 'Sqrt');
        break;
      }
    }
    if (!n || x === undefined || !sqrt)
      return this.fail(n ?? mul, `expected the ${role} RMSNorm, x / sqrt(mean(x^2) + eps)`);
    const add = this.expect(this.ins(sqrt)[0] ?? '', 'Add', `${role} RMSNorm mean + eps`);
    if (!add) return undefined;
    const [m = '', e = ''] = this.ins(add);
    const eps = this.g.scalar(e) ?? this.g.scalar(m);
    const mean = this.expect(this.g.scalar(e) === undefined ? e : m, 'ReduceMean', `${role} RMSNorm mean`);
    if (!mean || eps === undefined)
      return eps === undefined ? this.fail(add, 'expected a constant epsilon') : undefined;
    const axes = attrInts(mean, 'axes') ?? this.g.numbers(this.ins(mean)[1] ?? '');
    if (!sameInts(axes ?? [], [-1]) || attrInt(mean, 'keepdims') === 0)
      this.fail(mean, `the ${role} RMSNorm must average over the last axis (axes [-1], keepdims)`);
    const sq = this.g.producer(this.strip(this.ins(mean)[0] ?? ''));
    const [s0 = '', s1 = ''] = sq ? this.ins(sq) : [];
    const squares =
      (sq?.opType === 'Pow' && this.g.scalar(s1) === 2 && this.strip(s0) === this.strip(x)) ||
      (sq?.opType === 'Mul' && this.strip(s0) === this.strip(x) && this.strip(s1) === this.strip(x));
    if (!squares) return this.fail(sq ?? mean, `the ${role} RMSNorm must average the squares of its input`);
    return { x: this.strip(x), weight, eps };
  }

  /**
   * Walks back through layout ops (and constant scalar factors, multiplied into `scale`), the way
   * q, k and v travel between projection, RoPE and attention.
   */
  private through(v: string): { v: string; nodes: NodeProto[]; scale: number } {
    const nodes: NodeProto[] = [];
    let scale = 1;
    for (let n = this.g.producer(this.strip(v)); n; n = this.g.producer(this.strip(v))) {
      const [a = '', b = ''] = this.ins(n);
      const sa = this.g.scalar(a);
      const sb = this.g.scalar(b);
      if (layoutOps.has(n.opType ?? '')) v = a;
      else if (n.opType === 'Mul' && (sa !== undefined || sb !== undefined)) {
        scale *= sa ?? sb ?? 1;
        v = sa === undefined ? a : b;
      } else if (n.opType === 'Div' && sb !== undefined) {
        scale /= sb;
        v = a;
      } else break;
      nodes.push(n);
    }
    return { v: this.strip(v), nodes, scale };
  }

  /** Rotate-half RoPE: `x * cos + cat(-x2, x1) * sin`; returns x and the angle both tables come from. */
  private rope(v: string, what: string): { x: string; rope?: Rope } | undefined {
    const add = this.expect(v, 'Add', `RoPE of the ${what}`);
    if (!add) return undefined;
    for (const [a, b] of pairs(this.ins(add))) {
      const ma = this.made(a, 'Mul');
      const mb = this.made(b, 'Mul');
      if (!ma || !mb) continue;
      for (const [rot, sin] of pairs(this.ins(mb))) {
        const cat = this.made(rot, 'Concat');
        if (!cat) continue;
        const x = this.rotated(cat);
        if (x === undefined) return this.fail(cat, `the ${what} are not rotated half by half (rotate_half)`);
        const cos = this.ins(ma).find((i) => this.strip(i) !== x);
        if (cos === undefined || !this.ins(ma).some((i) => this.strip(i) === x))
          return this.fail(ma, `RoPE must multiply the ${what} themselves by cos`);
        const angle = this.angle(cos, 'Cos', ma);
        const angleSin = this.angle(sin, 'Sin', mb);
        if (angle && angleSin && angle.angle !== angleSin.angle)
          this.fail(mb, 'RoPE takes cos and sin of different angles');
        return { x, ...(angle ? { rope: angle } : {}) };
      }
    }
    return this.fail(add, `expected RoPE of the ${what}, x * cos + rotate_half(x) * sin`);
  }

  /** cat(-x[half:], x[:half]) on the last axis: returns x. */
  private rotated(cat: NodeProto): string | undefined {
    const [first = '', second = ''] = this.ins(cat);
    const neg = this.made(first, 'Neg');
    const upper = neg ? this.made(this.ins(neg)[0] ?? '', 'Slice') : undefined;
    const lower = this.made(second, 'Slice');
    if (!upper || !lower || !lastAxis(attrInt(cat, 'axis'))) return undefined;
    const x = this.strip(this.ins(upper)[0] ?? '');
    const starts = (s: NodeProto) => this.g.numbers(this.ins(s)[1] ?? '');
    const unitSteps = (s: NodeProto) => {
      const steps = this.g.numbers(this.ins(s)[4] ?? '');
      const axes = this.g.numbers(this.ins(s)[3] ?? '');
      return (steps === undefined || steps.every((t) => t === 1)) && axes?.length === 1 && lastAxis(axes[0]);
    };
    const lowerFromZero = sameInts(starts(lower) ?? [], [0]);
    const upperFromZero = sameInts(starts(upper) ?? [], [0]);
    const ok =
      this.strip(this.ins(lower)[0] ?? '') === x &&
      lowerFromZero &&
      !upperFromZero &&
      unitSteps(upper) &&
      unitSteps(lower);
    return ok ? x : undefined;
  }

  /** The angle tensor a RoPE table is the cos (or sin) of: through layout ops to the Cos/Sin node. */
  private angle(table: string, op: 'Cos' | 'Sin', user: NodeProto): Rope | undefined {
    let v = table;
    let last = user;
    for (let n = this.g.producer(this.strip(v)); n; n = this.g.producer(this.strip(v))) {
      if (n.opType === op) return { angle: this.strip(this.ins(n)[0] ?? ''), node: n };
      last = n;
      if (!layoutOps.has(n.opType ?? '') && n.opType !== 'Gather' && n.opType !== 'Slice') break;
      v = this.ins(n)[0] ?? '';
    }
    if (this.g.constant(this.strip(v)))
      return this.fail(
        user,
        `the RoPE ${op.toLowerCase()} table is a constant: the file was exported for one sequence length (export with a dynamic sequence axis)`,
      );
    return this.fail(
      last,
      `the RoPE ${op.toLowerCase()} table is not ${op.toLowerCase()}(position * frequency)`,
    );
  }

  /** softmax(q k^T * scale) v, unmasked, from the value entering o_proj. */
  private attention(v: string) {
    const pv = this.g.producer(this.through(v).v);
    if (pv?.opType !== 'MatMul')
      return this.fail(pv, 'expected the attention output, probabilities x values (MatMul)');
    const [p = '', vv = ''] = this.ins(pv);
    const softmax = this.expect(p, 'Softmax', 'attention probabilities');
    if (!softmax) return undefined;
    const axis = attrInt(softmax, 'axis');
    if (axis !== undefined && axis !== -1 && axis !== 3)
      this.fail(softmax, `softmax over axis ${axis}, not the keys`);
    const scores = this.through(this.ins(softmax)[0] ?? '');
    const qk = this.g.producer(scores.v);
    if (qk?.opType !== 'MatMul') {
      const mask = qk?.opType === 'Add' || qk?.opType === 'Where' || qk?.opType === 'Sub';
      return this.fail(
        qk ?? softmax,
        mask
          ? 'masks the attention scores (a causal or padding mask): kvplan runs bidirectional attention; export the model without a mask'
          : 'expected the attention scores, q x k^T (MatMul)',
      );
    }
    const [qIn = '', kIn = ''] = this.ins(qk);
    const qs = this.through(qIn);
    const ks = this.through(kIn);
    if (!ks.nodes.some((n) => n.opType === 'Transpose' && swapsLastTwo(attrInts(n, 'perm'))))
      this.fail(qk, 'the keys are not transposed (q x k^T)');
    const q = this.projection(qs.v, 'queries');
    const k = this.projection(ks.v, 'keys');
    const vs = this.through(vv);
    if (vs.scale !== 1) this.fail(pv, `the values are scaled by ${vs.scale}`);
    const value = this.linear(vs.v, 'value');
    const grouped = [...ks.nodes, ...vs.nodes].filter((n) => n.opType === 'Unsqueeze');
    for (const n of grouped)
      if (!sameInts(attrInts(n, 'axes') ?? this.g.numbers(this.ins(n)[1] ?? '') ?? [], [2]))
        this.fail(
          n,
          'repeats key/value heads in an order other than repeat_kv (head h reads group h / (heads / kv_heads))',
        );
    if (!q || !k || !value) return undefined;
    return {
      q: q.linear,
      k: k.linear,
      v: value,
      scale: scores.scale * qs.scale * ks.scale * q.scale * k.scale,
      scaleNode: scores.nodes.find((n) => n.opType === 'Mul' || n.opType === 'Div') ?? qk,
      splits: [
        { what: 'queries' as const, ...q.split },
        { what: 'keys' as const, ...k.split },
      ],
      ropes: [q.rope, k.rope].filter((r) => r !== undefined),
    };
  }

  /** A query or key: RoPE of a head-split linear projection. */
  private projection(v: string, what: 'queries' | 'keys') {
    const r = this.rope(v, what);
    if (!r) return undefined;
    const back = this.through(r.x);
    const linear = this.linear(back.v, what === 'queries' ? 'query' : 'key');
    const reshape = back.nodes.filter((n) => n.opType === 'Reshape').at(-1);
    if (!linear) return undefined;
    if (!reshape) return this.fail(linear.node, `the ${what} are not split into heads (no Reshape)`);
    return { linear, rope: r.rope, scale: back.scale, split: { node: reshape, ...this.headSplit(reshape) } };
  }

  /** The last two dims of a Reshape's target shape, where they are constants: [heads, head_dim]. */
  private headSplit(reshape: NodeProto): { heads?: number; headDim?: number } {
    const shape = this.ins(reshape)[1] ?? '';
    let dims = this.g.numbers(shape);
    const cat = dims ? undefined : this.made(shape, 'Concat');
    if (cat) dims = this.ins(cat).map((i) => this.g.scalar(i) ?? Number.NaN);
    const [heads, headDim] = (dims ?? []).slice(-2).map((d) => (d > 0 ? d : undefined));
    return { ...(heads ? { heads } : {}), ...(headDim ? { headDim } : {}) };
  }

  /** The residual operand of an Add whose other operand is a MatMul (the branch), or a problem. */
  private residual(h: string, what: string): { rest: string; branch: string } | undefined {
    const add = this.expect(h, 'Add', `residual connection after the ${what}`);
    if (!add) return undefined;
    const [a = '', b = ''] = this.ins(add);
    const isBranch = (x: string) => this.g.producer(x)?.opType === 'MatMul';
    if (isBranch(a) === isBranch(b))
      return this.fail(add, `expected residual + ${what} output (one MatMul operand), found something else`);
    return isBranch(a) ? { rest: b, branch: a } : { rest: a, branch: b };
  }

  /** silu(gate(x)) * up(x), down-projected, x the post-attention RMSNorm of the residual `rest`. */
  private mlp(add: { rest: string; branch: string }) {
    const down = this.linear(add.branch, 'MLP down');
    const mul = down && this.expect(down.x, 'Mul', 'SwiGLU product');
    if (!down || !mul) return undefined;
    let gate: Linear | undefined;
    let up: Linear | undefined;
    for (const [a, b] of pairs(this.ins(mul))) {
      const silu = this.made(a, 'Mul');
      const sig =
        silu &&
        this.ins(silu)
          .map((i) => this.made(i, 'Sigmoid'))
          .find((s) => s !== undefined);
      const z = sig && this.strip(this.ins(sig)[0] ?? '');
      if (!silu || !sig || !this.ins(silu).some((i) => this.strip(i) === z)) continue;
      gate = this.linear(z ?? '', 'MLP gate');
      up = this.linear(b, 'MLP up');
      break;
    }
    if (!gate || !up) return this.fail(mul, 'expected the SwiGLU product silu(gate) * up');
    if (this.strip(gate.x) !== this.strip(up.x)) this.fail(up.node, 'MLP gate and up read different inputs');
    const mlpNorm = this.norm(gate.x, 'post-attention');
    if (!mlpNorm) return undefined;
    if (mlpNorm.x !== this.strip(add.rest))
      this.fail(down.node, 'the MLP does not read the residual stream after attention');
    this.noBias([gate, 'MLP gate'], [up, 'MLP up'], [down, 'MLP down']);
    return { mlpNorm, gate, up, down };
  }

  /** Attention with its input RMSNorm of the residual `rest`, output-projected. */
  private attentionBlock(add: { rest: string; branch: string }) {
    const o = this.linear(add.branch, 'attention output');
    const att = o && this.attention(o.x);
    if (!o || !att) return undefined;
    const x = this.strip(att.q.x);
    if (this.strip(att.k.x) !== x || this.strip(att.v.x) !== x)
      this.fail(att.k.node, 'the query, key and value projections read different inputs');
    const attnNorm = this.norm(att.q.x, 'input');
    if (!attnNorm) return undefined;
    if (attnNorm.x !== this.strip(add.rest))
      this.fail(o.node, 'the attention does not read the residual stream entering the layer');
    this.noBias([o, 'attention output']);
    return { attnNorm, ...att, o };
  }

  private noBias(...linears: [Linear, string][]): void {
    for (const [l, role] of linears)
      if (l.bias) this.fail(l.node, `the ${role} projection has a bias; LLaMA-family models have none there`);
  }

  /**
   * One decoder layer, from its output residual: the layer (undefined when off the pattern, the
   * problems recorded) and its input residual, so that the walk goes on to the layers below.
   */
  private layer(h: string): { layer?: Layer; input: string } | undefined {
    const mlpAdd = this.residual(h, 'MLP');
    if (!mlpAdd) return undefined;
    const mlp = this.mlp(mlpAdd);
    const attnAdd = this.residual(mlpAdd.rest, 'attention');
    if (!attnAdd) return undefined;
    const attention = this.attentionBlock(attnAdd);
    return { input: attnAdd.rest, ...(mlp && attention ? { layer: { ...attention, ...mlp } } : {}) };
  }

  /** The whole forward, from the logits output back to the token ids. */
  trace(): Traced | undefined {
    const ids = this.g.inputs;
    if (ids.length !== 1)
      this.fail(
        undefined,
        `the graph takes ${ids.length} inputs (${ids.join(', ')}); kvplan feeds only the token ids (export without attention_mask, position_ids or past key/values)`,
      );
    const out = this.g.outputs.includes('logits') ? 'logits' : this.g.outputs[0];
    if (out === undefined) return this.fail(undefined, 'the graph has no output');
    const head = this.linear(out, 'lm_head');
    if (head?.bias) this.fail(head.node, 'the output head has a bias; LLaMA-family models have none');
    const norm = head && this.norm(head.x, 'final');
    if (!head || !norm) return undefined;
    const layers: (Layer | undefined)[] = [];
    let h = norm.x;
    for (let guard = 0; this.made(h, 'Add') && guard <= this.g.nodes.length; guard++) {
      const l = this.layer(h);
      if (!l) return undefined;
      layers.unshift(l.layer);
      h = this.strip(l.input);
    }
    const gather = this.expect(h, 'Gather', 'token embedding');
    if (!gather) return undefined;
    const [table = '', tokens = ''] = this.ins(gather);
    if (!ids.includes(this.strip(tokens)) && !ids.includes(this.through(tokens).v))
      this.fail(gather, 'the embedding is not looked up by the graph input (the token ids)');
    const embed: Slot = this.g.initializer(table)
      ? { tensor: this.g.initializer(table) as TensorProto, transposed: false }
      : { missing: `input "${table}" of ${describe(gather)} is not a stored table` };
    if (layers.length === 0)
      this.fail(gather, 'no transformer layer between the embedding and the output head');
    return { embed, layers, norm, head };
  }
}

const castOk = (n: NodeProto): boolean => {
  // Casts to float32 (upcasts of float32 are no-ops) and to integers (shape arithmetic).
  const to = attrInt(n, 'to');
  return to === FLOAT || to === 6 || to === 7 || to === 9;
};

function* pairs(xs: readonly string[]): Generator<[string, string]> {
  const [a = '', b = ''] = xs;
  yield [a, b];
  yield [b, a];
}

const sameInts = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

const lastAxis = (axis: number | undefined) => axis === -1 || axis === 3;

const swapsLastTwo = (perm: readonly number[] | undefined) =>
  perm !== undefined &&
  perm.length >= 2 &&
  perm.at(-1) === perm.length - 2 &&
  perm.at(-2) === perm.length - 1;
