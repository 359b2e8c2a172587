/**
 * The pass manager: runs named passes over a PipelineState in order, times each one, optionally
 * verifies the programs after each pass, and dumps the state after the passes asked for (the
 * tinygrad practice: every pass has a name and a printable result). See docs/passes.md.
 */
import { printExpr } from '../dsl/printer.ts';
import type { LayerRules } from '../dsl/semantics/layerRules.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import { printProgram } from '../ir/printer.ts';
import type { StepProgram } from '../ir/types.ts';
import { formatVerifyError, verifyPlan } from '../ir/verify.ts';
import { canonicalizePass } from './canonicalize.ts';
import { csePass } from './cse.ts';
import { dcePass } from './dce.ts';
import type { Kernel, KernelProgram } from './kernelIR.ts';
import type { MemoryPlan } from './memory.ts';
import { setAlgebraPass } from './setAlgebra.ts';
import type { Pass, PassContext, PipelineState } from './state.ts';

/** A pass failed, produced invalid IR, or the pipeline was asked for something it cannot do. */
export class PassError extends Error {
  override readonly name = 'PassError';
  constructor(
    /** The pass at fault (or the unknown name asked for). */
    readonly pass: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface PipelineOptions {
  /** Dump the state after each pass of these names (every occurrence). */
  readonly dumpAfter?: readonly string[];
  /** Dump the state after every pass. */
  readonly dumpAll?: boolean;
  /** Verify the programs (verifyPlan) after every pass; a failure throws a PassError naming it. */
  readonly verify?: boolean;
  readonly onDump?: (pass: string, text: string) => void;
}

export interface PipelineResult {
  readonly state: PipelineState;
  readonly timings: { pass: string; ms: number }[];
}

/** The cleanup passes, in the order they are meant to run (sets first; DCE sweeps up last). */
export const cleanupPasses: readonly Pass[] = [setAlgebraPass, canonicalizePass, csePass, dcePass];

/** How many verifier errors a PassError quotes. */
const quoted = 5;

export function runPipeline(
  state: PipelineState,
  passes: readonly Pass[],
  ctx: PassContext,
  opts: PipelineOptions = {},
): PipelineResult {
  const names = passes.map((p) => p.name);
  const dumpAfter = new Set(opts.dumpAfter ?? []);
  for (const n of dumpAfter) {
    if (!names.includes(n)) {
      const valid = [...new Set(names)].join(', ') || '(none)';
      throw new PassError(n, `cannot dump after unknown pass '${n}'; the passes are: ${valid}`);
    }
  }
  const timings: { pass: string; ms: number }[] = [];
  let cur = state;
  for (const pass of passes) {
    const t0 = performance.now();
    let next: PipelineState;
    try {
      next = pass.run(cur, ctx);
    } catch (e) {
      if (e instanceof PassError) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      throw new PassError(pass.name, `pass '${pass.name}' failed: ${msg}`, { cause: e });
    }
    timings.push({ pass: pass.name, ms: performance.now() - t0 });
    if (opts.verify) {
      const errors = verifyPlan([...next.phases.values()]);
      if (errors.length > 0) {
        const shown = errors.slice(0, quoted).map((e) => `  ${formatVerifyError(e)}`);
        const more = errors.length > quoted ? [`  … and ${errors.length - quoted} more`] : [];
        throw new PassError(
          pass.name,
          `after pass '${pass.name}' the IR does not verify (${errors.length} error${errors.length === 1 ? '' : 's'}):\n${[...shown, ...more].join('\n')}`,
        );
      }
    }
    if (opts.dumpAll || dumpAfter.has(pass.name)) opts.onDump?.(pass.name, dumpState(next));
    cur = next;
  }
  return { state: cur, timings };
}

/** The state a pipeline starts from: the lowered plan's phases by name (`reuse` only when present). */
export function initialState(lowered: LoweredPlan): PipelineState {
  const { refresh, cached, reuse } = lowered.programs;
  const phases = new Map<string, StepProgram>([
    ['refresh', refresh],
    ['cached', cached],
  ]);
  if (reuse) phases.set('reuse', reuse);
  return { lowered, phases };
}

/**
 * The lowered plan the runtime should run after the passes: its programs are the state's phases,
 * and its layer rules the state's (the set-algebra pass rewrites them); the rest is `lowered`'s.
 */
export function withPhases(lowered: LoweredPlan, state: PipelineState): LoweredPlan {
  const phase = (name: string): StepProgram => {
    const p = state.phases.get(name);
    if (!p) throw new PassError('pipeline', `the pipeline state has no '${name}' phase`);
    return p;
  };
  return {
    ...lowered,
    layers: state.lowered.layers,
    programs: {
      refresh: phase('refresh'),
      cached: phase('cached'),
      reuse: lowered.programs.reuse || state.phases.has('reuse') ? phase('reuse') : undefined,
    },
  };
}

const list = (xs: readonly (string | number)[]): string => `[${xs.join(', ')}]`;

/** One line per kernel: name, kind, grid, reads -> writes, indirect lists, epilogue, merge folds, locals. */
export function printKernel(k: Kernel): string {
  const parts = [
    `${k.name}: ${k.kind} ${k.stage} grid ${list(k.grid)} ${k.reads.join(', ')} -> ${k.writes.join(', ')}`,
  ];
  if (k.indirect.length > 0) parts.push(`indirect ${list(k.indirect)}`);
  if (k.epilogue.length > 0) parts.push(`epilogue ${list(k.epilogue)}`);
  if (k.folds) parts.push(`folds ${list(k.folds.map((f) => `%${f.merge} into %${f.attention}`))}`);
  if (k.locals) parts.push(`locals ${list(k.locals)}`);
  return parts.join(' ');
}

export function printKernels(phase: string, kp: KernelProgram): string {
  const lines = [`kernels ${phase} (${kp.name}): ${kp.kernels.length} kernels, ${kp.buffers.length} buffers`];
  for (const k of kp.kernels) lines.push(`  ${printKernel(k)}`);
  return lines.join('\n');
}

export function printMemory(phase: string, m: MemoryPlan): string {
  const pct = m.naiveBytes > 0 ? ` (${((100 * m.peakBytes) / m.naiveBytes).toFixed(1)}% of naive)` : '';
  const lines = [
    `memory ${phase}: peak ${m.peakBytes} B, naive ${m.naiveBytes} B${pct}, persistent ${m.persistentBytes} B`,
  ];
  for (const [name, b] of m.arena) {
    const live = m.liveRanges?.get(name);
    lines.push(`  ${name} -> arena @${b.offset} ${b.bytes} B${live ? ` live [${live[0]}, ${live[1]}]` : ''}`);
  }
  for (const [name, b] of m.persistent) lines.push(`  ${name} -> persistent @${b.offset} ${b.bytes} B`);
  return lines.join('\n');
}

/** The token sets of each layer's rules, one line per layer (what set-algebra rewrites). */
export function printLayerSets(layers: readonly LayerRules[]): string {
  const lines = ['sets:'];
  for (const r of layers) {
    const parts: string[] = [];
    if (r.compute) parts.push(`compute ${printExpr(r.compute.set)}`);
    if (r.attend) {
      const k = r.attend.keys;
      parts.push(
        k.kind === 'keys'
          ? `attend ${printExpr(k.set)}`
          : `attend split {${k.segments.map((g) => `${g.name} = ${printExpr(g.keys)}`).join(', ')}}`,
      );
    }
    for (const c of r.caches) parts.push(`cache#${c.id} ${printExpr(c.rule.set)}`);
    for (const f of r.refreshes) parts.push(`refresh ${printExpr(f.set)}`);
    lines.push(`  layer ${r.layer}: ${parts.join('; ')}`);
  }
  return lines.join('\n');
}

/** The text dump of a state: its phases, then the layers' sets, kernels and memory plans once present. */
export function dumpState(state: PipelineState): string {
  const parts = [...state.phases.values()].map((p) => printProgram(p).trimEnd());
  parts.push(printLayerSets(state.lowered.layers));
  if (state.kernels) for (const [phase, kp] of state.kernels) parts.push(printKernels(phase, kp));
  if (state.memory) for (const [phase, m] of state.memory) parts.push(printMemory(phase, m));
  return `${parts.join('\n\n')}\n`;
}
