/**
 * In-place scatters (src/passes/memory.ts, `inPlaceScatters`): on the CPU target a scatter's result
 * takes its base's storage where the base dies, so the C renderer writes the scattered rows over
 * the base instead of copying the whole canvas first. The plan's check recomputes which pairs may
 * share storage from the program itself; each guard of the rule is seen to hold here.
 */
import { describe, expect, test } from 'vitest';
import type { Instr } from '../../src/ir/types.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import type { KernelProgram } from '../../src/passes/kernelIR.ts';
import {
  checkMemoryPlan,
  inPlaceScatters,
  liveRanges,
  type MemoryPlan,
  sizesFor,
} from '../../src/passes/memory.ts';
import { examplePlan, examples } from '../runtime/support.ts';

const config = presets.small as ModelConfig;
const canvas = 32;
const size = sizesFor(config, canvas);

function compiled(name: string, target: 'cpu' | 'ptx' | 'wgsl' = 'cpu') {
  const { state } = compilePlan(examplePlan(name), config, { target, canvas });
  const kernels = state.kernels as ReadonlyMap<string, KernelProgram>;
  const memory = state.memory as ReadonlyMap<string, MemoryPlan>;
  return [...kernels].map(([phase, kp]) => ({ kp, plan: memory.get(phase) as MemoryPlan }));
}

describe('in-place scatters', () => {
  test('every example plan for the CPU passes the check, and the carried hidden state is updated in place', () => {
    let aliased = 0;
    for (const name of examples)
      for (const { kp, plan } of compiled(name)) {
        expect(checkMemoryPlan(kp, plan, size), `${name} ${kp.name}`).toEqual([]);
        for (const [r, root] of plan.aliases ?? []) {
          expect(plan.arena.get(r)).toEqual(plan.arena.get(root));
          aliased++;
        }
      }
    // Every layer of every plan ends with the scatter of its computed rows into the carried state.
    expect(aliased).toBeGreaterThan(examples.length * config.layers);
  });

  test('other targets keep every temp apart', () => {
    for (const target of ['ptx', 'wgsl'] as const)
      for (const { plan } of compiled('es-dllm', target)) expect(plan.aliases).toBeUndefined();
  });

  test('a scatter whose base is read after it, in its kernel (directly or through a view) or a later one, keeps its own storage', () => {
    const { kp } = compiled('es-dllm').find((c) => (c.plan.aliases?.size ?? 0) > 0) as { kp: KernelProgram };
    const ranges = liveRanges(kp);
    const found = inPlaceScatters(kp, ranges, size);
    const [r, b] = [...found][0] as [string, string];
    const at = kp.kernels.findIndex((k) =>
      k.instrs.some((i) => i.op === 'scatter' && `%${i.results[0]?.id}` === r),
    );
    const k = kp.kernels[at] as KernelProgram['kernels'][number];
    const scatter = k.instrs.find((i) => `%${i.results[0]?.id}` === r) as Instr;
    // Read after the scatter in the same kernel.
    const reader: Instr = {
      op: 'add',
      args: [scatter.args[0] as Instr['args'][number]],
      results: [],
      attrs: {},
    };
    const readAfter: KernelProgram = {
      ...kp,
      kernels: kp.kernels.map((x, i) => (i === at ? { ...x, instrs: [...x.instrs, reader] } : x)),
    };
    expect(inPlaceScatters(readAfter, ranges, size).has(r)).toBe(false);
    // Read after the scatter through a view of the base defined before it (a folded gather reads
    // the base where it is consumed), by the scattered values themselves, or left for another kernel.
    const base = scatter.args[0] as Instr['args'][number];
    const view = { ...base, id: 1_000_000 };
    const gather: Instr = {
      op: 'gather',
      args: [base, scatter.args[1] as typeof base],
      results: [view],
      attrs: {},
    };
    const withInstrs = (before: Instr[], after: Instr[], writes: string[] = []): KernelProgram => ({
      ...kp,
      kernels: kp.kernels.map((x, i) => {
        if (i !== at) return x;
        const j = x.instrs.indexOf(scatter);
        const instrs = [
          ...x.instrs.slice(0, j),
          ...before,
          ...x.instrs.slice(j, j + 1),
          ...after,
          ...x.instrs.slice(j + 1),
        ];
        return { ...x, instrs, writes: [...x.writes, ...writes] };
      }),
    });
    const viewReader: Instr = { op: 'add', args: [view], results: [], attrs: {} };
    expect(inPlaceScatters(withInstrs([gather], [viewReader]), ranges, size).has(r)).toBe(false);
    const fromBase: Instr = { ...scatter, args: [base, scatter.args[1] as typeof base, view] };
    const selfRead: KernelProgram = {
      ...kp,
      kernels: kp.kernels.map((x, i) =>
        i === at ? { ...x, instrs: x.instrs.flatMap((y) => (y === scatter ? [gather, fromBase] : [y])) } : x,
      ),
    };
    expect(inPlaceScatters(selfRead, ranges, size).has(r)).toBe(false);
    expect(inPlaceScatters(withInstrs([gather], [], [`%${view.id}`]), ranges, size).has(r)).toBe(false);
    // A view read before the scatter only is no obstacle.
    expect(inPlaceScatters(withInstrs([gather, viewReader], []), ranges, size).get(r)).toBe(b);
    // Read by a later kernel.
    const later = new Map(ranges);
    later.set(b, [(ranges.get(b) as [number, number])[0], at + 1]);
    expect(inPlaceScatters(kp, later, size).has(r)).toBe(false);
    // As found, it runs in place.
    expect(found.get(r)).toBe(b);
  });

  test('the check refuses storage shared by temps that are no in-place scatter and base', () => {
    const { kp, plan } = compiled('es-dllm').find((c) => (c.plan.aliases?.size ?? 0) > 0) as {
      kp: KernelProgram;
      plan: MemoryPlan;
    };
    const ranges = liveRanges(kp);
    const [r, root] = [...(plan.aliases ?? [])][0] as [string, string];
    // Another temp live with the root, given the root's place and claimed as its alias.
    const other = [...ranges].find(
      ([n, range]) =>
        n !== r &&
        n !== root &&
        !plan.aliases?.has(n) &&
        range[0] <= (ranges.get(root) as [number, number])[1] &&
        (ranges.get(root) as [number, number])[0] <= range[1],
    )?.[0] as string;
    const arena = new Map(plan.arena);
    arena.set(other, plan.arena.get(root) as NonNullable<ReturnType<typeof arena.get>>);
    const forged: MemoryPlan = { ...plan, arena, aliases: new Map([...(plan.aliases ?? []), [other, root]]) };
    const problems = checkMemoryPlan(kp, forged, size);
    expect(problems.some((p) => p.includes(`${other} shares ${root}'s storage`))).toBe(true);
    expect(problems.some((p) => p.includes('are live together and overlap'))).toBe(true);
  });
});
