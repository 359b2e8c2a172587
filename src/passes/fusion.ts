import { type Fusion, ops } from '../ir/ops.ts';
import type { Dim, Input, Instr, Stage, StepProgram, Value } from '../ir/types.ts';
import { shapeOf } from '../ir/types.ts';
import {
  type Buffer,
  type Cost,
  type Kernel,
  type KernelKind,
  type KernelProgram,
  type MergeFold,
  typeBytes,
} from './kernelIR.ts';
import type { Pass, PipelineState } from './state.ts';

/** An op's fusion class; an op the catalogue does not know fuses like an elementwise epilogue. */
const fusionOf = (op: string): Fusion => ops[op]?.fusion ?? { alone: 'elementwise' };
const isView = (op: string): boolean => 'view' in fusionOf(op);

interface Group {
  readonly kind: KernelKind;
  readonly stage: string;
  readonly instrs: Instr[];
  readonly epilogue: string[];
  /** For GEMMs: the activation they read, so that projections of one input share a kernel. */
  readonly gemmInput?: number;
}

/** Floating-point work of one instruction, as its op states it. */
function flopsOf(i: Instr): Cost {
  const r = i.results[0]?.type;
  const flops = ops[i.op]?.flops;
  if (r?.kind !== 'tensor' || flops === undefined) return [];
  const args = i.args.map((a) => a.type);
  return flops(r.shape, args, i.attrs);
}

/** Groups one stage's instructions into kernels: anchors open kernels, views and epilogues join them. */
function groupStage(stage: Stage): Group[] {
  const groups: Group[] = [];
  const groupOf = new Map<number, number>();
  const deferred = new Map<number, Instr[]>();
  const chain = (v: Value | undefined): Instr[] => (v ? (deferred.get(v.id) ?? []) : []);
  const add = (g: number, instr: Instr) => {
    const group = groups[g] as Group;
    // A view chain feeding the instruction is folded into this kernel's loads.
    for (const a of instr.args) for (const c of chain(a)) if (!group.instrs.includes(c)) group.instrs.push(c);
    group.instrs.push(instr);
    for (const r of instr.results) groupOf.set(r.id, g);
  };
  const open = (kind: KernelKind, instr: Instr, gemmInput?: number) => {
    groups.push({
      kind,
      stage: stage.name,
      instrs: [],
      epilogue: [],
      ...(gemmInput === undefined ? {} : { gemmInput }),
    });
    add(groups.length - 1, instr);
  };
  // The kernels a value comes from, looking through folded views to what they load.
  const producers = (v: Value): number[] => {
    const g = groupOf.get(v.id);
    if (g !== undefined) return [g];
    return chain(v).flatMap((i) =>
      i.args.flatMap((a) => (groupOf.has(a.id) ? [groupOf.get(a.id) as number] : [])),
    );
  };
  const latestProducer = (instr: Instr): number | undefined => {
    const gs = instr.args.flatMap(producers);
    return gs.length ? Math.max(...gs) : undefined;
  };
  for (const instr of stage.body) {
    const fusion = fusionOf(instr.op);
    if ('view' in fusion) {
      // Loads (gathers, cache reads) fold into whichever kernel consumes them; a view of a
      // kernel's result (a reshape, a placement) belongs to that kernel.
      const g = instr.args[0] ? groupOf.get(instr.args[0].id) : undefined;
      if (fusion.view === 'load' || g === undefined)
        for (const r of instr.results) deferred.set(r.id, [...instr.args.flatMap(chain), instr]);
      else {
        add(g, instr);
        if (fusion.epilogue) (groups[g] as Group).epilogue.push(fusion.epilogue);
      }
      continue;
    }
    if ('anchor' in fusion && fusion.anchor === 'gemm') {
      const input = instr.args[0]?.id;
      const last = groups.length - 1;
      if (groups[last]?.kind === 'gemm' && groups[last]?.gemmInput === input) add(last, instr);
      else open('gemm', instr, input);
      continue;
    }
    if ('anchor' in fusion) {
      open(fusion.anchor, instr);
      continue;
    }
    const g = latestProducer(instr);
    if (g === undefined) {
      open(fusion.alone, instr);
      continue;
    }
    add(g, instr);
    (groups[g] as Group).epilogue.push(
      instr.op === 'cache_write' ? `cache_write ${String(instr.attrs.resource)}` : instr.op,
    );
  }
  return groups;
}

