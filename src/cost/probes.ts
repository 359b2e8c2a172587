/**
 * The cost of the score probes a plan's rules ask for (attention_mass, query_key, rollout,
 * value_drift, key_drift, attn_similarity): the runtime measures them on the hidden state entering a layer,
 * with the probe program of src/ir/lowerProbe.ts, outside the step's kernels. A plan that measures
 * rollout every step pays for it, and the advisor says so.
 */
import type { ModelConfig } from '../model/config.ts';
import type { ProbeOutput } from '../runtime/probe.ts';
import { type KernelCost, type Roofline, rooflineTime, type Sizes } from './roofline.ts';

export interface ProbeCall {
  readonly output: ProbeOutput;
  readonly layer: number;
  /** Query rows (`mass`, `query_key`); `k` and `v` project every row. */
  readonly queries: number;
  /**
   * The rows the call normalised and whose keys (or values) and queries it projected, where a probe
   * keeps earlier projections and projects again only rows whose hidden state changed
   * (src/backends/cpu/probe.ts); without it, every row normalised, every row's keys and the query
   * rows' queries, as the probe program states.
   */
  readonly projected?: { readonly norms: number; readonly keys: number; readonly queries: number };
}

/**
 * One call per sequence of the batch, at the ops of the probe program: the normalised hidden
 * state of all L rows, the projections the output needs (queries for the query rows, keys or
 * values for every row) and the scores. Weights are read by every call: probes are not batched.
 */
export function costProbe(call: ProbeCall, c: ModelConfig, L: number, s: Sizes, hw: Roofline): KernelCost {
  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  const nq = call.queries;
  const weights = (width: number) => c.dModel * width * s.weightBytes;
  const project = (rows: number, width: number) => ({
    flops: 2 * rows * c.dModel * width,
    bytes: weights(width) + 2 * rows * width * 4,
    weightBytes: weights(width),
  });
  const mass = call.output === 'mass' || call.output === 'mass_heads' || call.output === 'row';
  // `row` scores its nq query rows, then one of them again for the row it returns.
  const scored = call.output === 'row' ? nq + 1 : nq;
  const scores = mass
    ? // softmax of each query's scores, summed into the mass of each key (float64)
      {
        flops: 2 * scored * L * q + 5 * scored * L * c.heads,
        bytes: 8 * L * (call.output === 'row' ? 2 : 1),
        weightBytes: 0,
      }
    : // the mean query against every key
      { flops: 2 * L * q + nq * q, bytes: 8 * L, weightBytes: 0 };
  const drift = call.output === 'k' || call.output === 'v';
  // Rows normalised and projected: every row's keys and the query rows' queries, or what was new.
  const keyRows = call.projected?.keys ?? L;
  const queryRows = drift ? 0 : (call.projected?.queries ?? nq);
  const normRows = call.projected?.norms ?? L;
  const norm = { flops: 4 * normRows * c.dModel, bytes: 2 * normRows * c.dModel * 4, weightBytes: 0 };
  // The norm and the projections run as GEMM-like kernels, the scores as attention (the mass on its
  // own kernel, kv_attention_mass).
  const gemms = drift ? [norm, project(keyRows, kv)] : [norm, project(queryRows, q), project(keyRows, kv)];
  const parts = drift ? [] : [scores];
  const total = (ps: readonly { flops: number; bytes: number; weightBytes: number }[], peak: number) =>
    ps.map((p) => ({
      flops: s.batch * p.flops,
      bytes: s.batch * p.bytes,
      ...rooflineTime(s.batch * p.flops, s.batch * p.bytes, hw, {
        weightBytes: s.batch * p.weightBytes,
        peak,
      }),
    }));
  // What a call writes on the host (src/backends/cpu/probe.ts): the normalised state, the
  // projections (query_key also widens them to float64); a drift also reads the cached K or V
  // (cachePart), in float32, and compares the two in place (kv_row_drift).
  const fresh = drift
    ? 4 * L * c.dModel + (4 + 4) * L * kv
    : 4 * L * c.dModel + 4 * (nq * q + L * kv) + (call.output === 'query_key' ? 8 * (nq * q + L * kv) : 0);
  const host = hw.readbackBandwidth
    ? [
        {
          flops: 0,
          bytes: s.batch * fresh,
          seconds: (s.batch * fresh) / hw.readbackBandwidth,
          bound: 'memory',
        },
      ]
    : [];
  const attention = hw.attentionFlops ?? hw.peakFlops;
  const costs = [
    ...total(gemms, hw.peakFlops),
    ...total(parts, mass ? (hw.massFlops ?? attention) : attention),
    ...host,
  ];
  const flops = costs.reduce((a, p) => a + p.flops, 0);
  const bytes = costs.reduce((a, p) => a + p.bytes, 0);
  const seconds = costs.reduce((a, p) => a + p.seconds, 0);
  const compute = costs.filter((p) => p.bound === 'compute').reduce((a, p) => a + p.seconds, 0);
  return {
    name: `probe.${call.layer}/${call.output}`,
    kind: 'probe',
    weights: call.output === 'v' ? ['v_proj'] : ['q_proj', 'k_proj'],
    flops,
    bytes,
    seconds,
    bound: compute > seconds / 2 ? 'compute' : 'memory',
  };
}
