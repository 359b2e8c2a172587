import type { CheckedPlan } from '../dsl/check.ts';
import type { Dim } from '../ir/types.ts';
import type { ModelConfig } from '../model/config.ts';
import type { Compiled } from '../passes/compile.ts';
import { evalCost, type KernelProgram } from '../passes/kernelIR.ts';
import type { Target } from '../passes/state.ts';
import { type SampleState, sampleStates } from './sample.ts';

/**
 * What `kvplan compile --stats` reports and the library's compile returns: kernels, FLOPs and bytes
 * per step of each phase at sample index-list sizes, and the memory plan.
 */
export interface CompileStats {
  readonly plan: string;
  readonly config: string;
  readonly target: Target;
  readonly canvas: number;
  readonly phases: Record<string, number>;
  readonly kernels: number;
  readonly flops_per_step: Record<string, number>;
  readonly bytes_per_step: Record<string, number>;
  readonly peak_bytes: number;
  readonly naive_bytes: number;
  readonly cache_bytes: number;
  readonly passes: readonly { readonly pass: string; readonly ms: number }[];
}

/** Sizes of the symbolic dims at a sample step: index lists as the inspector built them. */
function sizesAt(sample: SampleState | undefined, canvas: number): (d: Dim) => number {
  const lists = new Map<string, number>();
  for (const lp of sample?.layers ?? [])
    for (const [name, list] of lp.lists) lists.set(`#${name}`, list.length);
  const out = sample?.layers.at(-1)?.rows.reduce((a, b) => a + b, 0);
  if (out !== undefined) lists.set('#out', out);
  return (d) => (typeof d === 'number' ? d : (lists.get(d) ?? canvas));
}

export function compileStats(
  plan: CheckedPlan,
  config: ModelConfig,
  compiled: Compiled,
  target: Target,
  promptLen: number,
  genLen: number,
): CompileStats {
  const samples = sampleStates(plan, compiled.lowered, promptLen, genLen);
  const canvas = promptLen + genLen;
  const refreshSample = samples.find((s) => s.full) ?? samples[0];
  const cachedSample = samples.find((s) => !s.full) ?? samples.at(-1);
  const kernels = compiled.state.kernels ?? new Map<string, KernelProgram>();
  const per = (f: (kp: KernelProgram, size: (d: Dim) => number) => number) =>
    Object.fromEntries(
      [...kernels].map(([name, kp]) => [
        name,
        f(kp, sizesAt(name === 'refresh' ? refreshSample : cachedSample, canvas)),
      ]),
    );
  const memory = [...(compiled.state.memory?.values() ?? [])];
  return {
    plan: plan.plan.name,
    config: config.name,
    target,
    canvas,
    phases: Object.fromEntries([...kernels].map(([name, kp]) => [name, kp.kernels.length])),
    kernels: [...kernels.values()].reduce((a, kp) => a + kp.kernels.length, 0),
    flops_per_step: per((kp, size) => kp.kernels.reduce((a, k) => a + evalCost(k.flops, size), 0)),
    bytes_per_step: per((kp, size) => kp.kernels.reduce((a, k) => a + evalCost(k.bytes, size), 0)),
    peak_bytes: Math.max(0, ...memory.map((m) => m.peakBytes)),
    naive_bytes: Math.max(0, ...memory.map((m) => m.naiveBytes)),
    cache_bytes: Math.max(0, ...memory.map((m) => m.persistentBytes)),
    passes: compiled.timings,
  };
}
