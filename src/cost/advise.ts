/**
 * The cost advisor: what a plan's cache buys on a given machine, batch and lengths, before
 * anything runs. Each step of a whole generation (src/cost/schedule.ts) is costed on the roofline
 * (src/cost/roofline.ts), and so is each step of the plan's decode-matched no-cache twin
 * (src/dsl/twin.ts): their ratio is the cache's effect alone. It answers "why do I see no
 * speedup?": a cached step that computes a few rows still reads every weight, so where the
 * uncached step is bound by that same traffic (short canvases, batch 1, high FLOP/byte machines)
 * the cache saves little, and a refresh that also writes the caches costs more than the twin's step.
 */
import type { CheckedPlan } from '../dsl/check.ts';
import { simulationBudget } from '../dsl/semantics/budget.ts';
import { modelInternalScores, planUses } from '../dsl/semantics/uses.ts';
import { decodeMatchedTwin, runKey } from '../dsl/twin.ts';
import { layerOfStage } from '../ir/names.ts';
import type { Dim } from '../ir/types.ts';
import type { ModelConfig } from '../model/config.ts';
import { type Compiled, compilePlan } from '../passes/compile.ts';
import { dtypeBytes, type Kernel, type KernelProgram } from '../passes/kernelIR.ts';
import { modelFor } from '../runtime/modelFor.ts';
import type { Program } from '../runtime/runner.ts';
import { blockLength } from '../runtime/simulate.ts';
import type { Hardware, WeightDtype } from './hardware.ts';
import { costProbe } from './probes.ts';
import { type Bound, costKernel, type KernelCost, type Sizes, type StepCost, stepCost } from './roofline.ts';
import { type StepShape, scheduleWork, stepSchedule } from './schedule.ts';

/** What a run is costed at, besides each step's own index lists. */
export interface RunOptions {
  /** Sequences generated together, their rows packed into each kernel call. */
  readonly batch: number;
  readonly promptLength: number;
  readonly genLength: number;
  /** The dtype GEMM weights are read in. */
  readonly weights: WeightDtype;
}

export interface AdviseOptions extends Omit<RunOptions, 'weights'> {
  /** Default: the hardware's. */
  readonly weights?: WeightDtype;
  /**
   * The longest generation the crossover search tries. Each try simulates a whole generation of
   * the plan and of its twin, in time quadratic in the length: by default the search goes past
   * `genLength` while a try takes a few seconds at most.
   */
  readonly crossoverLimit?: number;
}

/** The kernels of one role summed over the layers of a step (`layers/5.gemm`: that kernel of every layer). */
export interface KernelGroup {
  readonly name: string;
  readonly kind: KernelCost['kind'];
  readonly weights: readonly string[];
  readonly calls: number;
  readonly flops: number;
  readonly bytes: number;
  readonly seconds: number;
  /** The bound of most of the group's time. */
  readonly bound: Bound;
  /** Its part of the step's time. */
  readonly share: number;
}

export interface PhasePrediction {
  readonly phase: Program;
  readonly steps: number;
  /** Means over the phase's steps. */
  readonly secondsPerStep: number;
  readonly flopsPerStep: number;
  readonly bytesPerStep: number;
  readonly seconds: number;
  /** The bound of most of the phase's time. */
  readonly bound: Bound;
  /** The kernels of the phase's most common step, the costliest first. */
  readonly kernels: readonly KernelGroup[];
}

export interface RunPrediction {
  readonly plan: string;
  /** Generated positions per sequence (at least one block, as `generate` runs it). */
  readonly genLength: number;
  readonly steps: number;
  readonly seconds: number;
  /** FLOPs and bytes of the whole generation (of the whole batch). */
  readonly flops: number;
  readonly bytes: number;
  /** Generated tokens of the whole batch per second. */
  readonly tokensPerSecond: number;
  readonly phases: readonly PhasePrediction[];
}

/**
 * The shortest generation at which the cache pays off (predicted speedup over the twin above 1):
 * `always` when it does from the shortest one (a single block), `never` when it does not up to the
 * search's limit.
 */
