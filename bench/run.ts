/**
 * Benchmark driver: `npm run bench -- <suite> [options]`. Benchmarks are not tests: they print a
 * table and write bench/results/<suite>.json so runs on one machine can be compared.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadPrimitives } from '../src/backends/cpu/primitives.ts';
import { isRunBackend } from '../src/backends/registry.ts';
import { defaultTask, tasks } from '../src/eval/tasks.ts';
import { checkpointsSuite } from './checkpoints.ts';
import { kernelsSuite } from './kernels.ts';
import { benchModel, policiesSuite } from './policies.ts';
import { qualitySuite } from './quality.ts';

const usage = `usage: npm run bench -- <suite> [options]

suites:
  kernels    our CPU primitives (kv_gemm, kv_attention) vs onnxruntime-node on the same shapes
  policies   every example plan generating on one random model (d_model 1024, 8 layers) with
             the CPU backend: tokens/s, speedup vs the no-cache baseline, ideal (FLOP) speedup,
             agreement; about 80 minutes on 2 cores at the defaults
             (options: --prompt-length 256 --gen-length 1024 --block 32 --prompts 1
              --plans <names,...> (with the baseline; results then written only with --out)
              --out <file>)
  checkpoints random bf16 checkpoints of published shapes (SDAR-1.7B: baseline and
             fast-dllm-dual; LLaDA-8B, 16 GB: one step) written by make-model --format hf and
             run on the CPU backend: load time, tokens/s, peak RSS against 1.3 x (checkpoint +
             caches); needs ~21 GB of disk and ~20 GiB of memory, ~30 minutes on 2 cores
             (options: --dir <path> (default <tmpdir>/kvplan-bench-checkpoints; checkpoints
              there are reused) --gen-length 64 --threads 0 --small (SDAR only) --clean
              --out <file>)
  quality    every example plan on the bundled trained model: accuracy on held-out problems
             and tokens/s, vs the baseline; writes docs/results.md too
             (options: --task count --n 50 --gen-length 64 --batch 1 --backend cpu --out <file>)

options (kernels):
  --threads <list>   thread counts, comma-separated (default 1,2)
  --filter <text>    only cases whose name contains <text> (results are then not written
                     unless --out is given)
  --out <file>       where to write the JSON (default bench/results/kernels.json)
  --skip-above <s>   skip a case whose first run takes longer than <s> seconds (default 10)

npx tsx bench/report.ts [file] prints a results file as Markdown, with the target checks.`;

function fail(msg: string): never {
  console.error(`${msg}\n\n${usage}`);
  process.exit(2);
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
    const { values: v } = parseArgs({
      args: rest,
      options: {
        'prompt-length': { type: 'string' },
        'gen-length': { type: 'string' },
        block: { type: 'string' },
        prompts: { type: 'string' },
        plans: { type: 'string' },
        out: { type: 'string' },
      },
      strict: true,
    });
    const plans = v.plans?.split(',').map((x) => x.trim());
    await policiesSuite({
      config: benchModel,
      promptLen: positive(v['prompt-length'], 256),
      genLen: positive(v['gen-length'], 1024),
      block: positive(v.block, 32),
      prompts: positive(v.prompts, 1),
      ...(plans ? { plans } : {}),
      out: v.out ?? (plans ? null : fileURLToPath(new URL('./results/policies.json', import.meta.url))),
    });
    return;
  }
  if (suite === 'checkpoints') {
    const { values: v } = parseArgs({
      args: rest,
      options: {
        dir: { type: 'string' },
        'gen-length': { type: 'string' },
        threads: { type: 'string' },
        small: { type: 'boolean' },
        clean: { type: 'boolean' },
        out: { type: 'string' },
      },
      strict: true,
    });
    const threads = Number(v.threads ?? 0);
    if (!Number.isInteger(threads) || threads < 0) fail(`bad --threads "${v.threads}"`);
    await checkpointsSuite({
      dir: v.dir ?? join(tmpdir(), 'kvplan-bench-checkpoints'),
      genLength: positive(v['gen-length'], 64),
      threads,
      small: v.small === true,
      clean: v.clean === true,
      out: v.out ?? (v.small ? null : fileURLToPath(new URL('./results/checkpoints.json', import.meta.url))),
    });
    return;
  }
  if (suite === 'quality') {
    const { values: v } = parseArgs({
      args: rest,
      options: {
        task: { type: 'string' },
        n: { type: 'string' },
        'gen-length': { type: 'string' },
        batch: { type: 'string' },
        backend: { type: 'string' },
        out: { type: 'string' },
      },
      strict: true,
    });
    const task = v.task ?? defaultTask;
    if (!tasks.has(task)) fail(`unknown task "${task}"`);
    const backend = v.backend ?? 'cpu';
    if (!isRunBackend(backend)) fail(`unknown backend "${backend}"`);
    const custom = v.out !== undefined;
    await qualitySuite({
      task,
      n: positive(v.n, 50),
      genLength: positive(v['gen-length'], 64),
      batch: positive(v.batch, 1),
      backend,
      out: v.out ?? fileURLToPath(new URL('./results/quality.json', import.meta.url)),
      // The committed table follows the committed JSON only.
      doc: custom ? null : fileURLToPath(new URL('../docs/results.md', import.meta.url)),
    });
    return;
  }
  if (suite !== 'kernels') fail(`unknown suite "${suite}"`);
  let values: { threads?: string; filter?: string; out?: string; 'skip-above'?: string };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        threads: { type: 'string' },
        filter: { type: 'string' },
        out: { type: 'string' },
        'skip-above': { type: 'string' },
      },
      strict: true,
    }));
  } catch (e) {
    fail((e as Error).message);
  }
  const threads = (values.threads ?? '1,2').split(',').map((t) => Number(t));
  if (threads.some((t) => !Number.isInteger(t) || t < 1)) fail(`bad --threads "${values.threads}"`);
  const skipAbove = Number(values['skip-above'] ?? '10');
  if (!(skipAbove > 0)) fail(`bad --skip-above "${values['skip-above']}"`);
  const defaultOut = fileURLToPath(new URL('./results/kernels.json', import.meta.url));
  const out = values.out ?? (values.filter ? null : defaultOut);

  const p = await loadPrimitives();
  await kernelsSuite(p, { threads, filter: values.filter, skipAboveMs: skipAbove * 1000, out });
}

await main(process.argv.slice(2));
