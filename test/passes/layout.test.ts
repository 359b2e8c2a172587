import { describe, expect, test } from 'vitest';
import type { Dim, DType } from '../../src/ir/types.ts';
import { presets } from '../../src/model/presets.ts';
import type { Buffer, BufferKind, Kernel, KernelProgram } from '../../src/passes/kernelIR.ts';
import { chooseLayouts, layoutPass, layoutRole, layoutTable } from '../../src/passes/layout.ts';
import type { PipelineState, Target } from '../../src/passes/state.ts';
import { kernel } from './kernels.ts';

const buf = (name: string, kind: BufferKind, dtype: DType, shape: Dim[]): Buffer => ({
  name,
  kind,
  dtype,
  shape,
  layout: 'unset',
});

const kern = (name: string, kind: Kernel['kind'], reads: string[], writes: string[]): Kernel =>
  kernel(name, reads, writes, kind);

const kp: KernelProgram = Object.freeze({
  name: 'refresh',
  buffers: Object.freeze([
    buf('tokens', 'input', 'i32', ['L']),
    buf('model.embed_tokens.weight', 'weight', 'f32', [64, 16]),
    buf('model.layers.0.input_layernorm.weight', 'weight', 'f32', [16]),
    buf('model.layers.0.self_attn.q_proj.weight', 'weight', 'f32', [16, 16]),
    buf('x', 'temp', 'f32', ['L', 16]),
    buf('q', 'temp', 'f32', ['L', 16]),
    buf('kv.k.0', 'persistent', 'f32', ['L', 2, 8]),
    buf('kv.v.0', 'persistent', 'f32', ['L', 2, 8]),
    buf('hidden.0', 'persistent', 'f32', ['L', 16]),
    buf('logits', 'temp', 'f32', ['L', 64]),
  ]),
  kernels: Object.freeze([
    kern('embed', 'embed', ['tokens', 'model.embed_tokens.weight'], ['x']),
    kern('norm', 'norm', ['x', 'model.layers.0.input_layernorm.weight'], ['x']),
    kern('q', 'gemm', ['x', 'model.layers.0.self_attn.q_proj.weight'], ['q', 'kv.k.0', 'kv.v.0', 'hidden.0']),
    // tied embeddings: the embedding table is also the LM head's GEMM weight
    kern('head', 'gemm', ['q', 'model.embed_tokens.weight'], ['logits']),
  ]),
});

const layouts = (p: KernelProgram) => Object.fromEntries(p.buffers.map((b) => [b.name, b.layout]));

describe('layout table', () => {
  test.each([
    ['reference', 'row-major'],
    ['cpu', 'packed-k16'],
    ['wgsl', 'row-major'],
    ['ptx', 'k-major'],
  ] as const)('%s: GEMM weights %s, everything else row-major', (target, weight) => {
    expect(layouts(chooseLayouts(kp, target))).toEqual({
      tokens: 'row-major',
      'model.embed_tokens.weight': weight,
      'model.layers.0.input_layernorm.weight': 'row-major',
      'model.layers.0.self_attn.q_proj.weight': weight,
      x: 'row-major',
      q: 'row-major',
      'kv.k.0': 'row-major',
      'kv.v.0': 'row-major',
      'hidden.0': 'row-major',
      logits: 'row-major',
    });
  });

  test('roles: a matrix weight a GEMM reads is a GEMM weight, even when other kernels read it too', () => {
    const role = (name: string) => layoutRole(kp, kp.buffers.find((b) => b.name === name) as Buffer);
    expect(role('kv.k.0')).toBe('other');
    expect(role('hidden.0')).toBe('other');
    expect(role('model.layers.0.self_attn.q_proj.weight')).toBe('gemm-weight');
    // tied embeddings: gathered by embed and the LM head's GEMM weight
    expect(role('model.embed_tokens.weight')).toBe('gemm-weight');
    expect(role('model.layers.0.input_layernorm.weight')).toBe('other');
    // an unread weight is not a GEMM weight, nor is a 1-D one a GEMM reads (a bias)
    expect(layoutRole(kp, buf('unused', 'weight', 'f32', [4, 4]))).toBe('other');
    const bias = buf('model.layers.0.self_attn.q_proj.weight', 'weight', 'f32', [4]);
    expect(layoutRole(kp, bias)).toBe('other');
  });

  test('the table covers every role and target', () => {
    const targets: Target[] = ['reference', 'cpu', 'wgsl', 'ptx'];
    for (const row of Object.values(layoutTable))
      expect(Object.keys(row).sort()).toEqual([...targets].sort());
    for (const t of targets) expect(layoutTable.other[t]).toBe('row-major');
  });
});

describe('layoutPass', () => {
  const config = presets[Object.keys(presets)[0] as string];
  if (config === undefined) throw new Error('no preset');

  test('builds new kernel programs for every phase and leaves the input untouched', () => {
    const cached: KernelProgram = { ...kp, name: 'cached' };
    const state = {
      phases: new Map(),
      kernels: new Map([
        ['refresh', kp],
        ['cached', cached],
      ]),
    } as unknown as PipelineState;
    const out = layoutPass.run(state, { config, target: 'cpu' });
    expect(layoutPass.name).toBe('layout');
    expect([...(out.kernels?.keys() ?? [])]).toEqual(['refresh', 'cached']);
    const refresh = out.kernels?.get('refresh');
    expect(refresh).not.toBe(kp);
    const q = 'model.layers.0.self_attn.q_proj.weight';
    expect(refresh?.buffers.find((b) => b.name === q)?.layout).toBe('packed-k16');
    expect(out.kernels?.get('cached')?.buffers.find((b) => b.name === q)?.layout).toBe('packed-k16');
    expect(kp.buffers.every((b) => b.layout === 'unset')).toBe(true);
    expect(state.kernels?.get('refresh')).toBe(kp);
  });

  test('needs kernels', () => {
    expect(() =>
      layoutPass.run({ phases: new Map() } as unknown as PipelineState, { config, target: 'ptx' }),
    ).toThrow(/run 'fusion' first/);
  });
});
