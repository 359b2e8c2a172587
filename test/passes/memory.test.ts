import { describe, expect, test } from 'vitest';
import type { Dim, DType } from '../../src/ir/types.ts';
import { presets } from '../../src/model/presets.ts';
import type { Buffer, BufferKind, KernelProgram } from '../../src/passes/kernelIR.ts';
import { checkMemoryPlan, liveRanges, memoryPass, planMemory, sizesFor } from '../../src/passes/memory.ts';
import type { PipelineState } from '../../src/passes/state.ts';
import { kernel } from './kernels.ts';

const buf = (name: string, kind: BufferKind, dtype: DType, shape: Dim[]): Buffer => ({
  name,
  kind,
  dtype,
  shape,
  layout: 'row-major',
});

const kern = kernel;

const size = (d: Dim): number => (typeof d === 'number' ? d : d === 'L' ? 10 : 3);
const entries = <T>(m: ReadonlyMap<string, T>) => Object.fromEntries(m);

/**
 * Four temps written together by k0 (a 64 B, b 16 B, c 32 B, d 16 B); a and c die at k1; f (24 B)
 * is written by k2 while b and d are still live. The gaps at k2 are [0,64) and [80,112): best fit
 * takes the smaller one, where first fit would have taken offset 0.
 */
const gaps: KernelProgram = {
  name: 'gaps',
  buffers: [
    buf('x', 'input', 'i32', ['L']),
    buf('a', 'temp', 'f32', [16]),
    buf('b', 'temp', 'f32', [4]),
    buf('c', 'temp', 'f32', [8]),
    buf('d', 'temp', 'f32', [2, 2]),
    buf('f', 'temp', 'f16', [12]),
    buf('kv.k.0', 'persistent', 'f32', ['L', 2, 4]),
    buf('w', 'weight', 'f32', [4, 4]),
  ],
  kernels: [
    kern('k0', ['x'], ['a', 'b', 'c', 'd']),
    kern('k1', ['a', 'b', 'c', 'd', 'w'], ['kv.k.0']),
    kern('k2', ['b', 'd'], ['f']),
  ],
};

/** A chain: each kernel reads the previous temp and writes the next. */
const chain: KernelProgram = {
  name: 'chain',
  buffers: [
    buf('a', 'temp', 'f32', [16]),
    buf('b', 'temp', 'f32', [4]),
    buf('c', 'temp', 'f32', [8]),
    buf('d', 'temp', 'f32', [2]),
    buf('e', 'temp', 'f32', [16]),
  ],
  kernels: [
    kern('k0', [], ['a']),
    kern('k1', ['a'], ['b']),
    kern('k2', ['b'], ['c']),
    kern('k3', ['c'], ['d']),
    kern('k4', ['d'], ['e']),
  ],
};

describe('liveness', () => {
  test('from the first write to the last read, inclusive; unread temps live during their writer', () => {
    expect(entries(liveRanges(gaps))).toEqual({ a: [0, 1], b: [0, 2], c: [0, 1], d: [0, 2], f: [2, 2] });
    expect(entries(liveRanges(chain))).toEqual({ a: [0, 1], b: [1, 2], c: [2, 3], d: [3, 4], e: [4, 4] });
  });

  test('a temp read before any write is an error naming it', () => {
    const bad: KernelProgram = {
      name: 'bad',
      buffers: [buf('t', 'temp', 'f32', [4]), buf('u', 'temp', 'f32', [4])],
      kernels: [kern('k0', ['t'], ['u']), kern('k1', ['u'], ['t'])],
    };
    expect(() => planMemory(bad, size, { align: 8, wholeBuffer: false })).toThrow(
      /read before.*\bt \(kernel k0\)/,
    );
    const self: KernelProgram = { ...bad, kernels: [kern('k0', ['t'], ['t'])] };
    expect(() => liveRanges(self)).toThrow(/t \(kernel k0\)/);
  });

  test('a kernel naming an undeclared buffer is an error', () => {
    const bad: KernelProgram = { name: 'bad', buffers: [], kernels: [kern('k0', ['ghost'], [])] };
    expect(() => liveRanges(bad)).toThrow(/undeclared buffers: ghost/);
  });
});

