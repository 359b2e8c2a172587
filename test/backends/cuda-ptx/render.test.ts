import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { attentionKernel } from '../../../src/backends/cuda-ptx/kernels/attention.ts';
import { generateKernel } from '../../../src/backends/cuda-ptx/kernels/index.ts';
import { evalLaunchDim, type Launch } from '../../../src/backends/cuda-ptx/render.ts';
import { buildPtx } from '../../../src/backends/cuda-ptx/runner.ts';
import { runCompile } from '../../../src/cli/compile.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { presets } from '../../../src/model/presets.ts';
import { examplePlan } from '../../runtime/support.ts';

const small = presets.small as ModelConfig;
const launches = (phases: Readonly<Record<string, readonly { launches: readonly Launch[] }[]>>) =>
  Object.values(phases).flatMap((stages) => stages.flatMap((s) => s.launches));

describe('PTX renderer', () => {
  test('the generated attention kernel (head_dim 16, merge epilogue, sm_80) is pinned', () => {
    expect(generateKernel({ op: 'attention', headDim: 16, merge: true }, 'sm_80').ptx).toMatchSnapshot();
  });

  test('one module per kernel, with the ISA version, target and 64-bit addressing', () => {
    const r = buildPtx(examplePlan('flashblock'), small, 64, { arch: 'sm_90', gemm: 'mma-f16' }).render;
    expect(r.files.size).toBeGreaterThan(5);
    for (const [name, text] of r.files) {
      expect(text).toMatch(/^\.version 8\.0$/m);
      expect(text).toMatch(/^\.target sm_90$/m);
      expect(text).toMatch(/^\.address_size 64$/m);
      expect(text).toContain(`.visible .entry ${name}(`);
    }
    expect(r.files.get('kvp_gemm_mma_f16')).toContain('mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32');
    expect(r.files.get('kvp_attention_hd16_seq')).toContain('cp.async.cg.shared.global');
    expect(r.files.get('kvp_attention_hd16_seq')).toContain('ex2.approx');
  });

  test('launches: symbolic grids, k-major GEMM weights, attention with the merge folded in', () => {
    const r = buildPtx(examplePlan('flashblock'), small, 64, { arch: 'sm_80', gemm: 'mma-f16' }).render;
    const m = r.manifest;
    expect(Object.keys(m.phases).sort()).toEqual(['cached', 'refresh', 'reuse']);
    const all = launches(m.phases);
    const gemms = all.filter((l) => l.kernel === 'kvp_gemm_mma_f16');
    expect(gemms.length).toBeGreaterThan(0);
    for (const g of gemms) {
      expect(g.grid[0]).toMatchObject({ mul: 1, div: 64 });
      expect(typeof g.grid[0].size).toBe('number');
      expect(g.grid[1]).toMatchObject({ mul: 1, div: 64 });
      const w = g.params.find((p) => p.name === 'p_w')?.binding;
      expect(w?.kind).toBe('buffer');
      const slot = m.slots.find((s) => w?.kind === 'buffer' && s.name === w.slot);
      expect(slot).toMatchObject({ layout: 'k-major', kind: 'weight' });
      expect(slot?.transposeOf).toBeDefined();
    }
    // Index lists stay runtime data: attention grids and counts refer to list sizes by name.
    const att = all.filter((l) => l.kernel.startsWith('kvp_attention'));
    expect(att.some((l) => l.op === 'attention + merge' && l.kernel === 'kvp_attention_hd16_merge_seq')).toBe(
      true,
    );
    for (const a of att) {
      expect(typeof a.grid[0].size).toBe('string');
      expect(a.grid[1]).toEqual({ size: small.kvHeads, mul: 1, div: 1 });
      expect(a.params.find((p) => p.name === 'p_nk')?.binding.kind).toBe('count');
    }
    expect(m.sizes[0]).toBe('L');
    expect(m.sizes).toContain('#rows.0');
    // Sizes evaluate to grids.
    const g0 = att[0]?.grid[0];
    if (!g0) throw new Error('no attention launch');
    expect(evalLaunchDim(g0, () => 33)).toBe(Math.ceil((33 * (small.heads / small.kvHeads)) / 32));
    // Slots: every launch buffer names a slot of the manifest.
    const slots = new Set(m.slots.map((s) => s.name));
    for (const l of all)
      for (const p of l.params)
        if (p.binding.kind === 'buffer') expect(slots.has(p.binding.slot), p.binding.slot).toBe(true);
  });

  test('the GEMM of a 16-bit weight reads W as its bits and converts only A', () => {
    for (const dtype of ['f16', 'bf16'] as const) {
      const ptx = generateKernel({ op: 'gemm16', dtype }, 'sm_80').ptx;
      expect(ptx).toContain(`.visible .entry kvp_gemm16_${dtype}(`);
      expect(ptx).toContain(`mma.sync.aligned.m16n8k16.row.col.f32.${dtype}.${dtype}.f32`);
      expect(ptx).toContain('ld.global.nc.v2.b32');
      expect(ptx).toContain(`cvt.rn.${dtype}x2.f32`);
      expect(ptx).not.toContain(`cvt.rn.${dtype}.f32`);
    }
  });

  test('a head_dim whose tiles do not fit in 48 KiB of shared memory is refused clearly', () => {
    expect(() => attentionKernel({ arch: 'sm_80', headDim: 256, merge: false })).toThrow(/shared memory/);
    expect(() => attentionKernel({ arch: 'sm_80', headDim: 10, merge: false })).toThrow(/multiple of 4/);
  });

  test('kvplan compile --target ptx --arch sm_90 -o writes the .ptx files and a manifest', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvplan-ptx-'));
    try {
      const err: string[] = [];
      const code = await runCompile(
        ['examples/fast-dllm-dual.kvp'],
        { config: 'small', target: 'ptx', arch: 'sm_90', output: dir, promptLength: 16, genLength: 32 },
        { out: () => {}, err: (t) => err.push(t) },
      );
      expect(code).toBe(0);
      const files = readdirSync(dir).sort();
      expect(files).toContain('fast_dllm_dual.ptx-manifest.json');
      expect(files.filter((f) => f.endsWith('.ptx')).length).toBeGreaterThan(5);
      const manifest = JSON.parse(readFileSync(join(dir, 'fast_dllm_dual.ptx-manifest.json'), 'utf8'));
      expect(manifest.arch).toBe('sm_90');
      for (const k of Object.values(manifest.kernels) as { file: string }[]) expect(files).toContain(k.file);
      expect(readFileSync(join(dir, 'kvp_add.ptx'), 'utf8')).toMatch(/^\.target sm_90$/m);
      const bad: string[] = [];
      expect(
        await runCompile(
          ['examples/fast-dllm-dual.kvp'],
          { config: 'small', target: 'ptx', arch: 'sm_70', output: dir, promptLength: 16, genLength: 32 },
          { out: () => {}, err: (t) => bad.push(t) },
        ),
      ).not.toBe(0);
      expect(bad.join('')).toMatch(/--arch sm_70/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