export type Crossover =
  | { readonly kind: 'at'; readonly genLength: number }
  | { readonly kind: 'always' }
  /** `upTo` is the longest generation tried; absent when the plan caches nothing at all. */
  | { readonly kind: 'never'; readonly upTo?: number };

export interface Advice {
  readonly plan: string;
  readonly model: string;
  readonly hardware: Hardware;
  readonly batch: number;
  readonly promptLength: number;
  /** Generated positions per sequence (at least one block, as `generate` runs it). */
  readonly genLength: number;
  readonly weights: WeightDtype;
  readonly cache: RunPrediction;
  readonly twin: RunPrediction;
  /** Predicted time of the twin over that of the plan. */
  readonly speedup: number;
  readonly crossover: Crossover;
}

/** A plan compiled for costing: its kernel programs and the step semantics the inspector follows. */
interface Costed {
  readonly checked: CheckedPlan;
  readonly compiled: Compiled;
  /** Each program's kernels by stage. */
  readonly stages: ReadonlyMap<Program, ReadonlyMap<string, readonly Kernel[]>>;
  /** Whether its rules read model internals, for which the runtime reads every layer's input back. */
  readonly readsHidden: boolean;
}

function costed(checked: CheckedPlan, config: ModelConfig, hw: Hardware): Costed {
  const compiled = compilePlan(checked, config, { target: hw.backend });
  const stages = new Map<Program, Map<string, Kernel[]>>();
  for (const [phase, kp] of compiled.state.kernels ?? []) {
    const byStage = new Map<string, Kernel[]>();
    for (const k of kp.kernels) byStage.set(k.stage, [...(byStage.get(k.stage) ?? []), k]);
    stages.set(phase as Program, byStage);
  }
  return { checked, compiled, stages, readsHidden: planUses(checked.plan, modelInternalScores) };
}

/**
 * One step's cost: the embedding and the head from the refresh program (every program has the
 * same ones), each layer from the program it runs, then the probes the step asked for.
 */
function costShape(c: Costed, shape: StepShape, L: number, s: Omit<Sizes, 'dim'>, hw: Hardware): StepCost {
  const dim = (d: Dim): number =>
    // A list the inspector did not build this step is empty to the runner, not stale.
    typeof d === 'number' ? d : d === 'L' ? L : (shape.sizes.get(d.slice(1)) ?? 0);
  const sizes: Sizes = { ...s, dim };
  const kernels = c.compiled.state.kernels as ReadonlyMap<string, KernelProgram>;
  const costs: KernelCost[] = [];
  const add = (program: Program, stage: string) => {
    const kp = kernels.get(program) as KernelProgram;
    const inPlace = c.compiled.state.memory?.get(program);
    for (const k of c.stages.get(program)?.get(stage) ?? [])
      costs.push(costKernel(k, kp, sizes, hw, inPlace));
  };
  for (const stage of c.stages.get('refresh')?.keys() ?? []) {
    const layer = layerOfStage(stage);
    add(layer === undefined ? 'refresh' : (shape.programs[layer] ?? 'refresh'), stage);
  }
  const config = c.compiled.lowered.config;
  if (c.readsHidden && hw.readbackBandwidth)
    for (const layer of c.compiled.lowered.layers.map((r) => r.layer))
      costs.push(readback(layer, config, L, s, hw));
  for (const p of shape.probes) costs.push(costProbe(p, config, L, sizes, hw));
  return stepCost(costs);
}

/**
 * The hidden state entering a layer, copied to the host (src/runtime/batch.ts: read before every
 * layer, for the probes of the step's rules): the whole canvas of every sequence, into a fresh
 * buffer, at the rate the machine's probe measured for that copy.
 */
function readback(layer: number, c: ModelConfig, L: number, s: Omit<Sizes, 'dim'>, hw: Hardware): KernelCost {
  const bytes = s.batch * L * c.dModel * 4;
  return {
    name: `readback.${layer}/hidden`,
    kind: 'readback',
    weights: [],
    flops: 0,
    bytes,
    seconds: bytes / (hw.readbackBandwidth as number),
    bound: 'memory',
  };
}

