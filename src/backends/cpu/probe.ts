import { queryKey } from '../../ir/attention.ts';
import { float32Of, float32Tensor, type HostTensor } from '../../ir/tensor.ts';
import type { ModelConfig } from '../../model/config.ts';
import { mostAttended, type Probe, type ProbeOutput } from '../../runtime/probe.ts';
import type { Dtype16, Primitives } from './primitives.ts';

/**
 * A layer weight as the compiled library holds it: the floats, and for GEMM weights the packed copy
 * (floats, or 16-bit bits of a kv_gemm16 dtype when the model stores the weight so).
 */
export type WeightLookup = (name: string) => {
  readonly floats?: Float32Array;
  readonly packed?: Float32Array;
  readonly packed16?: { readonly bits: Uint16Array; readonly dtype: Dtype16 };
};

/**
 * The score probe (src/ir/lowerProbe.ts) on the CPU primitives, in float32: the same steps as the
 * interpreted program (RMSNorm, projections, RoPE, attention mass), so that score-driven plans do
 * not spend their step in the float64 interpreter. Query-key means are summed in float64 from the
 * float32 projections.
 */
export class CpuProbe implements Probe {
  constructor(
    private readonly prims: Primitives,
    private readonly config: ModelConfig,
    private readonly weight: WeightLookup,
  ) {}

  /**
   * A buffer of n floats that one kind of intermediate (`slot`) reuses from call to call: a probe
   * runs on every layer of every step, and fresh canvas-sized arrays there kept the garbage
   * collector's threads busy on the cores the kernels need.
   */
  private readonly scratch = new Map<string, Float32Array>();
  private buffer(slot: string, n: number): Float32Array {
    let b = this.scratch.get(slot);
    if (!b || b.length < n) {
      b = new Float32Array(n);
      this.scratch.set(slot, b);
    }
    return b.subarray(0, n);
  }

  /** Projects rows of xn with a layer's weight, into the scratch buffer `slot`. */
  private project(
    xn: Float32Array,
    L: number,
    layer: number,
    name: string,
    n: number,
    rows: Int32Array | null,
    slot: string,
  ) {
    const c = this.config;
    const w = this.weight(`model.layers.${layer}.self_attn.${name}.weight`);
    const bias = c.qkvBias ? this.floats(`model.layers.${layer}.self_attn.${name}.bias`) : null;
    const m = rows ? rows.length : L;
    const width = n * c.headDim;
    const out = this.buffer(slot, m * width);
    if (w.packed16) {
      const { bits, dtype } = w.packed16;
      this.prims.gemm16(m, width, c.dModel, xn, c.dModel, rows, bits, dtype, bias, out, width, false);
    } else if (w.packed)
      this.prims.gemm(m, width, c.dModel, xn, c.dModel, rows, w.packed, bias, out, width, false);
    else throw new Error(`weight ${name} of layer ${layer} has no packed copy`);
    return out;
  }

  /**
   * Q and K of every row in one call (gemmMulti packs the normalised state once for both), into the
   * scratch buffers `q` and `k`, when the queries are all the rows in order (rollout, an attention
   * row) and both weights are packed alike; false, with nothing computed, otherwise.
   */
  private projectBoth(xn: Float32Array, L: number, layer: number, queries: Int32Array): boolean {
    const c = this.config;
    if (queries.length !== L || queries.some((r, i) => r !== i)) return false;
    const named = (name: string, n: number) => ({
      w: this.weight(`model.layers.${layer}.self_attn.${name}.weight`),
      bias: c.qkvBias ? this.floats(`model.layers.${layer}.self_attn.${name}.bias`) : null,
      n: n * c.headDim,
    });
    const [q, k] = [named('q_proj', c.heads), named('k_proj', c.kvHeads)];
    const dtype = q.w.packed16?.dtype;
    const packs =
      q.w.packed && k.w.packed
        ? [q.w.packed, k.w.packed]
        : dtype !== undefined && k.w.packed16?.dtype === dtype
          ? [q.w.packed16?.bits, k.w.packed16.bits]
          : undefined;
    if (!packs) return false;
    const gemms = [q, k].map((x, i) => ({
      n: x.n,
      packed: packs[i] as Float32Array | Uint16Array,
      bias: x.bias,
      c: this.buffer(i === 0 ? 'q' : 'k', L * x.n),
    }));
    this.prims.gemmMulti(L, c.dModel, xn, c.dModel, null, gemms, q.w.packed ? undefined : dtype);
    return true;
  }

  private floats(name: string): Float32Array {
    const f = this.weight(name).floats;
    if (!f) throw new Error(`weight ${name} is not held as floats`);
    return f;
  }

  /** SDAR's per-head RMSNorm of q or k (in place), when the model has it. */
  private qkNorm(x: Float32Array, layer: number, name: string): Float32Array {
    const c = this.config;
    if (!c.qkNorm) return x;
    const w = this.floats(`model.layers.${layer}.self_attn.${name}.weight`);
    this.prims.rmsnorm(x.length / c.headDim, c.headDim, x, null, w, c.normEps, x);
    return x;
  }

