import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { cudaAvailable } from '../../../src/backends/cuda-ptx/driver.ts';
import {
  ARCHES,
  type GeneratedKernel,
  generateKernel,
} from '../../../src/backends/cuda-ptx/kernels/index.ts';
import {
  assemble,
  findPtxas,
  PtxasError,
  type PtxasReport,
  parsePtxasVerbose,
} from '../../../src/backends/cuda-ptx/ptxas.ts';
import { renderPtx } from '../../../src/backends/cuda-ptx/render.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { presets } from '../../../src/model/presets.ts';
import { compilePlan } from '../../../src/passes/compile.ts';
import { examplePlan, examples } from '../../runtime/support.ts';
import { GEMM_SPECS } from './checks.ts';

const ptxas = findPtxas();
const PRESETS = ['small', 'llada-8b', 'dream-7b'] as const;

describe('ptxas', () => {
  test('every kernel of every example plan (small, llada-8b, dream-7b) assembles for sm_80 and sm_90; no spills in GEMM and attention', () => {
    // Render everything first: this part needs no ptxas and must hold everywhere.
    const unique = new Map<
      string,
      { name: string; arch: string; kind: GeneratedKernel['kind']; text: string }
    >();
    let launches = 0;
    for (const preset of PRESETS) {
      const config = presets[preset] as ModelConfig;
      for (const ex of examples) {
        const { state } = compilePlan(examplePlan(ex), config, { target: 'ptx', canvas: 512 });
        if (!state.kernels || !state.memory) throw new Error('no kernels');
        for (const arch of ARCHES) {
          const r = renderPtx(config, state.phases, state.kernels, state.memory, { arch, maxCanvas: 512 });
          for (const stages of Object.values(r.manifest.phases))
            for (const st of stages)
              for (const l of st.launches) {
                launches++;
                const info = r.manifest.kernels[l.kernel];
                expect(info, l.kernel).toBeDefined();
                expect(r.files.has(l.kernel)).toBe(true);
                expect(l.params.map((p) => p.name)).toEqual(info?.params.map((p) => p.name));
                expect(l.sharedBytes).toBeLessThanOrEqual(48 * 1024);
              }
          for (const [name, text] of r.files) {
            const key = createHash('sha256').update(arch).update(text).digest('hex');
            const kind = r.manifest.kernels[name]?.kind ?? 'elementwise';
            unique.set(key, { name, arch, kind, text });
          }
        }
      }
    }
    // Every GEMM kernel (each path, and the 16-bit-weight GEMM of each dtype), whichever the plans used.
    for (const arch of ARCHES)
      for (const spec of GEMM_SPECS) {
        const k = generateKernel(spec, arch);
        unique.set(createHash('sha256').update(arch).update(k.ptx).digest('hex'), {
          name: k.name,
          arch,
          kind: k.kind,
          text: k.ptx,
        });
      }
    expect(launches).toBeGreaterThan(1000);
    const kinds = new Set([...unique.values()].map((u) => u.kind));
    for (const k of ['gemm', 'attention', 'norm', 'rope', 'elementwise', 'copy', 'merge', 'embed'])
      expect(kinds).toContain(k);
    if (!ptxas) {
      console.log('skipped: ptxas not found (rendered and checked the manifests only)');
      return;
    }
    const rows: (PtxasReport & { kind: string })[] = [];
    for (const u of unique.values()) {
      const reports = assemble(u.text, u.arch, u.name, ptxas);
      expect(reports.map((r) => r.entry)).toEqual([u.name]);
      const rep = reports[0] as PtxasReport;
      expect(rep.arch).toBe(u.arch);
      rows.push({ ...rep, kind: u.kind });
    }
    rows.sort((a, b) => a.entry.localeCompare(b.entry) || a.arch.localeCompare(b.arch));
    console.log(
      `ptxas -v, ${rows.length} distinct kernels:\n${rows
        .map(
          (r) =>
            `  ${r.entry.padEnd(32)} ${r.arch}  ${String(r.registers).padStart(3)} regs  spill ${r.spillStores}/${r.spillLoads}  stack ${r.stackFrame}`,
        )
        .join('\n')}`,
    );
    for (const arch of ARCHES)
      for (const kind of ['gemm', 'attention'])
        expect(rows.filter((r) => r.kind === kind && r.arch === arch).length).toBeGreaterThan(0);
    for (const r of rows.filter((x) => x.kind === 'gemm' || x.kind === 'attention')) {
      expect({
        entry: r.entry,
        arch: r.arch,
        spill: r.spillStores + r.spillLoads,
        stack: r.stackFrame,
      }).toEqual({
        entry: r.entry,
        arch: r.arch,
        spill: 0,
        stack: 0,
      });
      expect(r.registers).toBeLessThanOrEqual(128);
    }
    for (const r of rows) expect(r.spillStores + r.spillLoads).toBe(0);
  }, 120_000);

  test('a broken kernel gives an error located at its line', () => {
    const k = generateKernel({ op: 'gemm', path: 'fma' }, 'sm_80');
    const lines = k.ptx.split('\n');
    const at = lines.findIndex((l) => l.includes('fma.rn.f32'));
    lines[at] = '\tfma.rn.f32 %f0, %f1;';
    if (!ptxas) {
      console.log('skipped: ptxas not found');
      return;
    }
    let err: unknown;
    try {
      assemble(lines.join('\n'), 'sm_80', 'broken', ptxas);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PtxasError);
    const e = err as PtxasError;
    expect(e.line).toBe(at + 1);
    expect(e.message).toContain(`broken.ptx:${at + 1}:`);
    expect(e.message).toContain('fma.rn.f32 %f0, %f1;');
  });

  test('a missing ptxas is a clear error', () => {
    expect(() => assemble('.version 8.0', 'sm_80', 'x', null)).toThrow(/ptxas not found/);
    expect(findPtxas({ PATH: '/nonexistent' })).toBeNull();
  });

  test('ptxas -v output is parsed per entry', () => {
    const text = [
      "ptxas info    : Compiling entry function 'kvp_a' for 'sm_90'",
      'ptxas info    : Function properties for kvp_a',
      '    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads',
      'ptxas info    : Used 96 registers, used 1 barriers, 2048 bytes smem, 412 bytes cmem[0]',
    ].join('\n');
    expect(parsePtxasVerbose(text)).toEqual([
      {
        entry: 'kvp_a',
        arch: 'sm_90',
        registers: 96,
        spillStores: 4,
        spillLoads: 12,
        stackFrame: 8,
        sharedStatic: 2048,
        barriers: 1,
      },
    ]);
  });
});

describe('CUDA launch path', () => {
  test('cudaAvailable() says why it cannot launch', () => {
    const s = cudaAvailable();
    if (!s.ok) {
      expect(s.reason).toMatch(/^no CUDA device/);
      console.log(`skipped: no CUDA device (${s.reason})`);
      return;
    }
    expect(s.reason).toMatch(/CUDA device/);
  });
});
