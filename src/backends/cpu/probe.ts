import { queryKey } from '../../ir/attention.ts';
import { float32Of, float32Tensor, type HostTensor } from '../../ir/tensor.ts';
import type { ModelConfig } from '../../model/config.ts';
import { mostAttended, type Probe, type ProbeOutput } from '../../runtime/probe.ts';
import type { Dtype16, Primitives } from './primitives.ts';

/** Floats the probe keeps for its projections of every layer (256 MB): past it, a layer is projected whole. */
const PROJECTION_MEMO_FLOATS = 2 ** 26;

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
   * Q and K of the n rows of xn in one call (gemmMulti packs the normalised rows once for both),
   * into the scratch buffers `q` and `k`, when both weights are packed alike; false, with nothing
   * computed, otherwise.
   */
  private projectBoth(xn: Float32Array, n: number, layer: number): boolean {
    const c = this.config;
    const named = (name: string, heads: number) => ({
      w: this.weight(`model.layers.${layer}.self_attn.${name}.weight`),
      bias: c.qkvBias ? this.floats(`model.layers.${layer}.self_attn.${name}.bias`) : null,
      n: heads * c.headDim,
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
      c: this.buffer(i === 0 ? 'q' : 'k', n * x.n),
    }));
    this.prims.gemmMulti(n, c.dModel, xn, c.dModel, null, gemms, q.w.packed ? undefined : dtype);
    return true;
  }

  /**
   * Per layer, the hidden state the last probe read and the keys, and the queries when it asked
   * for every row's, that it projected from it (norms and RoPE applied), so that the next probe
   * projects only the rows whose hidden state changed: between two probes of a layer a step
   * recomputes a few rows and the others keep their cached state, and every kernel of the
   * projection is bitwise independent of the other rows (kv_gemm, kv_gemm16, RMSNorm, RoPE), so
   * a kept row is the row recomputed. The probe of every layer at every step projected every row,
   * about nine tenths of its FLOPs. Kept while the layers' copies fit PROJECTION_MEMO_FLOATS.
   */
  private readonly kept = new Map<
    number,
    { h: Float32Array; k: Float32Array; q: Float32Array | undefined }
  >();
  private keptFloats = 0;
  /** Room for the rows keysAndQueries finds changed. */
  private changed = new Int32Array(0);
  private rowIndex = new Int32Array(0);

  /** 0, 1, ..., L - 1 (the probe's until its next call). */
  private allRows(L: number): Int32Array {
    if (this.rowIndex.length !== L) this.rowIndex = Int32Array.from({ length: L }, (_, i) => i);
    return this.rowIndex;
  }

  /**
   * Keys of every row of h, and with `withQ` the queries of every row, after their norms and RoPE;
   * rows whose hidden state is byte for byte the one the last probe of this layer read are not
   * projected again. The arrays are the probe's until its next call.
   */
  private keysAndQueries(
    layer: number,
    h: Float32Array,
    L: number,
    withQ: boolean,
  ): { k: Float32Array; q: Float32Array | undefined } {
    const c = this.config;
    const [dk, dq] = [c.kvHeads * c.headDim, c.heads * c.headDim];
    let kept = this.kept.get(layer);
    if (kept && (kept.h.length !== L * c.dModel || (withQ && !kept.q))) {
      this.keptFloats -= kept.h.length + kept.k.length + (kept.q?.length ?? 0);
      this.kept.delete(layer);
      kept = undefined;
    }
    const fresh = !kept;
    const size = L * (c.dModel + dk + (withQ ? dq : 0));
    if (!kept && this.keptFloats + size <= PROJECTION_MEMO_FLOATS) {
      kept = {
        h: new Float32Array(L * c.dModel),
        k: new Float32Array(L * dk),
        q: withQ ? new Float32Array(L * dq) : undefined,
      };
      this.kept.set(layer, kept);
      this.keptFloats += size;
    }
    // The rows whose bytes changed, copied into the memo as they are found (one native pass: a
    // Buffer compare a row cost more than the memcmp it ran).
    let rows: Int32Array;
    if (kept && !fresh) {
      if (this.changed.length < L) this.changed = new Int32Array(L);
      rows = this.changed.subarray(0, this.prims.rowsChanged(L, c.dModel, h, kept.h, this.changed));
    } else {
      kept?.h.set(h.subarray(0, L * c.dModel));
      rows = this.allRows(L);
    }
    const n = rows.length;
    this.projected = { norms: n, keys: n, queries: withQ || kept?.q !== undefined ? n : 0 };
    // Kept queries are kept up to date even when this call does not ask for them.
    const wantQ = withQ || kept?.q !== undefined;
    if (n > 0 || !kept) {
      const xn = this.normalised(layer, h, rows, n, 'xn');
      const both = wantQ && this.projectBoth(xn, n, layer);
      const k = this.qkNorm(
        both ? this.buffer('k', n * dk) : this.project(xn, n, layer, 'k_proj', c.kvHeads, null, 'k'),
        layer,
        'k_norm',
      );
      this.prims.rope(n, c.kvHeads, c.headDim, k, rows, c.ropeTheta);
      const q = wantQ
        ? this.rope(
            this.qkNorm(
              both ? this.buffer('q', n * dq) : this.project(xn, n, layer, 'q_proj', c.heads, null, 'q'),
              layer,
              'q_norm',
            ),
            rows,
          )
        : undefined;
      if (!kept) return { k, q };
      for (let i = 0; i < n; i++) {
        const r = rows[i] as number;
        kept.k.set(k.subarray(i * dk, (i + 1) * dk), r * dk);
        if (q && kept.q) kept.q.set(q.subarray(i * dq, (i + 1) * dq), r * dq);
      }
    }
    return { k: (kept as NonNullable<typeof kept>).k, q: withQ ? kept?.q : undefined };
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

  /** The input RMSNorm of a layer over n rows of h (`rows` of it, or the first n), into the scratch buffer `slot`. */
  private normalised(
    layer: number,
    h: Float32Array,
    rows: Int32Array | null,
    n: number,
    slot: string,
  ): Float32Array {
    const c = this.config;
    const xn = this.buffer(slot, n * c.dModel);
    const norm = this.floats(`model.layers.${layer}.input_layernorm.weight`);
    this.prims.rmsnorm(n, c.dModel, h, rows, norm, c.normEps, xn);
    return xn;
  }

  /** Rows the last `measure` normalised and projected (Probe.projected). */
  projected: { norms: number; keys: number; queries: number } = { norms: 0, keys: 0, queries: 0 };

  /** Queries of the rows `rows` of h, after their norm and RoPE, into the scratch buffer `slot`. */
  private queriesOf(layer: number, h: Float32Array, rows: Int32Array, slot: string): Float32Array {
    const c = this.config;
    const { norms, keys, queries } = this.projected;
    this.projected = { norms: norms + rows.length, keys, queries: queries + rows.length };
    const xn = this.normalised(layer, h, rows, rows.length, `${slot}-xn`);
    return this.rope(
      this.qkNorm(this.project(xn, rows.length, layer, 'q_proj', c.heads, null, slot), layer, 'q_norm'),
      rows,
    );
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
    const hf = float32Of(h) ?? new Float32Array(h.data);
    // K and V stay float32 (widened only if read as float64): drift scores compare them as such.
    if (output === 'v') {
      this.projected = { norms: L, keys: L, queries: 0 };
      const xn = this.normalised(layer, hf, null, L, 'xn');
      return float32Tensor(
        [L, c.kvHeads, c.headDim],
        this.project(xn, L, layer, 'v_proj', c.kvHeads, null, 'v'),
      );
    }
    const keys = this.allRows(L);
    const everyRow = queries.length === L && queries.every((r, i) => r === i);
    const projected = this.keysAndQueries(layer, hf, L, output !== 'k' && everyRow);
    const k = projected.k;
    if (output === 'k') return float32Tensor([L, c.kvHeads, c.headDim], k);
    const q = projected.q ?? this.queriesOf(layer, hf, queries, 'q');
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
        at >= 0 ? q.subarray(at * width, (at + 1) * width) : this.queriesOf(layer, hf, top, 'qtop');
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
