import { interpretStage, ResourceStore } from '../ir/interpret.ts';
import { lowerProbe } from '../ir/lowerProbe.ts';
import type { HostTensor, RuntimeValue } from '../ir/tensor.ts';
import type { Stage } from '../ir/types.ts';
import type { ModelConfig } from '../model/config.ts';
import { type Weights, widened } from '../model/weights.ts';

/** What a probe measures at one layer from the hidden state entering it (src/ir/lowerProbe.ts). */
export type ProbeOutput = 'mass' | 'mass_heads' | 'row' | 'query_key' | 'k' | 'v';

/** The key with the largest mass, the first of equals. */
export function mostAttended(mass: ArrayLike<number>): number {
  let top = 0;
  for (let i = 1; i < mass.length; i++) if ((mass[i] as number) > (mass[top] as number)) top = i;
  return top;
}

/**
 * Runs the probe program of a layer on one sequence's hidden state h [L, d_model]: `mass` (the
 * attention probability each row receives from the query rows, summed over queries and heads;
 * block-causal when `blocks` is given), `mass_heads` (the same summed over the query heads of
 * each KV head, [L, kv_heads]), `row` (the mass the query row of the key the query rows attend to
 * most gives each key, ties to the first: the attention row `attn_similarity` compares; one call
 * where `mass` twice would project the keys twice), `query_key` (the mean unscaled query-key product of each
 * row), `k` (fresh keys of every row after RoPE, [L, kv_heads, head_dim], as the K cache holds
 * them) or `v` (fresh values of every row, [L, kv_heads, head_dim]). Queries and keys are canvas
 * positions of the sequence; keys are all its rows. A `k` or `v` result may live in storage the
 * probe reuses at its next call (the drift scores read it at once); the other results are the
 * caller's.
 */
export interface Probe {
  measure(
    output: ProbeOutput,
    layer: number,
    h: HostTensor,
    queries: Int32Array,
    blocks: Int32Array | undefined,
  ): HostTensor;
  /**
   * Rows the last `measure` normalised and whose keys (or values) and queries it projected, for a
   * probe that keeps projections between calls; absent where every call projects what it is asked for.
   */
  readonly projected?: { readonly norms: number; readonly keys: number; readonly queries: number };
  /**
   * Drift of each of `rows` rows of `width` floats against a cache's, over columns [from, to): 1 -
   * cos(fresh_i, cached_i), or 1 where the cached row starts with NaN (never written). Optional: a
   * compiled probe computes it where both sides are float32, without widening them.
   */
  rowDrift?(
    fresh: Float32Array,
    cached: Float32Array,
    rows: number,
    width: number,
    from: number,
    to: number,
  ): Float64Array;
}

/** The probe on the float64 reference interpreter: the definition compiled probes are tested against. */
export class InterpretedProbe implements Probe {
  private readonly stages = new Map<string, Stage>();

  constructor(
    private readonly config: ModelConfig,
    private readonly weights: Weights,
    /** Rounds every result to float32: the eager evaluation that sets compiled probes' error budget. */
    private readonly float32 = false,
  ) {}

  private stage(layer: number, blockCausal: boolean): Stage {
    const key = `${layer}:${blockCausal}`;
    let s = this.stages.get(key);
    if (!s) {
      s = lowerProbe(this.config, layer, blockCausal).stages[0] as Stage;
      this.stages.set(key, s);
    }
    return s;
  }

  measure(
    output: ProbeOutput,
    layer: number,
    h: HostTensor,
    queries: Int32Array,
    blocks: Int32Array | undefined,
  ): HostTensor {
    const L = h.shape[0] as number;
    if (output === 'row') {
      const top = mostAttended(this.measure('mass', layer, h, queries, blocks).data);
      return this.measure('mass', layer, h, Int32Array.of(top), blocks);
    }
    const stage = this.stage(layer, blocks !== undefined);
    const inputs = new Map<string, RuntimeValue>([
      ['h', h],
      ['queries', queries],
      ['keys', Int32Array.from({ length: L }, (_, i) => i)],
    ]);
    if (blocks) inputs.set('blocks', { shape: [L], data: blocks });
    for (const i of stage.inputs) {
      if (i.role !== 'weight') continue;
      const w = this.weights.get(i.name);
      if (!w) throw new Error(`the probe needs weight ${i.name}, which the model does not have`);
      inputs.set(i.name, widened(w));
    }
    const results = interpretStage(stage, inputs, new ResourceStore([], { L }), { float32: this.float32 });
    if (output !== 'mass') return results.get(output) as HostTensor;
    // The program measures the mass of each KV head; a key's mass is their sum.
    const heads = results.get('mass_heads') as HostTensor;
    const kvh = heads.shape[1] as number;
    const data = new Float64Array(L);
    for (let j = 0; j < L; j++)
      for (let g = 0; g < kvh; g++) data[j] = (data[j] as number) + (heads.data[j * kvh + g] as number);
    return { shape: [L], data };
  }
}
