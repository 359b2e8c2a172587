/**
 * `npx tsx bench/step-profile.ts <plan.kvp> [--prompt-length 32] [--gen-length 128] [--top 30]`:
 * where the steps of a plan spend their time, statement by statement of its generated C, during a
 * real generation on the policies benchmark's model (CPU backend, 2 threads).
 *
 * The plan's C source is rewritten with a monotonic clock read around every top-level statement of
 * its stage functions (a primitive's call, a copy, a fused pointwise loop, a multi-GEMM block), built
 * as a library of its own and run through one warm-up generation and one measured one. Each row is
 * one statement of one stage function (a function several layers share counts them all): its
 * share of the time inside the stages, its calls and its mean time a call. What the stages do not
 * cover (host work between them) is the step time less their sum.
 *
 * A second table holds each kernel of the plan's IR to its roofline: the statements of a kernel
 * (those after its `/* kernel ... *\/` comment in a stage function) against the kernel costed at
 * max(FLOPs / peak, bytes / bandwidth) with each step's index-list sizes, summed over the steps
 * (costKernel, as `bench policies` costs a step), the peak and the bandwidth read just before and
 * just after the measured generation (their mean). Rows are ordered by the time lost to the
 * roofline. Score probes run outside the stage functions and are in neither table; a last line
 * holds them to theirs (costProbe, as `bench policies` costs them), and the kernels and probes
 * together to the step time: the figure `bench policies` reports as `of roofline`, for one
 * generation of one prompt, at any size (the issue's full size runs one plan in minutes).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import koffi from 'koffi';
import { compileLibrary, openLibrary } from '../src/backends/cpu/compiler.ts';
import { buildCpu, type CpuBuild, CpuRunner } from '../src/backends/cpu/runner.ts';
import { pureRooflineMeter } from '../src/cost/probe.ts';
import { costKernel, type Roofline, ranKernels } from '../src/cost/roofline.ts';
import { checkSource } from '../src/dsl/check.ts';
import { createRng, randomWeights } from '../src/model/weights.ts';
import { compilePlan } from '../src/passes/compile.ts';
import type { KernelProgram } from '../src/passes/kernelIR.ts';
import { fmt, table } from '../src/report/table.ts';
import { modelFor } from '../src/runtime/modelFor.ts';
import { benchModel, instrumented, type RooflineTime, stepSize } from './policies.ts';
import { timedGeneration } from './timing.ts';

const usage =
  'usage: npx tsx bench/step-profile.ts <plan.kvp> [--prompt-length 32] [--gen-length 128] [--top 30]';
const fail = (msg: string, code: number): never => {
  console.error(`step-profile: ${msg}\n${usage}`);
  process.exit(code);
};
const { values, positionals } = (() => {
  try {
    return parseArgs({
      options: {
        'prompt-length': { type: 'string' },
        'gen-length': { type: 'string' },
        top: { type: 'string' },
      },
      allowPositionals: true,
    });
  } catch (e) {
    return fail((e as Error).message, 2);
  }
})();
const count = (name: string, d: number): number => {
  const v = Number(values[name as keyof typeof values] ?? d);
  if (!Number.isInteger(v) || v < 1) fail(`--${name} takes a positive integer`, 2);
  return v;
};
const [file, ...extra] = positionals;
if (file === undefined || extra.length > 0) fail('give one plan file', 2);
const promptLen = count('prompt-length', 32);
const genLen = count('gen-length', 128);
const top = count('top', 30);

const text = readFileSync(file as string, 'utf8');
// Plans with a block parameter run with blocks of 32, as in the policies benchmark.
const checked = checkSource(
  { path: file as string, text },
  /\bblock\s*(:\s*int\s*)?=/.test(text) ? { overrides: new Map([['block', '32']]) } : {},
);
const plan = checked.plans[0];
if (!plan) fail(`${file} does not check`, 1);
const config = modelFor(plan as NonNullable<typeof plan>, benchModel);
const L = promptLen + genLen;
const build = buildCpu(plan as NonNullable<typeof plan>, config, L);

/** The plan's source with a clock around every top-level statement of its stage functions. */
function instrument(source: string): { source: string; labels: string[]; owners: string[] } {
  const out: string[] = [];
  const labels: string[] = [];
  const owners: string[] = [];
  let fn = '';
  let kernel = '';
  let block: string[] | undefined;
  const timed = (statement: string[]) => {
    labels.push(`${fn} ${kernel}: ${statement.join(' ').replace(/\s+/g, ' ').trim().slice(0, 70)}`);
    owners.push(kernelKey(fn, kernel));
    const id = labels.length - 1;
    out.push('  { const int64_t kvp_t0 = kvp_prof_now();', ...statement);
    out.push(`  KVP_NS[${id}] += kvp_prof_now() - kvp_t0; KVP_CALLS[${id}]++; }`);
  };
  for (const line of source.split('\n')) {
    const opened = /^(?:static )?void (kvp_\w+)\(const int32_t \*N.*\{$/.exec(line);
    if (opened) {
      fn = opened[1] as string;
      kernel = '';
      out.push(line);
    } else if (fn && line === '}') {
      fn = '';
      out.push(line);
    } else if (!fn) {
      out.push(line);
      if (line === '#include "kvplan_cpu.h"')
        out.push(
          '#include <time.h>',
          'static int64_t KVP_NS[KVP_PROF_MAX], KVP_CALLS[KVP_PROF_MAX];',
          'int64_t *kvp_prof_ns(void) { return KVP_NS; }',
          'int64_t *kvp_prof_calls(void) { return KVP_CALLS; }',
          'static inline int64_t kvp_prof_now(void) {',
          '  struct timespec t;',
          '  clock_gettime(CLOCK_MONOTONIC, &t);',
          '  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;',
          '}',
        );
    } else if (block) {
      block.push(line);
      if (line === '  }') {
        timed(block);
        block = undefined;
      }
    } else if (line === '  {') block = [line];
    else if (/^ {2}\/\* kernel /.test(line)) {
      kernel = line.replace(/^ {2}\/\* kernel (\S+).*$/, '$1');
      out.push(line);
    } else if (/^ {2}(kv_|memcpy|memset|for |_Pragma|if |kvp_)/.test(line)) timed([line]);
    else out.push(line);
  }
  if (labels.length === 0)
    throw new Error('no statement of the generated C was recognised: has its layout changed?');
  const head = out.indexOf('#include "kvplan_cpu.h"');
  out.splice(head, 0, `#define KVP_PROF_MAX ${labels.length}`);
  return { source: out.join('\n'), labels, owners };
}

/** A kernel as a function of the generated C holds it: `layer.3/2.gemm` is `2.gemm` there. */
function kernelKey(fn: string, kernel: string): string {
  return `${fn} ${kernel.replace(/^[^/]*\//, '')}`;
}

/** The function each stage runs: a shared one its wrapper calls, or its own. */
function stageFunctions(source: string): (stage: string) => string {
  const shared = new Map(
    [...source.matchAll(/^void (kvp_\w+)\(const int32_t \*N\) \{ (kvp_shared_\d+)\(/gm)].map(
      (m) => [m[1] as string, m[2] as string] as const,
    ),
  );
  return (stage) => shared.get(stage) ?? stage;
}

/** The C function of phase `phase` that runs IR kernel `name` (`layer.3/2.gemm`, `head/1.logits`). */
function functionOf(fnOf: (stage: string) => string, phase: string, name: string): string {
  const stage = (name.split('/')[0] as string).replace(/^layer\./, 'layer_');
  return fnOf(`kvp_${phase}_${stage}`);
}

const { source, labels, owners } = instrument(build.source);
const compiled = compileLibrary(source, {
  flags: ['-O2', '-march=native', '-fPIC', '-shared', '-std=c11'],
  against: build.primitives,
});
const profiled: CpuBuild = { ...build, source, library: compiled.path, compiled };
const weights = randomWeights(config, 3);
const rng = createRng(7);
const prompt = Int32Array.from({ length: promptLen }, () => Math.floor(rng.uniform() * (config.vocab - 1)));
const runner = new CpuRunner(profiled, weights, L);
// Score probes, outside the stage functions, timed and costed as `bench policies` does them.
let probeMs = 0;
let probeRoofs: RooflineTime[] = [];
instrumented(
  runner,
  config,
  (_, time) => probeRoofs.push(time),
  () => {},
  (ms) => {
    probeMs += ms;
  },
);
// The runner has loaded the library (after the primitives it links against); this is the same one.
const lib = openLibrary(compiled, ['kvp_prof_ns', 'kvp_prof_calls']);
const counters = (name: string) =>
  new BigInt64Array(koffi.view(lib.func(`int64_t *${name}(void)`)(), 8 * labels.length));
const [ns, calls] = [counters('kvp_prof_ns'), counters('kvp_prof_calls')];
const { state } = compilePlan(plan as NonNullable<typeof plan>, config, { target: 'cpu', canvas: L });
const programs = state.kernels as ReadonlyMap<string, KernelProgram>;
const meter = await pureRooflineMeter();
let stepMs = 0;
let steps: { programs: ReadonlyMap<number, string>; sizes: ReadonlyMap<string, number> }[] = [];
let around: Roofline[] = [];
for (const measured of [false, true]) {
  ns.fill(0n);
  calls.fill(0n);
  steps = [];
  probeMs = 0;
  probeRoofs = [];
  if (measured) around = [meter()];
  stepMs = (
    await timedGeneration(
      plan as NonNullable<typeof plan>,
      profiled,
      runner,
      { config, weights },
      prompt,
      genLen,
      (info) => steps.push({ programs: info.programs, sizes: info.sizes }),
    )
  ).ms;
  if (measured) around.push(meter());
}

const rows = labels
  .map((label, i) => ({ label, ns: Number(ns[i]), calls: Number(calls[i]) }))
  .filter((r) => r.calls > 0)
  .sort((a, b) => b.ns - a.ns);
const inStages = rows.reduce((a, r) => a + r.ns, 0);
console.log(
  `${plan?.plan.name} on ${config.name}, prompt ${promptLen}, generation ${genLen}: steps ${fmt(stepMs)} ms, ` +
    `timed statements ${fmt(inStages / 1e6)} ms (the rest is host work and the clock reads)\n`,
);
console.log(
  table(
    ['function, kernel: statement', 'share', 'calls', 'us a call'],
    rows
      .slice(0, top)
      .map((r) => [r.label, fmt(r.ns / inStages), String(r.calls), fmt(r.ns / r.calls / 1e3)]),
  ),
);

// Each kernel's statements against its roofline time, summed over the steps.
const fnOf = stageFunctions(build.source);
const measuredNs = new Map<string, number>();
owners.forEach((key, i) => {
  measuredNs.set(key, (measuredNs.get(key) ?? 0) + Number(ns[i]));
});
const roofSeconds = new Map<string, number>();
for (const step of steps) {
  const s = { dim: stepSize(L, step.sizes), batch: 1, weightBytes: 4 };
  for (const { program, kp, kernel } of ranKernels(programs, step.programs)) {
    const key = kernelKey(functionOf(fnOf, program, kernel.name), kernel.name);
    const seconds =
      around.reduce((a, hw) => a + costKernel(kernel, kp, s, hw, state.memory?.get(program)).seconds, 0) /
      around.length;
    roofSeconds.set(key, (roofSeconds.get(key) ?? 0) + seconds);
  }
}
const unowned = [...roofSeconds.keys()].filter((key) => !measuredNs.has(key));
if (unowned.length > 0)
  throw new Error(
    `${unowned.length} kernels of the IR have no statement timed in the generated C (` +
      `${unowned.slice(0, 3).join(', ')}${unowned.length > 3 ? ', …' : ''}): has its layout changed?`,
  );
const kernelRows = [...measuredNs.keys()]
  .map((key) => ({ key, ms: (measuredNs.get(key) ?? 0) / 1e6, roof: (roofSeconds.get(key) ?? 0) * 1e3 }))
  .filter((r) => r.ms > 0 || r.roof > 0)
  .sort((a, b) => b.ms - b.roof - (a.ms - a.roof));
const roofTotal = kernelRows.reduce((a, r) => a + r.roof, 0);
const hw = around
  .map((r) => `${fmt(r.peakFlops / 1e9)} GFLOP/s, ${fmt(r.bandwidth / 1e9)} GB/s`)
  .join(' -> ');
console.log(
  `\nkernels against their roofline (${hw}): ${fmt(roofTotal)} ms of roofline, ` +
    `${fmt(roofTotal / stepMs)} of the step time\n`,
);
console.log(
  table(
    ['function, kernel', 'ms', 'roofline ms', 'of roofline', 'lost ms'],
    kernelRows
      .slice(0, top)
      .map((r) => [r.key, fmt(r.ms), fmt(r.roof), r.ms > 0 ? fmt(r.roof / r.ms) : '-', fmt(r.ms - r.roof)]),
  ),
);
const probeRoof =
  (probeRoofs.reduce((a, t) => a + around.reduce((b, hw) => b + t(hw), 0), 0) / around.length) * 1e3;
console.log(
  `\nscore probes: ${probeRoofs.length} calls, ${fmt(probeMs)} ms against ${fmt(probeRoof)} ms of roofline; ` +
    `kernels and probes at ${fmt((roofTotal + probeRoof) / stepMs)} of the step time against their roofline`,
);
