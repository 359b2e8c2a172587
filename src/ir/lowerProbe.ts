import type { ModelConfig } from '../model/config.ts';
import { ProgramBuilder } from './builder.ts';
import { layerWeight } from './names.ts';
import { index, type StepProgram, tensor, type Value } from './types.ts';

/**
 * A one-stage program that measures what scores such as attention_mass, query_key, rollout,
 * value_drift, key_drift and attn_similarity need at one layer: the attention mass each key receives
 * from a set of queries through each KV head's query heads (`mass_heads`, [L, KVH]; a key's mass is
 * their sum), the mean query-key product, and fresh keys and values of every row.
 */
export function lowerProbe(c: ModelConfig, layer: number, blockCausal: boolean): StepProgram {
  const pb = new ProgramBuilder(`probe.${layer}`);
  const sb = pb.stage(`probe.${layer}`);
  const h = sb.input('h', 'carried', tensor('f32', ['L', c.dModel]));
  const queries = sb.input('queries', 'index', index('#queries'));
  const keys = sb.input('keys', 'index', index('L'));
  const blocks = blockCausal ? sb.input('blocks', 'blocks', tensor('i32', ['L'])) : undefined;
  const weight = (name: string, shape: number[]) =>
    sb.input(layerWeight(layer, name), 'weight', tensor('f32', shape));
  const xn = sb.op1('rmsnorm', [h, weight('input_layernorm.weight', [c.dModel])], { eps: c.normEps });
  const proj = (name: string, n: number, rows: typeof queries | undefined) => {
    const x = rows ? sb.op1('gather', [xn, rows]) : xn;
    const w = weight(`self_attn.${name}.weight`, [n * c.headDim, c.dModel]);
    const y = sb.op1(
      'linear',
      c.qkvBias ? [x, w, weight(`self_attn.${name}.bias`, [n * c.headDim])] : [x, w],
    );
    return sb.op1('reshape', [y], { inner: [n, c.headDim] });
  };
  const normed = (v: Value, name: string) =>
    c.qkNorm
      ? sb.op1('rmsnorm', [v, weight(`self_attn.${name}.weight`, [c.headDim])], { eps: c.normEps })
      : v;
  const q = sb.op1('rope', [normed(proj('q_proj', c.heads, queries), 'q_norm'), queries], {
    theta: c.ropeTheta,
  });
  const k = sb.op1('rope', [normed(proj('k_proj', c.kvHeads, keys), 'k_norm'), keys], { theta: c.ropeTheta });
  const massArgs = blocks ? [q, k, queries, keys, blocks] : [q, k, queries, keys];
  sb.output(
    'mass_heads',
    sb.op1('attention_mass', massArgs, {
      scale: 1 / Math.sqrt(c.headDim),
      mask: blocks ? 'block_causal' : 'none',
      per_kv_head: true,
    }),
  );
  sb.output('query_key', sb.op1('query_key', [q, k]));
  sb.output('k', k);
  sb.output('v', proj('v_proj', c.kvHeads, keys));
  sb.finish();
  return pb.finish();
}
