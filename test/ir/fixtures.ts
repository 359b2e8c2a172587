import { ProgramBuilder } from '../../src/ir/builder.ts';
import { index, type StepProgram, tensor, type Value } from '../../src/ir/types.ts';

/** A small hand-built layer: norm, q/k/v, rope, attention over cached + fresh keys, cache writes. */
export function smallProgram(): StepProgram {
  const pb = new ProgramBuilder('fast_dllm_dual.cached');
  const kRes = pb.resource({ name: 'kv.k.0', kind: 'kv', dtype: 'f32', shape: ['L', 2, 8] });
  const vRes = pb.resource({ name: 'kv.v.0', kind: 'kv', dtype: 'f32', shape: ['L', 2, 8] });
  const embed = pb.stage('embed');
  const tokens = embed.input('tokens', 'tokens', tensor('i32', ['L']));
  const table = embed.input('model.embed_tokens.weight', 'weight', tensor('f32', [100, 32]));
  embed.output('h', embed.op1('embed', [table, tokens]));
  embed.finish();
  const sb = pb.stage('layer.0');
  const h = sb.input('h', 'carried', tensor('f32', ['L', 32]));
  const rows = sb.input('rows.0', 'index', index('#rows.0'));
  const keys = sb.input('keys.0', 'index', index('#keys.0'));
  const w = (n: string, shape: number[]) => sb.input(`model.layers.0.${n}`, 'weight', tensor('f32', shape));
  const x = sb.op1('rmsnorm', [sb.op1('gather', [h, rows]), w('input_layernorm.weight', [32])], {
    eps: 1e-5,
  });
  const proj = (n: string, heads: number) =>
    sb.op1('reshape', [sb.op1('linear', [x, w(`self_attn.${n}.weight`, [heads * 8, 32])])], {
      inner: [heads, 8],
    });
  const q = sb.op1('rope', [proj('q_proj', 4), rows], { theta: 10000 });
  const kFresh = sb.op1('rope', [proj('k_proj', 2), rows], { theta: 10000 });
  const vFresh = proj('v_proj', 2);
  sb.cacheWrite(kRes, rows, kFresh);
  sb.cacheWrite(vRes, rows, vFresh);
  const k = sb.op1('gather', [sb.cacheRead(kRes), keys]);
  const v = sb.op1('gather', [sb.cacheRead(vRes), keys]);
  const [o] = sb.op('attention', [q, k, v, rows, keys], { scale: 1 / Math.sqrt(8), mask: 'none' }) as [Value];
  const flat = sb.op1('reshape', [o], { inner: [32] });
  sb.output('h', sb.op1('scatter', [h, rows, sb.op1('add', [sb.op1('gather', [h, rows]), flat])]));
  return pb.finish();
}
