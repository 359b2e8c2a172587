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
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import koffi from 'koffi';
import { compileLibrary, openLibrary } from '../src/backends/cpu/compiler.ts';
import { buildCpu, type CpuBuild, CpuRunner } from '../src/backends/cpu/runner.ts';
import { checkSource } from '../src/dsl/check.ts';
import { createRng, randomWeights } from '../src/model/weights.ts';
import { fmt, table } from '../src/report/table.ts';
import { modelFor } from '../src/runtime/modelFor.ts';
import { benchModel } from './policies.ts';
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
function instrument(source: string): { source: string; labels: string[] } {
  const out: string[] = [];
  const labels: string[] = [];
  let fn = '';
  let kernel = '';
  let block: string[] | undefined;
  const timed = (statement: string[]) => {
    labels.push(`${fn} ${kernel}: ${statement.join(' ').replace(/\s+/g, ' ').trim().slice(0, 70)}`);
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
    } else if (/^ {2}(kv_|memcpy|memset|for |if |kvp_)/.test(line)) timed([line]);
    else out.push(line);
  }
  if (labels.length === 0)
    throw new Error('no statement of the generated C was recognised: has its layout changed?');
  const head = out.indexOf('#include "kvplan_cpu.h"');
  out.splice(head, 0, `#define KVP_PROF_MAX ${labels.length}`);
  return { source: out.join('\n'), labels };
}

const { source, labels } = instrument(build.source);
const compiled = compileLibrary(source, {
  flags: ['-O2', '-march=native', '-fPIC', '-shared', '-std=c11'],
  against: build.primitives,
});
const profiled: CpuBuild = { ...build, source, library: compiled.path, compiled };
const weights = randomWeights(config, 3);
const rng = createRng(7);
const prompt = Int32Array.from({ length: promptLen }, () => Math.floor(rng.uniform() * (config.vocab - 1)));
const runner = new CpuRunner(profiled, weights, L);
// The runner has loaded the library (after the primitives it links against); this is the same one.
const lib = openLibrary(compiled, ['kvp_prof_ns', 'kvp_prof_calls']);
const counters = (name: string) =>
  new BigInt64Array(koffi.view(lib.func(`int64_t *${name}(void)`)(), 8 * labels.length));
const [ns, calls] = [counters('kvp_prof_ns'), counters('kvp_prof_calls')];
let stepMs = 0;
for (const measured of [false, true]) {
  ns.fill(0n);
  calls.fill(0n);
  stepMs = (
    await timedGeneration(
      plan as NonNullable<typeof plan>,
      profiled,
      runner,
      { config, weights },
      prompt,
      genLen,
    )
  ).ms;
  if (measured) break;
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
