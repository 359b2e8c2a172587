/**
 * `npm run bench -- policies`: every example plan on one random LLaMA-shaped model, the same
 * prompts, on the CPU backend, in one process. Tokens/s counts generated tokens only; the ideal
 * speedup is the ratio of FLOPs the IR predicts for the whole generation (each step's kernels
 * costed with that step's index-list sizes, plus the score probes the plan ran); agreement is the
 * fraction of generated tokens equal to the no-cache baseline's. The roofline ideal costs every kernel
 * of every step (each layer's of the program it ran) at max(FLOPs / peak FLOP/s, bytes / bandwidth), the peak and bandwidth measured in
 * the same run just before and just after the plan's pass (src/cost/probe.ts; the mean of the two
 * times), and `of roofline` is that time over the measured step time: how close the plan's kernels
 * come to the machine (score probes and host work count against it).
 * With --repeats N every plan generates N times, one pass over all plans after another, and its
 * fastest pass is reported (all passes' step times are in `steps_ms_passes`).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { buildCpu, type CpuBuild, CpuRunner } from '../src/backends/cpu/runner.ts';
import { pureRooflineMeter } from '../src/cost/probe.ts';
import { costProbe } from '../src/cost/probes.ts';
import { costRan, type InPlace, type Roofline } from '../src/cost/roofline.ts';
import { type CheckedPlan, checkSource } from '../src/dsl/check.ts';
import type { Dim } from '../src/ir/types.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { presets } from '../src/model/presets.ts';
import { createRng, randomWeights } from '../src/model/weights.ts';
import { compilePlan } from '../src/passes/compile.ts';
import type { KernelProgram } from '../src/passes/kernelIR.ts';
import { fmt, table } from '../src/report/table.ts';
import { modelFor } from '../src/runtime/modelFor.ts';
import type { Probe, ProbeOutput } from '../src/runtime/probe.ts';
import type { StepRunner } from '../src/runtime/runner.ts';
import { simulateGeneration } from '../src/runtime/simulate.ts';
import { Journal, type JournalSettings, type PassRecord, sourcesHash } from './journal.ts';
import { type Destination, saveResults } from './save.ts';
import { steadyDefaults, steadyMeter } from './steadyRoofline.ts';
import { machineInfo, otherProcessesMeter } from './timing.ts';

export interface PoliciesOptions {
  readonly config: ModelConfig;
  readonly promptLen: number;
  readonly genLen: number;
  readonly block: number;
  readonly prompts: number;
  /** Only the plans with these names (the baseline always runs: every ratio is against it). */
  readonly plans?: readonly string[];
  /** Passes over the plans; each plan's fastest is reported (default 1). */
  readonly repeats: number;
  readonly to: Destination;
  /**
   * A journal of the run's passes (bench/journal.ts) at `path`: the run resumes it and keeps it up
   * to date, and with `stopAfterMs` starts no pass after that many milliseconds.
   */
  readonly journal?: { readonly path: string; readonly stopAfterMs?: number };
}

/** A LLaMA-shaped model large enough for caching to matter (the issue's size: d_model 1024, 8 layers). */
export const benchModel: ModelConfig = {
  ...(presets.small as ModelConfig),
  name: 'bench-1024x8',
  layers: 8,
  dModel: 1024,
  heads: 16,
  kvHeads: 16,
  headDim: 64,
  dFF: 2816,
  vocab: 256,
  maskTokenId: 255,
  qkvBias: false,
};

/** Milliseconds of a synchronous call, reported to `add`. */
function timed<A extends unknown[], R>(f: (...a: A) => R, add: (ms: number) => void): (...a: A) => R {
  return (...a) => {
    const t = performance.now();
    try {
      return f(...a);
    } finally {
      add(performance.now() - t);
    }
  };
}

/** A step's size of each dim: its index list's length (`#rows.0`: sizes `rows.0`), L for the canvas. */
export const stepSize =
  (L: number, sizes: ReadonlyMap<string, number>) =>
  (d: Dim): number =>
    typeof d === 'number' ? d : d === 'L' ? L : (sizes.get(d.slice(1)) ?? L);

/** Seconds of some work on a machine's pure roofline. */
export type RooflineTime = (hw: Roofline) => number;

/**
 * The CPU runner with its stages (embed, layers, head: the compiled kernels) timed into `stages`, and
 * its score probes timed into `probes` and reporting their FLOPs and roofline time to `count` (own
 * properties shadow the runner's methods and getter).
 * What a step spends outside both is host work: the inspector's sets and index lists, the decode
 * rule, copies of the carried state.
 */
