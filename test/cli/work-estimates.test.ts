// Requests bounded from their declared sizes before any work (docs/cli.md, "Work estimates and
// limits", "Model paths"): the canvas, the memory and the held-out problems a run asks for are
// checked first, a missing or wrong-kind model path is a usage error, and a long run says what it
// will cost before it starts.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { fnv1a32, heldOutCount, isHeldOut, tasks } from '../../src/eval/tasks.ts';
import { configToJson, type ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { createRng } from '../../src/model/weights.ts';
import { estimateLine, formatDuration, formatFlops, forwardFlops } from '../../src/runtime/workEstimate.ts';
import { runCli, tempFiles } from '../support/cli.ts';

const model = 'models/tiny-dllm/model.onnx';
const plan = 'examples/baseline.kvp';
/** `generate` of the bundled model with the no-cache plan, then `rest`. */
const generate = (...rest: string[]): string[] => ['generate', '--model', model, '--plan', plan, ...rest];

const tmp = tempFiles({
  'deep.json': JSON.stringify(configToJson({ ...(presets.small as ModelConfig), name: 'deep', layers: 128 })),
});
const notCheckpoint = mkdtempSync(join(tmpdir(), 'kvplan-not-a-checkpoint-'));
afterAll(() => {
  tmp.cleanup();
  rmSync(notCheckpoint, { recursive: true, force: true });
});

afterEach(() => {
  delete process.env.KVPLAN_MEMORY_LIMIT;
});

/**
 * Runs a command until it prints its estimate line, and stops it there (the Io throws): what it
 * wrote and how long it took to get there. A command that starts its work first fails the test.
 */
async function untilEstimate(argv: string[]): Promise<{ stderr: string; ms: number }> {
  const stop = new Error('stopped at the estimate');
  let stderr = '';
  let stopped = false;
  const t0 = performance.now();
  const io = {
    out: () => {},
    err: (s: string) => {
      // What main reports of the interruption is not the command's.
      if (!stopped) stderr += s;
      stopped ||= /^(generate|eval|verify|demo): .*at most/m.test(stderr);
      if (stopped) throw stop;
    },
  };
  await expect(main(argv, io)).rejects.toBe(stop);
  return { stderr, ms: performance.now() - t0 };
}

describe('held-out problems', () => {
  test.each([
    ['eval', ['eval', '--plan', plan, '--n', '1000']],
    ['demo', ['demo', '--model', 'models/tiny-dllm/model.onnx', '--n', '1000']],
  ])(
    '%s --n beyond the task is a usage error naming the task and its count, before any work',
    async (_, argv) => {
      const t0 = performance.now();
      const r = await runCli(argv);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe('kvplan: --n 1000: task count has 909 held-out problems\n');
      expect(r.stdout).toBe('');
      expect(performance.now() - t0).toBeLessThan(2_000);
    },
  );

  test('another task: its own count', async () => {
    const r = await runCli(['eval', '--plan', plan, '--task', 'lcg', '--n', '725']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('kvplan: --n 725: task lcg has 724 held-out problems\n');
  });

  /** FNV-1a of an ASCII string (every prompt is one): fnv1a32 without the UTF-8 encoder. */
  const asciiFnv = (s: string): number => {
    let h = 0x811c9dc5;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
    return h;
  };
  const within = (x: number, lo: number, hi: number) => Number.isInteger(x) && x >= lo && x <= hi;
  /** A number as the samplers write it: decimal, no leading zero. */
  const num = (t: string | undefined) => (t !== undefined && String(Number(t)) === t ? Number(t) : -1);
  /**
   * Every prompt each task's sampler can draw (as src/eval/tasks.ts builds them), visited by
   * loops, and a test of membership that parses a prompt back.
   */
  const spaces: Record<string, { each: (visit: (p: string) => void) => void; has: (p: string) => boolean }> =
    {
      count: {
        each: (visit) => {
          for (let a = 0; a <= 999; a++) for (let k = 4; k <= 12; k++) visit(`cnt:${a}-${a + k - 1}=`);
        },
        has: (p) => {
          const [a, b] = (/^cnt:(\d+)-(\d+)=$/.exec(p) ?? []).slice(1).map(num) as [number, number];
          return within(a, 0, 999) && within(b - a + 1, 4, 12);
        },
      },
      lcg: {
        each: (visit) => {
          for (let a = 2; a <= 9; a++)
            for (let b = 1; b <= 9; b++) for (let x = 0; x <= 99; x++) visit(`lcg:${a},${b},${x}=`);
        },
        has: (p) => {
          const [a, b, x] = (/^lcg:(\d+),(\d+),(\d+)=$/.exec(p) ?? []).slice(1).map(num) as number[];
          return within(a as number, 2, 9) && within(b as number, 1, 9) && within(x as number, 0, 99);
        },
      },
      fib: {
        each: (visit) => {
          for (let a = 0; a <= 999; a++) for (let b = 0; b <= 999; b++) visit(`fib:${a},${b}=`);
        },
        has: (p) => {
          const [a, b] = (/^fib:(\d+),(\d+)=$/.exec(p) ?? []).slice(1).map(num) as number[];
          return within(a as number, 0, 999) && within(b as number, 0, 999);
        },
      },
    };

  test.each(Object.keys(spaces))(
    '%s: the declared count is the held-out prompts of its whole prompt space',
    (name) => {
      const space = spaces[name] as (typeof spaces)[string];
      const rng = createRng(7);
      const task = tasks.get(name);
      for (let i = 0; i < 2000; i++) {
        const p = task?.sample(() => rng.uniform()).prompt as string;
        expect(space.has(p), p).toBe(true);
        expect(asciiFnv(p)).toBe(fnv1a32(p));
        expect(asciiFnv(p) % 10 === 0).toBe(isHeldOut(p));
      }
      let held = 0;
      space.each((p) => {
        if (asciiFnv(p) % 10 === 0) held++;
      });
      expect(held).toBe(heldOutCount(name));
    },
  );

  test('the tasks without a count have more than --n accepts', () => {
    for (const name of ['sort', 'add', 'bub']) expect(heldOutCount(name)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('model paths', () => {
  const missing = '/nonexistent/model.onnx';
  test.each([
    ['generate', ['generate', '--model', missing, '--plan', plan, '--prompt', 'x'], `--model ${missing}`],
    ['eval', ['eval', '--model', missing, '--plan', plan, '--n', '2'], `--model ${missing}`],
    ['demo', ['demo', '--model', missing, '--n', '2'], `--model ${missing}`],
    ['inspect-model', ['inspect-model', missing], missing],
  ])('%s: a missing model is a usage error with a clean message', async (_, argv, named) => {
    const r = await runCli(argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`kvplan: ${named}: no such file or directory\n`);
  });

  test.each([
    ['generate', ['generate', '--model', '/dev/zero', '--plan', plan, '--prompt', 'x']],
    ['eval', ['eval', '--model', '/dev/zero', '--plan', plan, '--n', '2']],
    ['inspect-model', ['inspect-model', '/dev/zero']],
  ])('%s: a device is a usage error, never read', async (_, argv) => {
    const t0 = performance.now();
    const r = await runCli(argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\/dev\/zero: not a regular file or a directory\n$/);
    expect(performance.now() - t0).toBeLessThan(2_000);
  });

  test('a directory that is not a checkpoint is a bad model (exit 1), as inspect-model has it', async () => {
    const r = await runCli(['generate', '--model', notCheckpoint, '--plan', plan, '--prompt', 'x']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`kvplan: ${notCheckpoint}: no config.json (not a Hugging Face checkpoint?)\n`);
  });
});

describe('canvas and memory', () => {
  test('a 100,000-character prompt is refused at once, with the canvas and the limit', async () => {
    const t0 = performance.now();
    const r = await runCli(['generate', '--model', model, '--plan', plan, '--prompt', 'a'.repeat(100_000)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'kvplan: the canvas would hold 100,000 prompt + 32 generated = 100,032 positions; kvplan runs at most 16,384 (a shorter prompt or --gen-length)\n',
    );
    expect(performance.now() - t0).toBeLessThan(3_000);
  });

  test('prompt plus generated positions over the largest canvas: generate, eval and verify', async () => {
    const gen = await runCli(generate('--prompt', 'cnt:1-4=', '--gen-length', '16384'));
    expect(gen.code).toBe(2);
    expect(gen.stderr).toMatch(/8 prompt \+ 16,384 generated = 16,392 positions; kvplan runs at most 16,384/);
    const ev = await runCli(['eval', '--plan', plan, '--n', '2', '--gen-length', '16384']);
    expect(ev.code).toBe(2);
    expect(ev.stderr).toMatch(
      /\+ 16,384 generated = .* positions; kvplan runs at most 16,384 \(a shorter --gen-length\)/,
    );
    const ver = await runCli(['verify', plan, '--prompt-length', '16384', '--gen-length', '64']);
    expect(ver.code).toBe(2);
    expect(ver.stderr).toMatch(/16,384 prompt \+ 64 generated = 16,448 positions/);
  });

  test('a run that needs more memory than the limit is refused before it starts, naming both figures', async () => {
    process.env.KVPLAN_MEMORY_LIMIT = '64MiB';
    const gen = await runCli(generate('--prompt', 'cnt:1-4=', '--gen-length', '8000'));
    expect(gen.code).toBe(1);
    expect(gen.stderr).toMatch(
      /^kvplan: generate: this run needs about \d+\.\d MiB \(weights 3\.0 MiB, a canvas of 8,008 rows \d+\.\d MiB\), more than the 64\.0 MiB of KVPLAN_MEMORY_LIMIT=64MiB; use a shorter prompt or --gen-length\n$/,
    );
    const ev = await runCli([
      'eval',
      '--plan',
      plan,
      '--task',
      'sort',
      '--n',
      '1024',
      '--batch',
      '1024',
      '--gen-length',
      '512',
    ]);
    expect(ev.code).toBe(1);
    expect(ev.stderr).toMatch(
      /eval: this run needs about .* 1,024 canvases in a batch of \d+ rows .* use a smaller --batch or --gen-length/,
    );
    process.env.KVPLAN_MEMORY_LIMIT = 'lots';
    const bad = await runCli(generate('--prompt', 'x'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe(
      "kvplan: KVPLAN_MEMORY_LIMIT must be a size such as 8GiB or 500MB (got 'lots')\n",
    );
  });
});

describe('estimates before long runs', () => {
  test('verify on a 128-layer model says what it will cost before the first case', async () => {
    const r = await untilEstimate(['verify', plan, '--config', tmp.path('deep.json'), '--cases', '2']);
    expect(r.stderr).toMatch(
      /^verify: 2 cases, at most 64 steps each on a 128-layer model: at most [\d.]+ GFLOP, up to about \d+ min at the reference backend's typical 700 MFLOP\/s\n$/,
    );
    expect(r.ms).toBeLessThan(5_000);
  });

  test('verify of several plans sums them', async () => {
    const r = await untilEstimate(['verify', plan, 'examples/fast-dllm-dual.kvp', '--cases', '200']);
    expect(r.stderr).toMatch(
      /^verify: 2 plans × 200 cases, at most 64 steps each on 2- to 4-layer models: at most/,
    );
  });

  test('generate with a long canvas, on either backend', async () => {
    const args = generate('--prompt', 'cnt:1-4=', '--gen-length', '16000');
    const ref = await untilEstimate(args);
    expect(ref.stderr).toMatch(
      /^generate: at most 16,000 steps on a 16,008-position canvas of a 4-layer model: at most \d\.\d PFLOP, up to about \d+ days at the reference backend's typical 700 MFLOP\/s\n$/,
    );
    const cpu = await untilEstimate([...args, '--backend', 'cpu']);
    expect(cpu.stderr).toMatch(/at the cpu backend's typical 20 GFLOP\/s\n$/);
    expect(cpu.ms).toBeLessThan(5_000);
  });

  test('eval before it compiles the plan; --ablate counts three runs', async () => {
    const r = await untilEstimate(['eval', '--plan', plan, '--n', '200']);
    expect(r.stderr).toMatch(
      /^eval: 200 problems, at most 64 steps each on a 4-layer model: at most [\d.]+ TFLOP/,
    );
    const a = await untilEstimate(['eval', '--plan', plan, '--n', '200', '--ablate']);
    expect(a.stderr).toMatch(/^eval: 200 problems × 3 runs, at most 64 steps/);
  });

  // Every example plan (one per file).
  const examplePlans = readdirSync('examples').filter((f) => f.endsWith('.kvp')).length;

  test('demo on a named model, before it compiles a plan: every plan, two runs each', async () => {
    const r = await untilEstimate(['demo', '--model', model, '--n', '200', '--gen-length', '512']);
    expect(r.stderr).toMatch(
      new RegExp(
        `^demo: ${examplePlans} plans × 2 runs of 200 problems, at most 512 steps each on a 4-layer model: at most [\\d.]+ PFLOP, up to about [\\d.]+ (h|days) at the cpu backend's typical 20 GFLOP/s\\n$`,
      ),
    );
    expect(r.ms).toBeLessThan(5_000);
  });

  test('demo on the bundled models: three runs of each plan, on the models they run on', async () => {
    const r = await untilEstimate(['demo', '--n', '200', '--gen-length', '512']);
    expect(r.stderr).toMatch(
      new RegExp(
        `^demo: ${examplePlans} plans × 3 runs of 200 problems, at most 512 steps each on 4-layer models: at most [\\d.]+ PFLOP`,
      ),
    );
    // The header comes after the estimate: nothing has run yet.
    expect(r.stderr.split('\n')).toHaveLength(2);
  });

  test('demo refuses a canvas too long or memory too large before any plan runs', async () => {
    const long = await runCli(['demo', '--n', '2', '--gen-length', '16384']);
    expect(long.code).toBe(2);
    expect(long.stderr).toMatch(
      / \+ 16,384 generated = .* positions; kvplan runs at most 16,384 \(a shorter --gen-length\)\n$/,
    );
    expect(long.stdout).toBe('');
    process.env.KVPLAN_MEMORY_LIMIT = '1MiB';
    const big = await runCli(['demo', '--model', model, '--n', '2']);
    expect(big.code).toBe(1);
    expect(big.stderr).toMatch(
      /^kvplan: demo: this run needs about .* more than the 1\.0 MiB of KVPLAN_MEMORY_LIMIT=1MiB; use a smaller --batch or --gen-length\n$/,
    );
    expect(big.stdout).toBe('');
  });

  test('the FLOPs are counted by hand on the small preset, and short runs print nothing', () => {
    const small = presets.small as ModelConfig;
    // Per row and layer: q, k, v, o (64 x 64 each, 4 heads of 16), SwiGLU 3 x 64 x 128, and
    // attention over 10 keys at 64 wide; then the head, 64 x 64.
    const perLayer = 2 * 64 * 64 * 4 + 2 * 3 * 64 * 128 + 4 * 10 * 64;
    expect(forwardFlops(small, 10)).toBe(10 * (4 * perLayer + 2 * 64 * 64));
    expect(estimateLine('eval', 'x', 1e9, 'cpu')).toBeUndefined();
    expect(estimateLine('eval', 'x', 1e12, 'cpu')).toBe(
      "eval: x: at most 1.0 TFLOP, up to about 50 s at the cpu backend's typical 20 GFLOP/s\n",
    );
    expect(formatFlops(8.8e15)).toBe('8.8 PFLOP');
    expect(formatDuration(3 * 3600)).toBe('3.0 h');
  });
});
