import { describe, expect, it } from 'vitest';
import { printAttrs, printName, printNumber, printOpName, printProgram } from '../../src/ir/printer.ts';
import { parseProgram } from '../../src/ir/textParser.ts';
import { verifyProgram } from '../../src/ir/verify.ts';
import { smallProgram } from './fixtures.ts';

const expected = `program fast_dllm_dual.cached {
  resource kv.k.0: f32[L,2,8] kv
  resource kv.v.0: f32[L,2,8] kv
  stage embed {
    in %0: i32[L] = tokens tokens
    in %1: f32[100,32] = weight model.embed_tokens.weight
    %2: f32[L,32] = embed %1, %0
    out h = %2
  }
  stage layer.0 {
    in %3: f32[L,32] = carried h
    in %4: index[#rows.0] = index rows.0
    in %5: index[#keys.0] = index keys.0
    in %7: f32[32] = weight model.layers.0.input_layernorm.weight
    in %9: f32[32,32] = weight model.layers.0.self_attn.q_proj.weight
    in %13: f32[16,32] = weight model.layers.0.self_attn.k_proj.weight
    in %17: f32[16,32] = weight model.layers.0.self_attn.v_proj.weight
    %6: f32[#rows.0,32] = gather %3, %4
    %8: f32[#rows.0,32] = rmsnorm %6, %7 {eps = 0.00001}
    %10: f32[#rows.0,32] = linear %8, %9
    %11: f32[#rows.0,4,8] = reshape %10 {inner = [4, 8]}
    %12: f32[#rows.0,4,8] = rope %11, %4 {theta = 10000}
    %14: f32[#rows.0,16] = linear %8, %13
    %15: f32[#rows.0,2,8] = reshape %14 {inner = [2, 8]}
    %16: f32[#rows.0,2,8] = rope %15, %4 {theta = 10000}
    %18: f32[#rows.0,16] = linear %8, %17
    %19: f32[#rows.0,2,8] = reshape %18 {inner = [2, 8]}
    cache_write %4, %16 {resource = "kv.k.0"}
    cache_write %4, %19 {resource = "kv.v.0"}
    %20: f32[L,2,8] = cache_read {resource = "kv.k.0"}
    %21: f32[#keys.0,2,8] = gather %20, %5
    %22: f32[L,2,8] = cache_read {resource = "kv.v.0"}
    %23: f32[#keys.0,2,8] = gather %22, %5
    %24: f32[#rows.0,4,8], %25: f32[#rows.0,4] = attention %12, %21, %23, %4, %5 {mask = "none", scale = 0.35355339059327373}
    %26: f32[#rows.0,32] = reshape %24 {inner = [32]}
    %27: f32[#rows.0,32] = gather %3, %4
    %28: f32[#rows.0,32] = add %27, %26
    %29: f32[L,32] = scatter %3, %4, %28
    out h = %29
  }
}
`;

describe('printProgram', () => {
  it('prints a small hand-built program in the stable text form', () => {
    const p = smallProgram();
    expect(verifyProgram(p)).toEqual([]);
    expect(printProgram(p)).toBe(expected);
  });

  it('reads its own output back', () => {
    const p = smallProgram();
    const r = parseProgram(printProgram(p));
    expect(r.errors).toEqual([]);
    expect(r.program).toEqual(p);
  });

  it('sorts attributes, quotes strings, and prints numbers in shortest round-trip form', () => {
    expect(printAttrs({ z: 'a"b', a: [1, -2.5], m: true, n: -0, e: 1e-7, big: 1e21 })).toBe(
      ' {a = [1, -2.5], big = 1e+21, e = 1e-7, m = true, n = -0, z = "a\\"b"}',
    );
    expect(printAttrs({})).toBe('');
    expect(printNumber(0.1 + 0.2)).toBe('0.30000000000000004');
  });

  it('quotes names that are not plain identifiers or that are keywords', () => {
    expect(printName('model.layers.0.mlp.up_proj.weight')).toBe('model.layers.0.mlp.up_proj.weight');
    expect(printName('in')).toBe('in');
    expect(printOpName('in')).toBe('"in"');
    expect(printOpName('add')).toBe('add');
    expect(printName('a b')).toBe('"a b"');
    expect(printName('0abc')).toBe('"0abc"');
    expect(printName('')).toBe('""');
  });
});