/** Fuses one phase into a kernel program over named buffers. */
export function fuseProgram(p: StepProgram): KernelProgram {
  const buffers = new Map<string, Buffer>();
  const kernels: Kernel[] = [];
  const carried = new Map<string, string>();
  const addBuffer = (b: Omit<Buffer, 'layout'>) => {
    if (!buffers.has(b.name)) buffers.set(b.name, { ...b, layout: 'row-major' });
  };
  for (const r of p.resources)
    addBuffer({ name: r.name, kind: 'persistent', dtype: r.dtype, shape: r.shape });
  for (const stage of p.stages) {
    // Where each value lives when it crosses a kernel boundary.
    const home = new Map<number, string>();
    const inputs = new Map<number, Input>(stage.inputs.map((i) => [i.value.id, i]));
    for (const i of stage.inputs) {
      const name = i.role === 'carried' ? (carried.get(i.name) ?? i.name) : i.name;
      home.set(i.value.id, name);
      const kind = i.role === 'weight' ? 'weight' : i.role === 'carried' ? 'temp' : 'input';
      const t = i.value.type;
      addBuffer({ name, kind, dtype: t.kind === 'index' ? 'i32' : t.dtype, shape: shapeOf(t) });
    }
    const groups = groupStage(stage);
    const definedIn = new Map<number, number>();
    groups.forEach((g, n) => {
      for (const instr of g.instrs)
        for (const r of instr.results) if (!definedIn.has(r.id)) definedIn.set(r.id, n);
    });
    const outputs = new Set(stage.outputs.map((o) => o.value.id));
    groups.forEach((g, n) => {
      const local = new Set(g.instrs.flatMap((i) => i.results.map((r) => r.id)));
      const reads: string[] = [];
      const writes: string[] = [];
      const indirect: string[] = [];
      const homes = new Map<number, string>();
      const bytes: (readonly [number, ...Dim[]])[] = [];
      const read = (name: string) => {
        if (!reads.includes(name)) reads.push(name);
      };
      for (const instr of g.instrs) {
        if (instr.op === 'cache_read') read(String(instr.attrs.resource));
        if (instr.op === 'cache_write') {
          const res = String(instr.attrs.resource);
          if (!writes.includes(res)) writes.push(res);
          bytes.push(typeBytes((instr.args[1] as Value).type));
        }
        if (instr.op === 'gather' && instr.args[1]) {
          const list = home.get(instr.args[1].id) ?? inputs.get(instr.args[1].id)?.name;
          if (list && !indirect.includes(list)) indirect.push(list);
          bytes.push(typeBytes((instr.results[0] as Value).type));
        }
        instr.args.forEach((a, k) => {
          if (local.has(a.id)) return;
          const name = home.get(a.id) ?? `%${a.id}`;
          if (name !== `%${a.id}`) homes.set(a.id, name);
          read(name);
          if (instr.op !== 'gather' || k !== 0) bytes.push(typeBytes(a.type));
        });
      }
      for (const instr of g.instrs) {
        for (const r of instr.results) {
          // Another kernel needs it unless that kernel recomputes it (a folded view).
          const usedOutside = groups.some(
            (h, m) =>
              m !== n &&
              h.instrs.some((i) => i.args.some((a) => a.id === r.id)) &&
              !h.instrs.some((i) => i.results.some((x) => x.id === r.id)),
          );
          if ((usedOutside || outputs.has(r.id)) && definedIn.get(r.id) === n) {
            const name = `%${r.id}`;
            home.set(r.id, name);
            if (!writes.includes(name)) writes.push(name);
            const t = r.type;
            addBuffer({ name, kind: 'temp', dtype: t.kind === 'index' ? 'i32' : t.dtype, shape: shapeOf(t) });
            bytes.push(typeBytes(t));
          }
        }
      }
      const folds = mergeFolds(stage, groups, n);
      const locals = kernelLocals(g.instrs, writes).map((v) => {
        const name = `%${v.id}`;
        const t = v.type;
        addBuffer({ name, kind: 'local', dtype: t.kind === 'index' ? 'i32' : t.dtype, shape: shapeOf(t) });
        return name;
      });
      const main = g.instrs.find((i) => !isView(i.op)) ?? g.instrs[0];
      const grid = main?.results[0] ? shapeOf(main.results[0].type).slice(0, 2) : [];
      kernels.push({
        name: `${stage.name}/${n}.${g.kind}`,
        kind: g.kind,
        stage: stage.name,
        reads,
        writes,
        grid,
        indirect,
        epilogue: g.epilogue,
        ...(folds.length > 0 ? { folds } : {}),
        ...(locals.length > 0 ? { locals } : {}),
        flops: g.instrs.flatMap(flopsOf),
        bytes,
        instrs: g.instrs,
        ...(homes.size > 0 ? { homes } : {}),
      });
    });
    for (const o of stage.outputs) carried.set(o.name, home.get(o.value.id) ?? `%${o.value.id}`);
  }
  return { name: p.name, buffers: [...buffers.values()], kernels };
}

/**
 * The merges kernel `n` of a stage computes in an attention's epilogue (see Kernel.folds): a merge
 * in the kernel whose one side is the results of an attention of the same kernel that nothing else
 * reads, and whose other side exists when that attention runs (a stage input, or a value computed
 * by an earlier kernel or earlier in this one).
 */
