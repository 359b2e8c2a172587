/**
 * The shape of a traced foreign graph: each config field from the weight shapes and the graph's
 * constants (RoPE frequencies, epsilons, head splits, attention scale), each checked against every
 * other place that states it, and the traced weights under kvplan's canonical names.
 */
import type { ModelConfig } from '../config.ts';
import { layerPrefix, weightSpec } from '../weights.ts';
import { describe, type NodeProto, type OnnxGraph } from './graph.ts';
import { dimsOf, FLOAT, sizeOf } from './tensors.ts';
import type { Layer, Norm, Slot, Stored, Traced } from './trace.ts';

/** What the graph says of the model: kvplan config fields (snake_case) and the weights by canonical name. */
export interface Derived {
  readonly fields: Readonly<Record<string, number | boolean | string>>;
  /**
   * Whether a value given for a derived field describes the same model: equal, or for rope_theta
   * and norm_eps, the same stored float32 constants (a sidecar may pin the exact decimal).
   */
  readonly fits: (key: string, value: unknown) => boolean;
  readonly weights: ReadonlyMap<string, Stored>;
}

const isStored = (s: Slot): s is Stored => 'tensor' in s;

/** A slot's shape as kvplan holds it ([out, in] for a linear weight). */
export const shapeOf = (s: Stored): number[] => {
  const d = dimsOf(s.tensor);
  return s.transposed ? [...d].reverse() : d;
};

/** The shortest decimal that is the same float32 (1e-6, not 9.999999974752427e-7). */
export function shortestFloat32(x: number): number {
  for (let p = 1; p <= 9; p++) {
    const c = Number(x.toPrecision(p));
    if (Math.fround(c) === x) return c;
  }
  return x;
}

/**
 * Whether rope_theta gives the inverse frequencies theta^(-2i/d), i < d/2, stored in float32 by an
 * exporter that computed them in float32: within 4 ulps plus the rounding of the exponent 2i/d
 * (ln theta ulps).
 */
const reproduces = (freqs: Float32Array, theta: number): boolean =>
  Array.from(freqs).every(
    (f, i) => Math.abs(theta ** (-i / freqs.length) - f) <= (4 + Math.log(theta)) * 2 ** -23 * f,
  );

/**
 * rope_theta from its inverse frequencies: the shortest decimal (to 8 digits) of the least-squares
 * fit that reproduces them all, or undefined when none does (a scaled RoPE).
 */
export function thetaOf(freqs: Float32Array): number | undefined {
  const n = freqs.length;
  let num = 0;
  let den = 0;
  for (let i = 1; i < n; i++) {
    num += i * Math.log(freqs[i] as number);
    den += i * i;
  }
  if (n < 2 || freqs[0] !== 1 || !(num < 0)) return undefined;
  const fit = Math.exp((-n * num) / den);
  for (let p = 1; p <= 8; p++) {
    const c = Number(fit.toPrecision(p));
    if (reproduces(freqs, c)) return c;
  }
  return undefined;
}

export class Deriver {
  readonly problems: string[] = [];

  constructor(private readonly g: OnnxGraph) {}

  private fail(node: NodeProto | undefined, msg: string): void {
    this.problems.push(node ? `${describe(node)}: ${msg}` : msg);
  }

  /**
   * The inverse frequencies behind a RoPE angle, cat(f, f) with f = positions x inv_freq: the one
   * non-scalar float constant in its inputs, the positions a Range from 0.
   */
  private frequencies(angle: string, user: NodeProto): Float32Array | undefined {
    const cat = this.g.producer(angle);
    if (cat?.opType !== 'Concat' || cat.input?.length !== 2 || cat.input[0] !== cat.input[1]) {
      this.fail(cat ?? user, 'the RoPE angle is not cat(freqs, freqs) (rotate-half layout)');
      return undefined;
    }
    const seen = new Set<string>();
    const consts: string[] = [];
    let range: NodeProto | undefined;
    const stack = [cat.input[0]];
    while (stack.length > 0 && seen.size < 256) {
      const v = stack.pop() as string;
      if (seen.has(v)) continue;
      seen.add(v);
      const t = this.g.constant(v);
      if (t) {
        if (t.dataType === FLOAT && sizeOf(t) > 1) consts.push(v);
        continue;
      }
      const n = this.g.producer(v);
      if (n?.opType === 'Range') range = n;
      else stack.push(...(n?.input ?? []));
    }
    const from = range?.input?.[0];
    if (
      !range ||
      (from !== undefined && this.g.scalar(from) !== 0) ||
      this.g.scalar(range.input?.[2] ?? '') !== 1
    )
      this.fail(range ?? cat, 'the RoPE positions are not 0, 1, ..., L-1 (a Range from 0 by 1)');
    if (consts.length !== 1) {
      this.fail(cat, `expected one constant of RoPE frequencies behind the angle, found ${consts.length}`);
      return undefined;
    }
    const t = this.g.constant(consts[0] as string);
    return t && this.g.reader.floats(t);
  }