export function instrumented(
  runner: CpuRunner,
  config: ModelConfig,
  count: (flops: number, time: RooflineTime) => void,
  stages: (ms: number) => void,
  probes: (ms: number) => void,
): StepRunner {
  runner.embed = timed(runner.embed.bind(runner), stages);
  runner.layer = timed(runner.layer.bind(runner), stages);
  runner.head = timed(runner.head.bind(runner), stages);
  const probe = runner.probe;
  if (!probe) return runner;
  const counted: Probe = {
    measure: timed((output: ProbeOutput, layer, h, queries, blocks) => {
      const result = probe.measure(output, layer, h, queries, blocks);
      const L = h.shape[0] as number;
      const sizes = { dim: () => L, batch: 1, weightBytes: 4 };
      // Costed at what it projected: a probe that keeps projections projects only changed rows.
      const probeOf = { output, layer, queries: queries.length, projected: probe.projected };
      const cost = (hw: Roofline) => costProbe(probeOf, config, L, sizes, hw);
      // Its FLOPs are the same on every machine.
      count(cost({ peakFlops: 1, bandwidth: 1 }).flops, (hw) => cost(hw).seconds);
      return result;
    }, probes),
    // Drift against a cache is host work, as it was when the host computed it. (The softmax
    // statistics of the decode rule are the head stage's: native, next to the logits.)
    rowDrift: probe.rowDrift?.bind(probe),
  };
  return Object.defineProperty(runner, 'probe', { value: counted });
}

/** One generation of every prompt by a plan: its step time and what it is measured against. */
interface Pass {
  readonly ms: number;
  /** The kernels' and probes' time on a roofline: the sum over the steps and probes of the pass. */
  readonly roofSeconds: RooflineTime;
  /** FLOPs of the kernels and of the score probes (`probe` of them). */
  readonly flops: number;
  readonly probe: number;
  readonly stageMs: number;
  readonly probeMs: number;
  readonly generated: number;
  readonly outputs: Int32Array[];
  readonly peak: number;
}

const builds = new Map<
  CheckedPlan,
  {
    build: CpuBuild;
    kernels: ReadonlyMap<string, KernelProgram>;
    memory: ReadonlyMap<string, InPlace>;
    peak: number;
  }
>();

async function generatePass(
  plan: CheckedPlan,
  o: PoliciesOptions,
  L: number,
  prompts: readonly Int32Array[],
  weightsOf: Map<string, ReturnType<typeof randomWeights>>,
): Promise<Pass> {
  const config = modelFor(plan, o.config);
  const shapeKey = JSON.stringify([
    config.layers,
    config.dModel,
    config.heads,
    config.kvHeads,
    config.dFF,
    config.vocab,
  ]);
  const weights = weightsOf.get(shapeKey) ?? randomWeights(config, 3);
  weightsOf.set(shapeKey, weights);
  let compiled = builds.get(plan);
  if (!compiled) {
    const { state } = compilePlan(plan, config, { target: 'cpu', canvas: L });
    compiled = {
      build: buildCpu(plan, config, L),
      kernels: state.kernels as ReadonlyMap<string, KernelProgram>,
      memory: state.memory ?? new Map(),
      peak: Math.max(...[...(state.memory?.values() ?? [])].map((m) => m.peakBytes)),
    };
    builds.set(plan, compiled);
  }
  const { build, kernels, memory, peak } = compiled;
  let ms = 0;
  const roofTimes: RooflineTime[] = [];
  let flops = 0;
  let probe = 0;
  let stageMs = 0;
  let probeMs = 0;
  let generated = 0;
  const outputs: Int32Array[] = [];
  for (const prompt of prompts) {
    const r = await simulateGeneration(plan, build.lowered, {
      config,
      weights,
      prompt,
      genLen: o.genLen,
      seed: 1,
      compare: false,
      runner: (n) =>
        instrumented(
          new CpuRunner(build, weights, n),
          config,
          (f, time) => {
            probe += f;
            roofTimes.push(time);
          },
          (t) => {
            stageMs += t;
          },
          (t) => {
            probeMs += t;
          },
        ),
      onStep: (info) => {
        ms += info.ms;
        const sizes = { dim: stepSize(L, info.sizes), batch: 1, weightBytes: 4 };
        // Each layer costed at the program it ran (a reused partial's `reuse`, not `cached`).
        flops += costRan(kernels, info.programs, sizes, { peakFlops: 1, bandwidth: 1 }, memory).flops;
        roofTimes.push((hw) => costRan(kernels, info.programs, sizes, hw, memory).seconds);
      },
    });
    generated += o.genLen;
    outputs.push(r.tokens.slice(o.promptLen));
  }
  const roofSeconds = (hw: Roofline) => roofTimes.reduce((a, t) => a + t(hw), 0);
  return { ms, roofSeconds, flops: flops + probe, probe, stageMs, probeMs, generated, outputs, peak };
}

