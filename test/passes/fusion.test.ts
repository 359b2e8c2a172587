import { describe, expect, test } from 'vitest';
import type { Instr } from '../../src/ir/types.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { stagesFromKernels } from '../../src/passes/fusion.ts';
import type { KernelProgram } from '../../src/passes/kernelIR.ts';
import { checkMemoryPlan, sizesFor } from '../../src/passes/memory.ts';
import { simulateGeneration } from '../../src/runtime/simulate.ts';
import { examplePlan, examples } from '../runtime/support.ts';

const tiny = presets.tiny as ModelConfig;
const layerKernels = (kp: KernelProgram, layer: number) =>
  kp.kernels.filter((k) => k.stage === `layer.${layer}`);

describe('fusion', () => {
  test.each(examples)(
    '%s: kernel locals are the values a kernel keeps to itself, and the WebGPU plan places them apart',
    (name) => {
      const { state } = compilePlan(examplePlan(name), tiny, { target: 'wgsl', canvas: 16 });
      for (const [phase, kp] of state.kernels ?? []) {
        const mem = state.memory?.get(phase);
        if (!mem) throw new Error(`no memory plan for ${phase}`);
        expect(checkMemoryPlan(kp, mem, sizesFor(tiny, 16))).toEqual([]);
        for (const k of kp.kernels) {
          const locals = k.locals ?? [];
          const ops = locals.map((l) => k.instrs.find((i) => i.results.some((r) => `%${r.id}` === l))?.op);
          // Computed by the kernel itself, never an alias, never what it writes out.
          expect(ops.every((op) => op !== undefined && op !== 'reshape' && op !== 'cache_read')).toBe(true);
          for (const l of locals) expect(k.writes).not.toContain(l);
          // What a gemm loads through a list is not a local: the projections' inputs never are.
          for (const i of k.instrs)
            if (i.op === 'linear' && i.args[0]) expect(locals).not.toContain(`%${i.args[0].id}`);
          // Each local has a slot of its own while its kernel runs.
          const slots = [...new Set([...k.reads, ...k.writes, ...locals])].flatMap((b) => {
            const slot = mem.arena.get(b)?.slot;
            return slot === undefined ? [] : [slot];
          });
          for (const l of locals) expect(mem.arena.get(l)?.slot).toBeDefined();
          expect(new Set(slots).size).toBe(slots.length);
        }
      }
      // The FFN kernel's gate and up projections are locals of every layer.
      const ffn = state.kernels?.get('refresh')?.kernels.find((k) => k.epilogue.includes('swiglu'));
      expect(ffn?.locals?.length).toBe(2);
    },
  );

  test('a merge folds into the attention whose partial it merges, only when its other side exists first', () => {
    const { state } = compilePlan(examplePlan('flashblock'), tiny, { target: 'ptx' });
    let folded = 0;
    let separate = 0;
    for (const kp of state.kernels?.values() ?? [])
      for (const k of kp.kernels) {
        const ids = (i: { results: readonly { id: number }[] }) => i.results.map((r) => r.id);
        const at = (id: number) => k.instrs.findIndex((i) => i.results[0]?.id === id);
        for (const f of k.folds ?? []) {
          const att = k.instrs[at(f.attention)];
          const merge = k.instrs[at(f.merge)];
          expect(att?.op).toBe('attention');
          expect(merge?.op).toBe('merge');
          // The merge reads exactly the attention's results, and comes after it.
          expect(merge?.args.filter((a) => ids(att as Instr).includes(a.id))).toHaveLength(2);
          expect(at(f.merge)).toBeGreaterThan(at(f.attention));
          folded++;
        }
        separate += k.instrs.filter(
          (i) => i.op === 'merge' && !k.folds?.some((f) => f.merge === i.results[0]?.id),
        ).length;
      }
    // FlashBlock merges its in-block attention with the prefix partial: computed by an earlier
    // kernel, it folds; read back from the stored partial after the attention (the reuse phase), not.
    expect(folded).toBeGreaterThan(0);
    expect(separate).toBeGreaterThan(0);
  });

  test.each(examples)(
    '%s: every layer is a short list of fused kernels, with no standalone gathers',
    (name) => {
      const { state } = compilePlan(examplePlan(name), tiny, { target: 'reference' });
      for (const [phase, kp] of state.kernels ?? []) {
        expect(kp.kernels[0]?.kind).toBe('embed');
        expect(kp.kernels.slice(-2).map((k) => k.kind)).toEqual(['norm', 'logits']);
        for (let l = 0; l < tiny.layers; l++) {
          const kinds = layerKernels(kp, l).map((k) => k.kind);
          // norm, QKV GEMM, one attention per computed segment, o_proj, norm, gate/up, down
          // (+ one elementwise kernel for dLLM-Cache's cached-delta rows, + a copy for restored rows).
          expect(kinds.filter((k) => k === 'gemm')).toHaveLength(4);
          expect(kinds.filter((k) => k === 'norm')).toHaveLength(2);
          expect(kinds.filter((k) => k === 'attention').length).toBeGreaterThanOrEqual(
            phase === 'reuse' ? 1 : 1,
          );
          expect(kinds.length).toBeLessThanOrEqual(10);
          // Rows are read through index lists inside the kernels, never copied out first.
          const copies = layerKernels(kp, l).filter((k) => k.kind === 'copy');
          for (const c of copies) expect(c.reads.some((r) => r.startsWith('hidden.'))).toBe(true);
        }
      }
    },
  );

  test('the plain cached layer is exactly 7 kernels; attention gathers its keys and the QKV GEMM writes the cache', () => {
    const { state } = compilePlan(examplePlan('fast-dllm-dual'), tiny, { target: 'reference' });
    const kp = state.kernels?.get('cached') as KernelProgram;
    const layer = layerKernels(kp, 0);
    expect(layer.map((k) => k.kind)).toEqual(['norm', 'gemm', 'attention', 'gemm', 'norm', 'gemm', 'gemm']);
    expect(layer[0]?.indirect).toEqual(['rows.0']);
    expect(layer[1]?.epilogue).toEqual(
      expect.arrayContaining(['rope', 'cache_write kv.k.0', 'cache_write kv.v.0']),
    );
    expect(layer[2]?.indirect).toEqual(['keys.0']);
    expect(layer[3]?.epilogue).toEqual(['add']);
    expect(layer[5]?.epilogue).toEqual(['swiglu']);
    expect(layer[6]?.epilogue).toEqual(['add', 'scatter']);
  });

  test('the merge with a reused partial is the epilogue of the fresh segment attention', () => {
    const { state } = compilePlan(examplePlan('flashblock'), tiny, { target: 'reference' });
    const reuse = layerKernels(state.kernels?.get('reuse') as KernelProgram, 0);
    const cached = layerKernels(state.kernels?.get('cached') as KernelProgram, 0);
    expect(reuse.filter((k) => k.kind === 'attention')).toHaveLength(1);
    expect(cached.filter((k) => k.kind === 'attention')).toHaveLength(2);
    const attention = reuse.find((k) => k.kind === 'attention');
    expect(attention?.epilogue).toEqual(['merge']);
    expect(attention?.reads).toEqual(
      expect.arrayContaining(['partial.o.0.external', 'partial.lse.0.external']),
    );
  });

  test.each(['fast-dllm-dual', 'flashblock', 'dllm-cache', 'elastic-cache'])(
    'running the kernels of %s computes what the step programs compute',
    async (name) => {
      const plan = examplePlan(name);
      const { lowered, state } = compilePlan(plan, tiny, { target: 'reference' });
      const kernels = state.kernels as ReadonlyMap<string, KernelProgram>;
      const fused = {
        ...lowered,
        programs: {
          refresh: stagesFromKernels(lowered.programs.refresh, kernels.get('refresh') as KernelProgram),
          cached: stagesFromKernels(lowered.programs.cached, kernels.get('cached') as KernelProgram),
          reuse:
            lowered.programs.reuse &&
            stagesFromKernels(lowered.programs.reuse, kernels.get('reuse') as KernelProgram),
        },
      };
      const gen = {
        config: tiny,
        weights: randomWeights(tiny, 5),
        prompt: Int32Array.from([1, 2, 3]),
        genLen: 8,
        seed: 5,
      };
      const a = await simulateGeneration(plan, lowered, gen);
      const b = await simulateGeneration(plan, fused, gen);
      expect(b.tokens).toEqual(a.tokens);
      expect(b.steps.map((s) => s.deviation)).toEqual(a.steps.map((s) => s.deviation));
    },
  );

  test('memory plans of every phase and target are valid: no live overlap, peak <= naive, caches apart', () => {
    for (const target of ['reference', 'cpu', 'wgsl', 'ptx'] as const) {
      const { state } = compilePlan(examplePlan('dllm-cache'), tiny, { target, canvas: 64 });
      for (const [phase, mem] of state.memory ?? []) {
        const kp = state.kernels?.get(phase) as KernelProgram;
        expect(checkMemoryPlan(kp, mem, sizesFor(tiny, 64))).toEqual([]);
        expect(mem.peakBytes).toBeLessThan(mem.naiveBytes);
        expect(mem.persistentBytes).toBeGreaterThan(0);
      }
    }
  });
});
