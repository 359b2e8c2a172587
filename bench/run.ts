/**
 * Benchmark driver: `npm run bench -- <suite> [options]`. Benchmarks are not tests: they print a
 * table, and with --write record bench/results/<suite>.json so runs on one machine can be compared.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { loadPrimitives } from '../src/backends/cpu/primitives.ts';
import { isRunBackend } from '../src/backends/registry.ts';
import { bundledTasks } from '../src/eval/bundled.ts';
import { checkpointsSuite } from './checkpoints.ts';
import { JournalError } from './journal.ts';
import { kernelsSuite } from './kernels.ts';
import { peerModel, peersSuite } from './peers.ts';
import { benchModel, policiesSuite } from './policies.ts';
import { qualitySuite } from './quality.ts';
import { type Destination, destination, type SaveOptions, type Suite } from './save.ts';
import { endOnSignals } from './signals.ts';
import { startupSuite } from './startup.ts';

const usage = `usage: npm run bench -- <suite> [options] [--write | --out <file>]

Results are printed; --write records them in bench/results/<suite>.json (quality: and
docs/results.md), the committed numbers the docs quote; --out <file> writes the JSON there.

suites:
  kernels    our CPU primitives (kv_gemm, kv_attention) vs onnxruntime-node on the same shapes
  policies   every example plan generating on one random model (d_model 1024, 8 layers) with
             the CPU backend: tokens/s, speedup vs the no-cache baseline, ideal (FLOP) speedup,
             the share of the roofline ideal (peak and bandwidth measured around each plan)
             reached, agreement; four to five hours on 2 cores at the defaults
             (options: --prompt-length 256 --gen-length 1024 --block 32 --prompts 1
              --plans <names,...> (with the baseline; not with --write)
              --repeats N (passes over the plans, each plan's fastest kept; default 1, 2 with --quick)
              --quick (prompt 32, generation 128; not with --write)
              --journal <file> (each plan's pass written there as it ends; a run given
              the journal of an earlier one with the same options and sources runs only the
              passes it lacks: the full size in parts)
              --stop-after <minutes> (with --journal: start no pass after that long))
  peers      kvplan against whole-model engines on one random model (d_model 512, 8 layers) with
             the same weights: onnxruntime-node on the exported ONNX graph (plain, and with its
             fused attention op) and llama.cpp (node-llama-cpp, an F32 GGUF): one full no-cache
             step of the canvas in each, with our step's per-kernel breakdown; then generations,
             kvplan fast_dllm_dual and its no-cache twin against the peers' no-cache loop with
             the same decode rule; then kvplan's tokens/s at batches of sequences; about 10
             minutes on 2 cores at the defaults
             (options: --canvas 512 --prompt-length 64 --gen-length 512 --threads 1,2
              --batches 1,4,16
              --no-llama (skip llama.cpp) --quick (canvas 256, prompt 32, generation 128;
              not with --write))
  checkpoints random bf16 checkpoints of published shapes (SDAR-1.7B: baseline and
             fast-dllm-dual; LLaDA-8B, 16 GB: one step) written by make-model --format hf and
             run on the CPU backend: load time, tokens/s, peak RSS against 1.3 x (checkpoint +
             caches); needs ~21 GB of disk and ~20 GiB of memory, ~30 minutes on 2 cores
             (options: --dir <path> (default <tmpdir>/kvplan-bench-checkpoints; checkpoints
              there are reused) --gen-length 64 --threads 0 --small (SDAR only; not with
              --write) --clean)
  quality    every example plan on the bundled model made for its attention structure, beside
             its no-cache twin and the one-token-per-step baseline: accuracy and tokens/s, the
             three effects (cache, decode rule, both) with paired 95% intervals
             (options: --task bub,fib --n 200 --gen-length 64 --batch 8 --backend cpu)

options (kernels):
  --threads <list>   thread counts, comma-separated (default 1,2)
  --filter <text>    only cases whose name contains <text> (not with --write)
  --skip-above <s>   skip a case whose first run takes longer than <s> seconds (default 10)

  startup    the built CLI as a user starts it: node itself, --version, check, and a CPU plan
             compile cached, cold with the primitives library cached, and cold with nothing
             cached; then the same compile in-process (buildCpu, compilePlan); min and median
             of fresh processes, interleaved (options: --runs 10)

npx tsx bench/report.ts [file] prints a results file as Markdown, with the target checks.`;

function fail(msg: string): never {
  console.error(`${msg}\n\n${usage}`);
  process.exit(2);
}

/** Where the results of `suite` go, from --write, --out and the option that runs a part, if any. */
function resultsTo(suite: Suite, o: SaveOptions): Destination {
  const to = destination(suite, o);
  if (typeof to === 'string') fail(to);
  return to;
}