function examplePlans(block: number, only: readonly string[] | undefined): CheckedPlan[] {
  const files = readdirSync('examples')
    .filter((f) => f.endsWith('.kvp'))
    .sort();
  return files
    .map((f) => {
      const path = `examples/${f}`;
      const text = readFileSync(path, 'utf8');
      const overrides = /\bblock\s*(:\s*int\s*)?=/.test(text)
        ? new Map([['block', String(block)]])
        : undefined;
      const r = checkSource({ path, text }, overrides ? { overrides } : {});
      const plan = r.plans[0];
      if (!plan) throw new Error(`${path} does not check`);
      return plan;
    })
    .filter((p) => !only || p.plan.name === 'baseline' || only.includes(p.plan.name));
}

/** What a journal of this run must have been begun with: its options, this CPU and these sources. */
function journalSettings(o: PoliciesOptions, plans: readonly CheckedPlan[]): JournalSettings {
  const { cpu, family_model, cores } = machineInfo();
  return {
    model: o.config,
    prompt_length: o.promptLen,
    gen_length: o.genLen,
    block: o.block,
    prompts: o.prompts,
    repeats: o.repeats,
    plans: plans.map((p) => p.plan.name),
    machine: { cpu, family_model, cores },
    sources: sourcesHash(),
  };
}

const range = (xs: readonly number[]) => ({ min: Math.min(...xs), max: Math.max(...xs) });