  /** Rotates queries [positions, heads, head_dim] (in place) to their positions. */
  private rope(q: Float32Array, positions: Int32Array): Float32Array {
    const c = this.config;
    this.prims.rope(positions.length, c.heads, c.headDim, q, positions, c.ropeTheta);
    return q;
  }

  measure(
    output: ProbeOutput,
    layer: number,
    h: HostTensor,
    queries: Int32Array,
    blocks: Int32Array | undefined,
  ): HostTensor {
    const c = this.config;
    const L = h.shape[0] as number;
    const xn = this.buffer('xn', L * c.dModel);
    const norm = this.floats(`model.layers.${layer}.input_layernorm.weight`);
    this.prims.rmsnorm(L, c.dModel, float32Of(h) ?? new Float32Array(h.data), null, norm, c.normEps, xn);
    // K and V stay float32 (widened only if read as float64): drift scores compare them as such.
    if (output === 'v')
      return float32Tensor(
        [L, c.kvHeads, c.headDim],
        this.project(xn, L, layer, 'v_proj', c.kvHeads, null, 'v'),
      );
    const keys = Int32Array.from({ length: L }, (_, i) => i);
    const both = output !== 'k' && this.projectBoth(xn, L, layer, queries);
    const k = this.qkNorm(
      both
        ? this.buffer('k', L * c.kvHeads * c.headDim)
        : this.project(xn, L, layer, 'k_proj', c.kvHeads, null, 'k'),
      layer,
      'k_norm',
    );
    this.prims.rope(L, c.kvHeads, c.headDim, k, keys, c.ropeTheta);
    if (output === 'k') return float32Tensor([L, c.kvHeads, c.headDim], k);
    const q = this.rope(
      this.qkNorm(
        both
          ? this.buffer('q', L * c.heads * c.headDim)
          : this.project(xn, L, layer, 'q_proj', c.heads, queries, 'q'),
        layer,
        'q_norm',
      ),
      queries,
    );
    if (output === 'query_key') {
      const shape = { heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim };
      return {
        shape: [L],
        data: queryKey(new Float64Array(q), new Float64Array(k), queries.length, L, shape),
      };
    }
    const scale = 1 / Math.sqrt(c.headDim);
    const massOf = (heads: number, kvHeads: number, qh: Float32Array, kh: Float32Array) => {
      const mass = new Float64Array(L);
      this.prims.attentionMass(
        queries.length,
        L,
        heads,
        kvHeads,
        c.headDim,
        scale,
        qh,
        kh,
        queries,
        keys,
        blocks ?? null,
        mass,
      );
      return mass;
    };
    if (output === 'mass') return { shape: [L], data: massOf(c.heads, c.kvHeads, q, k) };
    if (output === 'row') {
      // The query row of the most-attended key, already projected, against the same keys.
      const top = Int32Array.of(mostAttended(massOf(c.heads, c.kvHeads, q, k)));
      const at = queries.indexOf(top[0] as number);
      const width = c.heads * c.headDim;
      const qTop =
        at >= 0
          ? q.subarray(at * width, (at + 1) * width)
          : this.rope(
              this.qkNorm(this.project(xn, L, layer, 'q_proj', c.heads, top, 'qtop'), layer, 'q_norm'),
              top,
            );
      const mass = new Float64Array(L);
      this.prims.attentionMass(
        1,
        L,
        c.heads,
        c.kvHeads,
        c.headDim,
        scale,
        qTop,
        k,
        top,
        keys,
        blocks ?? null,
        mass,
      );
      return { shape: [L], data: mass };
    }
    // Each KV head alone: its query heads and its keys, copied out contiguous.
    const group = c.heads / c.kvHeads;
    const hd = c.headDim;
    const out = new Float64Array(L * c.kvHeads);
    for (let g = 0; g < c.kvHeads; g++) {
      const qg = new Float32Array(queries.length * group * hd);
      for (let i = 0; i < queries.length; i++)
        qg.set(
          q.subarray((i * c.heads + g * group) * hd, (i * c.heads + (g + 1) * group) * hd),
          i * group * hd,
        );
      const kg = new Float32Array(L * hd);
      for (let j = 0; j < L; j++)
        kg.set(k.subarray((j * c.kvHeads + g) * hd, (j * c.kvHeads + g + 1) * hd), j * hd);
      massOf(group, 1, qg, kg).forEach((m, j) => {
        out[j * c.kvHeads + g] = m;
      });
    }
    return { shape: [L, c.kvHeads], data: out };
  }

  rowDrift(fresh: Float32Array, cached: Float32Array, rows: number, width: number, from: number, to: number) {
    const out = new Float64Array(rows);
    this.prims.rowDrift(rows, width, from, to, fresh, cached, out);
    return out;
  }
}