describe('best fit, exact offsets', () => {
  test('reuses the smallest gap that fits', () => {
    const plan = planMemory(gaps, size, { align: 8, wholeBuffer: false });
    expect(entries(plan.arena)).toEqual({
      a: { offset: 0, bytes: 64 },
      b: { offset: 64, bytes: 16 },
      c: { offset: 80, bytes: 32 },
      d: { offset: 112, bytes: 16 },
      f: { offset: 80, bytes: 24 },
    });
    expect(plan.peakBytes).toBe(128);
    expect(plan.naiveBytes).toBe(152);
    expect(plan.peakBytes).toBeLessThan(plan.naiveBytes);
    expect(entries(plan.persistent)).toEqual({ 'kv.k.0': { offset: 0, bytes: 10 * 2 * 4 * 4 } });
    expect(plan.persistentBytes).toBe(320);
    expect(checkMemoryPlan(gaps, plan, size)).toEqual([]);
  });

  test('a read and a write of one kernel never share memory; no fitting gap extends the arena', () => {
    const plan = planMemory(chain, size, { align: 8, wholeBuffer: false });
    expect(entries(plan.arena)).toEqual({
      a: { offset: 0, bytes: 64 },
      b: { offset: 64, bytes: 16 }, // a is still being read by k1, which writes b
      c: { offset: 0, bytes: 32 }, // a is dead: the 64-byte gap [0,64) is the only one
      d: { offset: 32, bytes: 8 }, // gaps at k3: [32,80) above c
      e: { offset: 40, bytes: 64 }, // gaps [0,32) and [40,80) are too small: extend
    });
    expect(plan.peakBytes).toBe(104);
    expect(plan.naiveBytes).toBe(184);
  });

  test('sizes are rounded up to the alignment', () => {
    const plan = planMemory(gaps, size, { align: 256, wholeBuffer: false });
    expect([...plan.arena.values()].every((p) => p.bytes === 256 && p.offset % 256 === 0)).toBe(true);
    expect(plan.peakBytes).toBe(4 * 256);
    expect(plan.naiveBytes).toBe(5 * 256);
    expect(plan.persistentBytes).toBe(512);
  });

  test('the persistent region is sized for the canvas times the batch', () => {
    const plan = planMemory(gaps, size, { align: 64, wholeBuffer: false, batch: 3 });
    expect(plan.persistent.get('kv.k.0')).toEqual({ offset: 0, bytes: 3 * 320 });
  });
});

describe('whole-buffer mode', () => {
  test('slots: a later temp takes the smallest free slot that fits', () => {
    const plan = planMemory(gaps, size, { align: 8, wholeBuffer: true });
    expect(plan.slots?.map((s) => [s.bytes, s.offset, s.occupants])).toEqual([
      [64, 0, ['a']],
      [16, 64, ['b']],
      [32, 80, ['c', 'f']],
      [16, 112, ['d']],
    ]);
    expect(plan.arena.get('f')).toEqual({ offset: 80, bytes: 24, slot: 2 });
    expect(plan.peakBytes).toBe(128);
    expect(checkMemoryPlan(gaps, plan, size)).toEqual([]);
  });

  test('a free slot that is too small grows rather than a new slot being made', () => {
    const big: KernelProgram = {
      ...chain,
      buffers: chain.buffers.map((b) => (b.name === 'e' ? buf('e', 'temp', 'f32', [32]) : b)),
    };
    const plan = planMemory(big, size, { align: 8, wholeBuffer: true });
    expect(plan.slots?.map((s) => [s.bytes, s.occupants])).toEqual([
      [128, ['a', 'c', 'e']],
      [16, ['b', 'd']],
    ]);
    expect(plan.peakBytes).toBe(144);
    expect(plan.naiveBytes).toBe(248);
    expect(checkMemoryPlan(big, plan, size)).toEqual([]);
  });

  test('an in-place update (read and write of one buffer) is one binding, not a violation', () => {
    const kp: KernelProgram = {
      name: 'inplace',
      buffers: [buf('h', 'temp', 'f32', [8]), buf('r', 'temp', 'f32', [8])],
      kernels: [kern('k0', [], ['h']), kern('k1', ['h'], ['h']), kern('k2', ['h'], ['r'])],
    };
    const plan = planMemory(kp, size, { align: 256, wholeBuffer: true });
    expect(plan.arena.get('h')?.slot).not.toBe(plan.arena.get('r')?.slot);
    expect(checkMemoryPlan(kp, plan, size)).toEqual([]);
  });
});