export async function policiesSuite(o: PoliciesOptions): Promise<void> {
  const started = performance.now();
  const others = otherProcessesMeter();
  const rows: Record<string, unknown>[] = [];
  const plans = examplePlans(o.block, o.plans);
  const unknown = o.plans?.filter((n) => !plans.some((p) => p.plan.name === n)) ?? [];
  if (unknown.length > 0) throw new Error(`no example plan named ${unknown.join(', ')}`);
  // Random weights depend only on the shapes: made once per shape, not once per plan.
  const weightsOf = new Map<string, ReturnType<typeof randomWeights>>();
  const rng = createRng(7);
  const prompts = Array.from({ length: o.prompts }, () =>
    Int32Array.from({ length: o.promptLen }, () => Math.floor(rng.uniform() * (o.config.vocab - 1))),
  );
  const L = o.promptLen + o.genLen;
  let baseline: { tokens: readonly (readonly number[])[]; tps: number; flops: number } | undefined;
  // Every plan is generated `repeats` times, one pass over all plans after another, and its
  // fastest pass kept: this host has phases of seconds in which memory-bound work runs up to a
  // third slower (docs/perf.md), and a later pass over the plans meets other phases.
  const sorted = plans.sort((a, b) => (a.plan.name === 'baseline' ? -1 : b.plan.name === 'baseline' ? 1 : 0));
  const journal = o.journal && Journal.open(o.journal.path, journalSettings(o, sorted));
  const stopAfterMs = o.journal?.stopAfterMs ?? Number.POSITIVE_INFINITY;
  // The pure roofline of this machine (its float32 GEMM peak and its memory bandwidth, nothing
  // else), measured before and after every plan's pass: its bandwidth has phases of seconds to
  // minutes, and a plan is held to the machine of its own minute, not of the run's first; a
  // reading whose peak is a slow moment of the host is read again (steadyMeter).
  const measure = steadyMeter(await pureRooflineMeter(), {
    ...steadyDefaults,
    onRetake: (low, best) =>
      console.error(
        `roofline: peak read ${fmt(low.peakFlops / 1e9, 3)} GFLOP/s, under ${steadyDefaults.floor} of the ${fmt(best / 1e9, 3)} read before: read again`,
      ),
  });
  const measured: Roofline[] = [];
  const meter = () => {
    const m = measure();
    measured.push(m);
    return m;
  };
  const best = new Map<string, PassRecord>();
  const passMs = new Map<string, number[]>();
  for (let pass = 0; pass < o.repeats; pass++) {
    // The machine measured just before a pass: the one after the last pass run, when it ran just before.
    let before: Roofline | undefined;
    for (const plan of sorted) {
      const name = plan.plan.name;
      const label = `${name}${o.repeats > 1 ? ` (pass ${pass + 1} of ${o.repeats})` : ''}`;
      let r = journal?.get(name, pass);
      if (!r && performance.now() - started > stopAfterMs) continue;
      if (r) {
        before = undefined;
        console.error(`${label}: from ${journal?.path}`);
      } else {
        const planStarted = performance.now();
        before ??= meter();
        const p = await generatePass(plan, o, L, prompts, weightsOf);
        const after = meter();
        // The roofline time on the machine measured before the pass and on the one measured after
        // it, averaged: a phase that changes during the pass is met halfway.
        const roofMs = 500 * (p.roofSeconds(before) + p.roofSeconds(after));
        r = {
          ms: p.ms,
          roofMs,
          flops: p.flops,
          probe: p.probe,
          stageMs: p.stageMs,
          probeMs: p.probeMs,
          generated: p.generated,
          outputs: p.outputs.map((t) => [...t]),
          peak: p.peak,
          around: [before, after],
        };
        journal?.record(name, pass, r, others());
        console.error(
          `${label}: ${fmt((1000 * r.generated) / r.ms)} tokens/s, ` +
            `${fmt((performance.now() - planStarted) / 1000)} s, bandwidth ${fmt(before.bandwidth / 1e9)} -> ${fmt(after.bandwidth / 1e9)} GB/s`,
        );
        before = after;
      }
      passMs.set(name, [...(passMs.get(name) ?? []), r.ms]);
      const kept = best.get(name);
      if (!kept || r.ms < kept.ms) best.set(name, r);
    }
  }
  const left = journal?.missing() ?? 0;
  if (journal && left > 0) {
    console.error(
      `stopped after ${fmt((performance.now() - started) / 60000)} minutes (--stop-after): ${left} of ` +
        `${o.repeats * sorted.length} passes left; the same command resumes the run from ${journal.path}`,
    );
    return;
  }
  for (const plan of sorted) {
    const name = plan.plan.name;
    const { ms, roofMs, flops, stageMs, probeMs, generated, outputs, peak, probe, around } = best.get(
      name,
    ) as PassRecord;
    const tps = (1000 * generated) / ms;
    if (name === 'baseline') baseline = { tokens: outputs, tps, flops };
    const base = baseline;
    const same = base
      ? outputs.reduce((a, t, i) => a + t.filter((x, j) => x === base.tokens[i]?.[j]).length, 0)
      : generated;
    // Logit deviation from the golden, measured on a small model where the float64 golden is cheap.
    const small = modelFor(plan, presets.small as ModelConfig);
    const dev = await simulateGeneration(plan, compilePlan(plan, small, { target: 'reference' }).lowered, {
      config: small,
      weights: randomWeights(small, 3),
      prompt: Int32Array.from({ length: 8 }, (_, i) => (3 * i + 1) % (small.vocab - 1)),
      genLen: 2 * Math.min(o.block, 16),
      seed: 1,
    });
    rows.push({
      plan: name,
      tokens_per_s: tps,
      speedup: base ? tps / base.tps : 1,
      ideal_speedup: base ? base.flops / flops : 1,
      roofline_ms: roofMs,
      of_roofline: roofMs / ms,
      roofline_around: around.map((r) => ({ peak_flops: r.peakFlops, bandwidth: r.bandwidth })),
      kernel_share: stageMs / ms,
      probe_time_share: probeMs / ms,
      host_share: (ms - stageMs - probeMs) / ms,
      agreement: same / generated,
      max_logit_dev: Math.max(...dev.steps.map((s) => s.deviation)),
      peak_bytes: peak,
      steps_ms: ms,
      steps_ms_passes: passMs.get(name),
      gflop: flops / 1e9,
      probe_share: probe / flops,
    });
  }
  const headers = [
    'plan',
    'tokens/s',
    'speedup',
    'ideal',
    'speedup/ideal',
    'of roofline',
    'host share',
    'agreement',
    'max logit dev',
    'peak MB',
    'probe share',
  ];
  const cells = rows.map((r) => [
    String(r.plan),
    fmt(r.tokens_per_s as number),
    fmt(r.speedup as number),
    fmt(r.ideal_speedup as number),
    fmt((r.speedup as number) / (r.ideal_speedup as number)),
    fmt(r.of_roofline as number),
    fmt(r.host_share as number),
    fmt(r.agreement as number),
    fmt(r.max_logit_dev as number),
    fmt((r.peak_bytes as number) / 1e6),
    fmt(r.probe_share as number),
  ]);
  console.log(table(headers, cells));
  const result = {
    suite: 'policies',
    date: new Date().toISOString(),
    seconds: (performance.now() - started) / 1000,
    other_processes_busy_cores: others(),
    machine: machineInfo(),
    // A run in parts: each process's time, load and passes (the numbers of one build of the code).
    ...(journal ? { journal: { path: journal.path, segments: journal.segments } } : {}),
    roofline: {
      measurements: measured.length,
      peak_flops: range(measured.map((r) => r.peakFlops)),
      bandwidth: range(measured.map((r) => r.bandwidth)),
    },
    model: o.config,
    prompt_length: o.promptLen,
    gen_length: o.genLen,
    block: o.block,
    prompts: o.prompts,
    backend: 'cpu',
    rows,
  };
  saveResults(o.to, result);
}