function mergeFolds(stage: Stage, groups: readonly Group[], n: number): MergeFold[] {
  const instrs = (groups[n] as Group).instrs;
  if (!instrs.some((i) => i.op === 'merge')) return [];
  const uses = new Map<number, number>();
  const use = (id: number) => uses.set(id, (uses.get(id) ?? 0) + 1);
  for (const i of stage.body) for (const a of i.args) use(a.id);
  for (const o of stage.outputs) use(o.value.id);
  const before = new Set<number>(stage.inputs.map((i) => i.value.id));
  for (const g of groups.slice(0, n)) for (const i of g.instrs) for (const r of i.results) before.add(r.id);
  const folds: MergeFold[] = [];
  instrs.forEach((att, at) => {
    const [o, lse] = att.results;
    // An attention over one KV head leaves the other heads empty: a fold would have to copy them.
    if (att.op !== 'attention' || att.attrs.kv_head !== undefined) return;
    if (!o || !lse || uses.get(o.id) !== 1 || uses.get(lse.id) !== 1) return;
    const merge = instrs.slice(at + 1).find((m) => m.op === 'merge' && m.args.some((a) => a.id === o.id));
    if (!merge?.results[0]) return;
    const [a0, a1, a2, a3] = merge.args.map((a) => a.id);
    const other = a0 === o.id && a1 === lse.id ? [a2, a3] : a2 === o.id && a3 === lse.id ? [a0, a1] : [];
    for (const i of instrs.slice(0, at)) for (const r of i.results) before.add(r.id);
    if (other.length === 2 && other.every((id) => id !== undefined && before.has(id)))
      folds.push({ attention: o.id, merge: merge.results[0].id });
  });
  return folds;
}

/**
 * The values a kernel computes and reads only itself, which a backend running its instructions as
 * separate dispatches must store: every result except those the kernel writes out (or writes a
 * reshape of), aliases (reshapes, cache reads), and gathers whose every use is an operand the
 * consumer loads through the gather's list (OpSpec.listLoads). A gather of a cache's rows that a
 * cache write of the same cache reads is materialised too: no dispatch reads and writes one buffer.
 */
function kernelLocals(instrs: readonly Instr[], writes: readonly string[]): Value[] {
  const operandOf = new Map<number, number>();
  const def = new Map<number, Instr>();
  for (const i of instrs) {
    for (const r of i.results) def.set(r.id, i);
    const [r0, a0] = [i.results[0], i.args[0]];
    if (i.op === 'reshape' && r0 && a0) operandOf.set(r0.id, a0.id);
  }
  const root = (id: number): number => {
    const up = operandOf.get(id);
    return up === undefined ? id : root(up);
  };
  const written = new Set<number>();
  for (const w of writes) if (w.startsWith('%')) written.add(root(Number(w.slice(1))));
  const loadedOnly = (gather: Instr, id: number) =>
    instrs.every((i) =>
      i.args.every((a, k) => {
        if (i.op === 'reshape' || root(a.id) !== id) return true;
        if (!(ops[i.op]?.listLoads ?? []).includes(k)) return false;
        const base = def.get(gather.args[0]?.id ?? -1);
        return !(
          i.op === 'cache_write' &&
          base?.op === 'cache_read' &&
          base.attrs.resource === i.attrs.resource
        );
      }),
    );
  return instrs.flatMap((i) =>
    i.results.filter((r) => {
      if (i.op === 'reshape' || i.op === 'cache_read' || written.has(r.id)) return false;
      return i.op !== 'gather' || !loadedOnly(i, r.id);
    }),
  );
}

/**
 * The phase again as stages whose bodies are the kernels' instructions in kernel order — what
 * running the kernels computes. Tests interpret it to show that fusion loses nothing.
 */
export function stagesFromKernels(p: StepProgram, kp: KernelProgram): StepProgram {
  const stages = p.stages.map((s): Stage => {
    const seen = new Set<number>();
    const body: Instr[] = [];
    for (const k of kp.kernels) {
      if (k.stage !== s.name) continue;
      for (const i of k.instrs) {
        const key = i.results[0]?.id;
        if (key !== undefined && seen.has(key)) continue;
        if (key !== undefined) seen.add(key);
        body.push(i);
      }
    }
    return { ...s, body };
  });
  return { ...p, stages };
}

export const fusionPass: Pass = {
  name: 'fusion',
  description:
    'group each phase into kernels: attention with its gathers and merge, GEMMs with their epilogues, norms with indirect rows',
  run(state: PipelineState): PipelineState {
    const kernels = new Map([...state.phases].map(([name, p]) => [name, fuseProgram(p)] as const));
    return { ...state, kernels };
  },
};