  /** head_dim and rope_theta from every layer's RoPE, which must agree. */
  private rope(layers: readonly Layer[]): { headDim?: number; theta?: number; freqs?: Float32Array } {
    const byAngle = new Map<string, NodeProto>();
    for (const l of layers) for (const r of l.ropes) byAngle.set(r.angle, r.node);
    let found: { headDim: number; theta: number; freqs: Float32Array } | undefined;
    for (const [angle, node] of byAngle) {
      const f = this.frequencies(angle, node);
      if (!f) continue;
      const theta = thetaOf(f);
      if (theta === undefined) {
        this.fail(
          node,
          'the RoPE frequencies are not rope_theta^(-2i/head_dim) for any rope_theta (a scaled RoPE is not supported)',
        );
        continue;
      }
      const here = { headDim: 2 * f.length, theta, freqs: f };
      if (found && (found.headDim !== here.headDim || found.theta !== here.theta))
        this.fail(
          node,
          `RoPE with head_dim ${here.headDim}, rope_theta ${here.theta}, unlike another layer's (${found.headDim}, ${found.theta})`,
        );
      found ??= here;
    }
    if (byAngle.size === 0) this.fail(undefined, 'no RoPE frequencies found');
    return found ?? {};
  }

  /** One epsilon for every RMSNorm. */
  private eps(norms: readonly Norm[]): number | undefined {
    const values = [...new Set(norms.map((n) => n.eps).filter((e) => e !== undefined))];
    if (values.length > 1) this.fail(undefined, `the RMSNorms use different epsilons (${values.join(', ')})`);
    const e = values[0];
    return e === undefined ? undefined : shortestFloat32(e);
  }

  /** Canonical name -> slot, in the traced model. */
  private slots(t: Traced, tied: boolean): [string, Slot][] {
    const out: [string, Slot][] = [['model.embed_tokens.weight', t.embed]];
    t.layers.forEach((l, i) => {
      if (!l) return; // off the pattern: its weights are not looked for
      const p = layerPrefix(i);
      out.push([`${p}.input_layernorm.weight`, l.attnNorm.weight]);
      for (const [name, lin] of [
        ['q_proj', l.q],
        ['k_proj', l.k],
        ['v_proj', l.v],
      ] as const) {
        out.push([`${p}.self_attn.${name}.weight`, lin.weight]);
        if (lin.bias) out.push([`${p}.self_attn.${name}.bias`, { tensor: lin.bias, transposed: false }]);
      }
      out.push([`${p}.self_attn.o_proj.weight`, l.o.weight]);
      out.push([`${p}.post_attention_layernorm.weight`, l.mlpNorm.weight]);
      out.push([`${p}.mlp.gate_proj.weight`, l.gate.weight]);
      out.push([`${p}.mlp.up_proj.weight`, l.up.weight]);
      out.push([`${p}.mlp.down_proj.weight`, l.down.weight]);
    });
    out.push(['model.norm.weight', t.norm.weight]);
    if (!tied) out.push(['lm_head.weight', t.head.weight]);
    return out;
  }