/** Kernels of one role over the layers: `layer.3/5.gemm` and `layer.4/5.gemm` are `layers/5.gemm`. */
const role = (name: string): string =>
  name.replace(/^(layer|probe|readback)\.\d+\//, (_, kind) => `${kind}s/`);

function groups(step: StepCost): KernelGroup[] {
  const byRole = new Map<string, KernelCost[]>();
  for (const k of step.kernels) byRole.set(role(k.name), [...(byRole.get(role(k.name)) ?? []), k]);
  return [...byRole]
    .map(([name, ks]): KernelGroup => {
      const sum = stepCost(ks);
      return {
        name,
        kind: (ks[0] as KernelCost).kind,
        weights: [...new Set(ks.flatMap((k) => k.weights))],
        calls: ks.length,
        flops: sum.flops,
        bytes: sum.bytes,
        seconds: sum.seconds,
        bound: boundOf(ks),
        share: step.seconds > 0 ? sum.seconds / step.seconds : 0,
      };
    })
    .sort((a, b) => b.seconds - a.seconds);
}

const boundOf = (ks: readonly KernelCost[]): Bound => {
  const compute = ks.filter((k) => k.bound === 'compute').reduce((a, k) => a + k.seconds, 0);
  const all = ks.reduce((a, k) => a + k.seconds, 0);
  return compute > all / 2 ? 'compute' : 'memory';
};

function predictRun(c: Costed, o: RunOptions, hw: Hardware): RunPrediction {
  const schedule = stepSchedule(c.checked, c.compiled.lowered, o.promptLength, o.genLength);
  const L = o.promptLength + schedule.genLength;
  const s = { batch: o.batch, weightBytes: dtypeBytes[o.weights] };
  const phases = new Map<Program, { count: number; cost: StepCost }[]>();
  for (const { shape, count } of schedule.shapes)
    phases.set(shape.phase, [
      ...(phases.get(shape.phase) ?? []),
      { count, cost: costShape(c, shape, L, s, hw) },
    ]);
  const order: readonly Program[] = ['refresh', 'cached', 'reuse'];
  const predictions = order.flatMap((phase): PhasePrediction[] => {
    const entries = phases.get(phase);
    if (!entries) return [];
    const steps = entries.reduce((a, e) => a + e.count, 0);
    const total = (f: (c: StepCost) => number) => entries.reduce((a, e) => a + e.count * f(e.cost), 0);
    const seconds = total((c) => c.seconds);
    const common = entries.reduce((a, e) => (e.count > a.count ? e : a));
    const all = entries.flatMap((e) => e.cost.kernels.map((k) => ({ ...k, seconds: k.seconds * e.count })));
    return [
      {
        phase,
        steps,
        secondsPerStep: seconds / steps,
        flopsPerStep: total((c) => c.flops) / steps,
        bytesPerStep: total((c) => c.bytes) / steps,
        seconds,
        bound: boundOf(all),
        kernels: groups(common.cost),
      },
    ];
  });
  const sum = (f: (p: PhasePrediction) => number) => predictions.reduce((a, p) => a + p.steps * f(p), 0);
  const seconds = sum((p) => p.secondsPerStep);
  return {
    plan: c.checked.plan.name,
    genLength: schedule.genLength,
    steps: schedule.steps,
    seconds,
    flops: sum((p) => p.flopsPerStep),
    bytes: sum((p) => p.bytesPerStep),
    tokensPerSecond: (o.batch * schedule.genLength) / seconds,
    phases: predictions,
  };
}

const checkCount = (what: string, v: number, least: number) => {
  if (!Number.isInteger(v) || v < least)
    throw new RangeError(`the ${what} must be a whole number of at least ${least}, got ${v}`);
};

function checkSizes(o: AdviseOptions): void {
  checkCount('batch', o.batch, 1);
  checkCount('prompt length', o.promptLength, 0);
  checkCount('generation length', o.genLength, 1);
}

/** The predicted run of a plan alone: every step of a generation on the roofline of `hw`. */
export function predict(plan: CheckedPlan, base: ModelConfig, hw: Hardware, o: RunOptions): RunPrediction {
  checkSizes(o);
  return predictRun(costed(plan, modelFor(plan, base), hw), o, hw);
}

/**
 * The shortest generation whose predicted speedup exceeds 1: doubling from one token, then
 * bisecting the last doubling. The speedup dips after each block boundary (a new block starts with
 * a refresh), so this finds a crossing, the first one on the doubling grid.
 */
export function searchCrossover(speedupAt: (genLength: number) => number, limit: number): Crossover {
  if (speedupAt(1) > 1) return { kind: 'always' };
  let lo = 1;
  let hi = Math.min(2, limit);
  while (speedupAt(hi) <= 1) {
    if (hi >= limit) return { kind: 'never', upTo: limit };
    lo = hi;
    hi = Math.min(2 * hi, limit);
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (speedupAt(mid) > 1) hi = mid;
    else lo = mid;
  }
  return { kind: 'at', genLength: hi };
}

/** The twin, checked like a plan the user wrote; a plan whose twin does not check has a bug. */
function twinOf(plan: CheckedPlan): CheckedPlan {
  const twin = decodeMatchedTwin(plan);
  if (!twin.ok)
    throw new Error(
      `the no-cache twin of ${plan.plan.name} does not check: ${twin.diagnostics.map((d) => d.message).join('; ')}`,
    );
  return twin.checked;
}

/**
 * Row-steps of the checker's simulation (src/dsl/semantics/budget.ts) the crossover search may
 * spend on its longest try, plan and twin together: a few seconds.
 */
const searchBudget = 20 * simulationBudget;

/** The longest generation the search tries: the one asked about, or longer while the budget lasts. */
function searchLimit(plan: Costed, twin: Costed, o: AdviseOptions): number {
  const work = (g: number) =>
    [plan, twin].reduce((a, c) => a + scheduleWork(c.checked, c.compiled.lowered, o.promptLength, g), 0);
  let g = o.genLength;
  while (work(2 * g) <= searchBudget) g *= 2;
  return g;
}

/** What `plan` is predicted to take on `hw`, against its decode-matched no-cache twin. */
export function advise(plan: CheckedPlan, base: ModelConfig, hw: Hardware, o: AdviseOptions): Advice {
  checkSizes(o);
  const config = modelFor(plan, base);
  const run: RunOptions = { ...o, weights: o.weights ?? hw.weights };
  const twinPlan = twinOf(plan);
  const cache = costed(plan, config, hw);
  const twin = costed(twinPlan, config, hw);
  const runs = new Map<number, readonly [RunPrediction, RunPrediction]>();
  const both = (g: number) => {
    // Shorter than a block, a generation runs one block: the same run.
    const key = Math.max(g, blockLength(plan, g));
    let r = runs.get(key);
    if (!r) {
      const at = { ...run, genLength: g };
      r = [predictRun(cache, at, hw), predictRun(twin, at, hw)] as const;
      runs.set(key, r);
    }
    return r;
  };
  const speedupAt = (g: number) => {
    const [c, t] = both(g);
    return t.seconds / c.seconds;
  };
  const [cachePrediction, twinPrediction] = both(o.genLength);
  // A plan that runs as its own twin caches nothing: its speedup is 1 at every length.
  const cachesNothing = runKey(plan) === runKey(twinPlan);
  return {
    plan: plan.plan.name,
    model: config.name,
    hardware: hw,
    batch: o.batch,
    promptLength: o.promptLength,
    genLength: cachePrediction.genLength,
    weights: run.weights,
    cache: cachePrediction,
    twin: twinPrediction,
    speedup: speedupAt(o.genLength),
    crossover: cachesNothing
      ? { kind: 'never' }
      : searchCrossover(speedupAt, o.crossoverLimit ?? searchLimit(cache, twin, o)),
  };
}