/** The suite's options and --write and --out, strictly: an unknown or malformed one is a usage error. */
function parseSuite<T extends ParseArgsOptionsConfig>(args: string[], options: T) {
  try {
    return parseArgs({
      args,
      options: { ...options, write: { type: 'boolean' }, out: { type: 'string' } },
      strict: true,
    } as const).values;
  } catch (e) {
    return fail((e as Error).message);
  }
}

function positive(x: string | undefined, d: number): number {
  const n = Number(x ?? d);
  if (!Number.isInteger(n) || n < 1) fail(`bad value "${x}"`);
  return n;
}

async function main(argv: string[]): Promise<void> {
  const [suite, ...rest] = argv;
  if (suite === '-h' || suite === '--help') {
    console.log(usage);
    return;
  }
  if (suite === undefined) fail('no suite given');
  if (suite === 'policies') {
    const v = parseSuite(rest, {
      'prompt-length': { type: 'string' },
      'gen-length': { type: 'string' },
      block: { type: 'string' },
      prompts: { type: 'string' },
      plans: { type: 'string' },
      repeats: { type: 'string' },
      quick: { type: 'boolean' },
      journal: { type: 'string' },
      'stop-after': { type: 'string' },
    });
    const plans = v.plans?.split(',').map((x) => x.trim());
    const stopAfter = v['stop-after'] === undefined ? undefined : Number(v['stop-after']);
    if (stopAfter !== undefined && !(stopAfter >= 0)) fail(`bad --stop-after "${v['stop-after']}"`);
    if (stopAfter !== undefined && v.journal === undefined)
      fail('--stop-after needs --journal <file>: the passes a stopped run made are kept there');
    // --quick: a canvas an eighth as long, for iterating (minutes, not hours).
    const quick = v.quick === true;
    try {
      await policiesSuite({
        config: benchModel,
        promptLen: positive(v['prompt-length'], quick ? 32 : 256),
        genLen: positive(v['gen-length'], quick ? 128 : 1024),
        block: positive(v.block, 32),
        prompts: positive(v.prompts, 1),
        ...(plans ? { plans } : {}),
        repeats: positive(v.repeats, quick ? 2 : 1),
        ...(v.journal !== undefined
          ? {
              journal: {
                path: v.journal,
                ...(stopAfter !== undefined ? { stopAfterMs: stopAfter * 60_000 } : {}),
              },
            }
          : {}),
        to: resultsTo('policies', {
          write: v.write === true,
          out: v.out,
          partial: plans ? '--plans' : quick ? '--quick' : undefined,
        }),
      });
    } catch (e) {
      // A journal of other settings or sources: the user's input, not our bug.
      if (!(e instanceof JournalError)) throw e;
      console.error(`bench policies: ${e.message}`);
      process.exit(1);
    }
    return;
  }
  if (suite === 'peers') {
    const v = parseSuite(rest, {
      canvas: { type: 'string' },
      'prompt-length': { type: 'string' },
      'gen-length': { type: 'string' },
      threads: { type: 'string' },
      'no-llama': { type: 'boolean' },
      batches: { type: 'string' },
      quick: { type: 'boolean' },
    });
    const quick = v.quick === true;
    const threads = (v.threads ?? '1,2').split(',').map((t) => Number(t));
    if (threads.some((t) => !Number.isInteger(t) || t < 1)) fail(`bad --threads "${v.threads}"`);
    const p = await loadPrimitives();
    await peersSuite(p, {
      config: peerModel,
      canvas: positive(v.canvas, quick ? 256 : 512),
      promptLen: positive(v['prompt-length'], quick ? 32 : 64),
      genLen: positive(v['gen-length'], quick ? 128 : 512),
      threads,
      batches: (v.batches ?? '1,4,16').split(',').map((b) => positive(b, 1)),
      llama: v['no-llama'] !== true,
      to: resultsTo('peers', {
        write: v.write === true,
        out: v.out,
        partial: quick ? '--quick' : v['no-llama'] ? '--no-llama' : undefined,
      }),
    });
    return;
  }
  if (suite === 'checkpoints') {
    const v = parseSuite(rest, {
      dir: { type: 'string' },
      'gen-length': { type: 'string' },
      threads: { type: 'string' },
      small: { type: 'boolean' },
      clean: { type: 'boolean' },
    });
    const threads = Number(v.threads ?? 0);
    if (!Number.isInteger(threads) || threads < 0) fail(`bad --threads "${v.threads}"`);
    await checkpointsSuite({
      dir: v.dir ?? join(tmpdir(), 'kvplan-bench-checkpoints'),
      genLength: positive(v['gen-length'], 64),
      threads,
      small: v.small === true,
      clean: v.clean === true,
      to: resultsTo('checkpoints', {
        write: v.write === true,
        out: v.out,
        partial: v.small ? '--small' : undefined,
      }),
    });
    return;
  }
  if (suite === 'quality') {
    const v = parseSuite(rest, {
      task: { type: 'string' },
      n: { type: 'string' },
      'gen-length': { type: 'string' },
      batch: { type: 'string' },
      backend: { type: 'string' },
    });
    const chosen = v.task?.split(',') ?? bundledTasks();
    for (const task of chosen)
      if (!bundledTasks().includes(task))
        fail(`task "${task}": no bundled model was trained on it (tasks: ${bundledTasks().join(', ')})`);
    const backend = v.backend ?? 'cpu';
    if (!isRunBackend(backend)) fail(`unknown backend "${backend}"`);
    await qualitySuite({
      tasks: chosen,
      n: positive(v.n, 200),
      genLength: positive(v['gen-length'], 64),
      batch: positive(v.batch, 8),
      backend,
      to: resultsTo('quality', { write: v.write === true, out: v.out }),
    });
    return;
  }
  if (suite === 'startup') {
    const v = parseSuite(rest, { runs: { type: 'string' } });
    await startupSuite({
      runs: positive(v.runs, 10),
      to: resultsTo('startup', { write: v.write === true, out: v.out }),
    });
    return;
  }
  if (suite !== 'kernels') fail(`unknown suite "${suite}"`);
  const values = parseSuite(rest, {
    threads: { type: 'string' },
    filter: { type: 'string' },
    'skip-above': { type: 'string' },
  });
  const threads = (values.threads ?? '1,2').split(',').map((t) => Number(t));
  if (threads.some((t) => !Number.isInteger(t) || t < 1)) fail(`bad --threads "${values.threads}"`);
  const skipAbove = Number(values['skip-above'] ?? '10');
  if (!(skipAbove > 0)) fail(`bad --skip-above "${values['skip-above']}"`);
  const to = resultsTo('kernels', {
    write: values.write === true,
    out: values.out,
    partial: values.filter !== undefined ? '--filter' : undefined,
  });

  const p = await loadPrimitives();
  await kernelsSuite(p, { threads, filter: values.filter, skipAboveMs: skipAbove * 1000, to });
}

endOnSignals();
await main(process.argv.slice(2));
