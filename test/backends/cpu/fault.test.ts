/**
 * The fault hook of the C primitives (src/backends/fault.ts), which the mutation test
 * (test/cli/mutation.test.ts) relies on: wired into every faultable primitive, absent from a normal
 * unit, and part of what the compiled library's cache key covers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { DEFAULT_FLAGS } from '../../../src/backends/cpu/compiler.ts';
import { loadPrimitives, type Primitives, primitivesSource } from '../../../src/backends/cpu/primitives.ts';
import { renderC } from '../../../src/backends/cpu/render.ts';
import { type FaultPrimitive, faultPrimitives, parseFault } from '../../../src/backends/fault.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { presets } from '../../../src/model/presets.ts';
import { compilePlan } from '../../../src/passes/compile.ts';
import { examplePlan } from '../../runtime/support.ts';

const cacheDir = mkdtempSync(join(tmpdir(), 'kvplan-fault-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

const define = (p: FaultPrimitive) => `KV_FAULT_${p.toUpperCase()}`;

describe('C fault hook', () => {
  test('the generated unit defines an armed fault ahead of the primitives, and nothing otherwise', () => {
    const config = { ...(presets.tiny as ModelConfig), layers: 1 };
    const { state } = compilePlan(examplePlan('baseline'), config, { target: 'cpu', canvas: 16 });
    if (!state.kernels || !state.memory) throw new Error('no kernels');
    const render = (spec?: string) =>
      renderC(
        config,
        state.phases,
        state.kernels as NonNullable<typeof state.kernels>,
        state.memory as NonNullable<typeof state.memory>,
        16,
        spec === undefined ? undefined : parseFault(spec),
      ).source;
    const normal = render();
    expect(normal).not.toContain('KV_FAULT');
    const faulty = render('rmsnorm:0.01');
    const head =
      '/* FAULT INJECTED (test only): rmsnorm outputs scaled by 1.01 (relative 0.01). */\n#define KV_FAULT_RMSNORM 1.01f\n';
    expect(faulty).toContain(`${head}#include "kvplan_cpu.h"`);
    // The source, and with it the library's content hash, differs by exactly the fault.
    expect(faulty.replace(head, '')).toBe(normal);
  });

  test('every faultable primitive has its hook in kvplan_cpu.c', () => {
    const source = primitivesSource();
    // A primitive of several outputs (kv_gemm_multi) hooks each in a loop.
    for (const p of faultPrimitives)
      expect(source).toMatch(
        new RegExp(`#ifdef ${define(p)}\\n  (for \\(.*\\) )?KVI_FAULT\\(${define(p)}, `),
      );
  });

  test('built with every hook at factor 2, each primitive returns exactly twice the normal output', async () => {
    const normal = await loadPrimitives({ cacheDir });
    const faulty = await loadPrimitives({
      cacheDir,
      flags: [...DEFAULT_FLAGS, ...faultPrimitives.map((p) => `-D${define(p)}=2.0f`)],
    });
    expect(faulty.path).not.toBe(normal.path);
    let seed = 7;
    const rand = (n: number) =>
      Float32Array.from({ length: n }, () => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed / 2 ** 30 - 1;
      });
    const [m, n, k, heads, hd, L] = [5, 7, 9, 2, 8, 6];
    const a = rand(m * k);
    const w = rand(n * k);
    const bias = rand(n);
    const q = rand(3 * heads * hd);
    const kc = rand(L * hd);
    const vc = rand(L * hd);
    const pos = Int32Array.from([0, 2, 5]);
    const keys = Int32Array.from([0, 1, 2, 3, 4, 5]);
    const x = rand(4 * 16);
    const g = rand(16);
    const r = rand(3 * heads * hd);
    const outputs = (p: Primitives): Record<FaultPrimitive, Float32Array> => {
      const c = new Float32Array(m * n);
      p.gemm(m, n, k, a, k, null, p.packWeight(n, k, w), bias, c, n, false);
      const o = new Float32Array(3 * heads * hd);
      p.attention(3, L, heads, 1, hd, 0.35, q, kc, vc, pos, keys, null, o, new Float32Array(3 * heads));
      const norm = new Float32Array(4 * 16);
      p.rmsnorm(4, 16, x, null, g, 1e-5, norm);
      const rot = Float32Array.from(r);
      p.rope(3, heads, hd, rot, pos, 10000);
      const sw = new Float32Array(37);
      p.swiglu(37, rand(37), rand(37), sw);
      return { gemm: c, attention: o, rmsnorm: norm, rope: rot, swiglu: sw };
    };
    const before = seed;
    const want = outputs(normal);
    seed = before;
    const got = outputs(faulty);
    for (const p of faultPrimitives) {
      expect(want[p].some((v) => v !== 0)).toBe(true);
      expect(Array.from(got[p]), p).toEqual(Array.from(want[p], (v) => 2 * v));
    }
  });
});