  derive(t: Traced): Derived | undefined {
    const layers = t.layers.filter((l) => l !== undefined);
    const first = layers[0];
    if (!first) return undefined;
    const embed = isStored(t.embed) ? dimsOf(t.embed.tensor) : [];
    const width = (s: Slot) => (isStored(s) ? shapeOf(s)[0] : undefined);
    const [vocab, dModel] = embed;
    const rope = this.rope(layers);
    // Without RoPE (a problem already), the head splits still give head_dim, for the checks below.
    const headDim = rope.headDim ?? layers.flatMap((l) => l.splits.map((s) => s.headDim)).find((d) => d);
    const { theta, freqs } = rope;
    const q = width(first.q.weight);
    const kv = width(first.k.weight);
    const dFF = width(first.gate.weight);
    const eps = this.eps([t.norm, ...layers.flatMap((l) => [l.attnNorm, l.mlpNorm])]);
    const biases = layers.flatMap((l) => [l.q, l.k, l.v].map((x) => x.bias !== undefined));
    if (new Set(biases).size > 1)
      this.fail(undefined, 'some q/k/v projections have a bias and others do not');
    if (embed.length !== 2) this.fail(undefined, 'the embedding table is not a matrix [vocab, d_model]');
    const tied = isStored(t.head.weight) && isStored(t.embed) && t.head.weight.tensor === t.embed.tensor;
    if (
      vocab === undefined ||
      dModel === undefined ||
      headDim === undefined ||
      q === undefined ||
      kv === undefined ||
      dFF === undefined
    ) {
      this.fail(undefined, 'the model shape cannot be derived (see the problems above)');
      return undefined;
    }
    const heads = q / headDim;
    const kvHeads = kv / headDim;
    if (!Number.isInteger(heads) || !Number.isInteger(kvHeads))
      this.fail(
        first.q.node,
        `q width ${q} and k width ${kv} are not whole numbers of ${headDim}-wide heads (head_dim from the RoPE frequencies)`,
      );
    t.layers.forEach((l, i) => {
      if (!l) return;
      for (const s of l.splits) {
        const n = s.what === 'queries' ? heads : kvHeads;
        if ((s.heads !== undefined && s.heads !== n) || (s.headDim !== undefined && s.headDim !== headDim))
          this.fail(
            s.node,
            `layer ${i} splits the ${s.what} into ${s.heads ?? '?'} heads of ${s.headDim ?? '?'}, but the weights and RoPE give ${n} heads of ${headDim}`,
          );
      }
      const want = 1 / Math.sqrt(headDim);
      if (Math.abs(l.scale - want) > 1e-6 * want)
        this.fail(
          l.scaleNode,
          `layer ${i} scales the attention scores by ${l.scale}, not 1/sqrt(head_dim) = ${want}`,
        );
    });
    const shape = {
      layers: t.layers.length,
      dModel,
      heads,
      kvHeads,
      headDim,
      dFF,
      vocab,
      qkvBias: biases[0] === true,
      tieEmbeddings: tied,
    };
    const weights = this.checkShapes(this.slots(t, tied), shape);
    // RoPE or an epsilon off the pattern: a problem already, the shape checked nonetheless.
    if (theta === undefined || freqs === undefined || eps === undefined) return undefined;
    const fields: Derived['fields'] = {
      layers: shape.layers,
      d_model: dModel,
      heads,
      kv_heads: kvHeads,
      head_dim: headDim,
      d_ff: dFF,
      vocab,
      rope_theta: theta,
      norm_eps: eps,
      qkv_bias: shape.qkvBias,
      tie_embeddings: tied,
      attention: 'full',
      qk_norm: false,
      aligned_blocks: false,
    };
    const fits = (key: string, value: unknown) => {
      if (typeof value !== 'number') return value === fields[key];
      if (key === 'rope_theta') return value > 0 && reproduces(freqs, value);
      if (key === 'norm_eps') return Math.fround(value) === Math.fround(eps);
      return value === fields[key];
    };
    return { fields, fits, weights };
  }

  /** Every weight kvplan expects of this shape is there with its shape, and nothing else. */
  private checkShapes(
    slots: [string, Slot][],
    shape: Pick<
      ModelConfig,
      'layers' | 'dModel' | 'heads' | 'kvHeads' | 'headDim' | 'dFF' | 'vocab' | 'qkvBias' | 'tieEmbeddings'
    >,
  ): Map<string, Stored> {
    const found = new Map(slots);
    const weights = new Map<string, Stored>();
    const config: ModelConfig = {
      ...shape,
      name: '',
      ropeTheta: 1,
      normEps: 1,
      maskTokenId: 0,
      arShift: false,
      attention: 'full',
    };
    for (const spec of weightSpec(config)) {
      const s = found.get(spec.name);
      if (s === undefined) continue; // a bias of some layers only: reported above
      if (!isStored(s)) {
        this.fail(undefined, `missing weight ${spec.name}: ${s.missing}`);
        continue;
      }
      const got = shapeOf(s);
      if (got.length !== spec.shape.length || got.some((d, i) => d !== spec.shape[i]))
        this.fail(
          undefined,
          `weight ${spec.name} (initializer "${s.tensor.name}"${s.transposed ? ', stored transposed' : ''}) has shape [${got.join(', ')}], expected [${spec.shape.join(', ')}]`,
        );
      else weights.set(spec.name, s);
    }
    return weights;
  }
}
