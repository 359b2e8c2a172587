/**
 * The cost of the score probes a plan's rules ask for (attention_mass, query_key, rollout,
 * value_drift, attn_similarity): the runtime measures them on the hidden state entering a layer,
 * with the probe program of src/ir/lowerProbe.ts, outside the step's kernels. A plan that measures
 * rollout every step pays for it, and the advisor says so.
 */
import type { ModelConfig } from '../model/config.ts';
import type { ProbeOutput } from '../runtime/probe.ts';
import { type KernelCost, type Roofline, rooflineTime, type Sizes } from './roofline.ts';

export interface ProbeCall {
  readonly output: ProbeOutput;
  readonly layer: number;
  /** Query rows (`mass`, `query_key`); `v` projects every row. */
  readonly queries: number;
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
  const project = (rows: number, width: number) => ({
    flops: 2 * rows * c.dModel * width,
    bytes: c.dModel * width * s.weightBytes + 2 * rows * width * 4,
  });
  const parts =
    call.output === 'v'
      ? [project(L, kv)]
      : [
          project(nq, q),
          project(L, kv),
          call.output === 'mass'
            ? // softmax of each query's scores, summed into the mass of each key (float64)
              { flops: 2 * nq * L * q + 5 * nq * L * c.heads, bytes: 8 * L }
            : // the mean query against every key
              { flops: 2 * L * q + nq * q, bytes: 8 * L },
        ];
  const norm = { flops: 4 * L * c.dModel, bytes: 2 * L * c.dModel * 4 };
  const flops = s.batch * [norm, ...parts].reduce((a, p) => a + p.flops, 0);
  const bytes = s.batch * [norm, ...parts].reduce((a, p) => a + p.bytes, 0);
  return {
    name: `probe.${call.layer}/${call.output}`,
    kind: 'probe',
    weights: call.output === 'v' ? ['v_proj'] : ['q_proj', 'k_proj'],
    flops,
    bytes,
    ...rooflineTime(flops, bytes, hw),
  };
}