describe('checkMemoryPlan on corrupted plans', () => {
  test('a buffer moved onto a live one', () => {
    const plan = planMemory(gaps, size, { align: 8, wholeBuffer: false });
    const arena = new Map(plan.arena);
    arena.set('f', { offset: 64, bytes: 24 });
    expect(checkMemoryPlan(gaps, { ...plan, arena }, size).join('\n')).toMatch(
      /b \[0\.\.2\] and f \[2\.\.2\]/,
    );
  });

  test('misalignment, short sizes, missing temps, persistent overlap', () => {
    const plan = planMemory(gaps, size, { align: 8, wholeBuffer: false });
    const arena = new Map(plan.arena);
    arena.set('a', { offset: 4, bytes: 64 });
    arena.set('b', { offset: 64, bytes: 8 });
    arena.delete('c');
    const persistent = new Map(plan.persistent);
    persistent.set('kv.k.0', { offset: 0, bytes: 100 });
    const v = checkMemoryPlan(gaps, { ...plan, arena, persistent }, size).join('\n');
    expect(v).toMatch(/a: offset 4 is not aligned to 8/);
    expect(v).toMatch(/b: 8 bytes placed, 16 needed/);
    expect(v).toMatch(/temp c is used but not placed/);
    expect(v).toMatch(/persistent kv\.k\.0: 100 bytes, 320 needed/);
  });

  test('a kernel whose read and write share a slot', () => {
    const plan = planMemory(chain, size, { align: 8, wholeBuffer: true });
    const arena = new Map(plan.arena);
    arena.set('b', { offset: 0, bytes: 16, slot: 0 });
    const v = checkMemoryPlan(chain, { ...plan, arena }, size).join('\n');
    expect(v).toMatch(/kernel k1 reads a and writes b, both bound to slot 0/);
  });
});

describe('memoryPass', () => {
  const config = presets[Object.keys(presets)[0] as string];
  if (config === undefined) throw new Error('no preset');
  const state = { phases: new Map(), kernels: new Map([['refresh', gaps]]) } as unknown as PipelineState;

  test('aligns by target, uses whole buffers for WebGPU, plans for a canvas of 1024 by default', () => {
    const expected = { reference: 8, cpu: 64, wgsl: 256, ptx: 256 } as const;
    for (const target of ['reference', 'cpu', 'wgsl', 'ptx'] as const) {
      const plan = memoryPass.run(state, { config, target }).memory?.get('refresh');
      expect(plan?.align).toBe(expected[target]);
      expect(plan?.wholeBuffer).toBe(target === 'wgsl');
      expect(plan?.slots !== undefined).toBe(target === 'wgsl');
      expect(plan?.persistent.get('kv.k.0')?.bytes).toBe(1024 * 2 * 4 * 4);
      expect(plan && checkMemoryPlan(gaps, plan, sizesFor(config, 1024))).toEqual([]);
    }
    const small = memoryPass.run(state, { config, target: 'cpu', canvas: 32 }).memory?.get('refresh');
    expect(small?.persistent.get('kv.k.0')?.bytes).toBe(32 * 2 * 4 * 4);
  });

  test('sizesFor: L and index lists are the canvas, numbers themselves, other symbols an error', () => {
    const s = sizesFor(config, 77);
    expect([s('L'), s('#rows.0'), s(12)]).toEqual([77, 77, 12]);
    expect(() => s('D')).toThrow(/unknown symbolic dimension 'D'/);
  });

  test('needs kernels', () => {
    expect(() =>
      memoryPass.run({ phases: new Map() } as unknown as PipelineState, { config, target: 'cpu' }),
    ).toThrow(/run 'fusion' first/);
  });
});
