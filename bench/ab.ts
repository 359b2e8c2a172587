/**
 * What the A/B tools (bench/gemm-ab.ts, bench/attention-ab.ts) share: their command line, and the
 * two builds of the CPU primitives they compare (a git revision's C source and the working tree's),
 * loaded side by side in one process and called alternately.
 */
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { compileLibrary } from '../src/backends/cpu/compiler.ts';
import { bindPrimitives, compilePrimitives, type Primitives } from '../src/backends/cpu/primitives.ts';
import { median } from './timing.ts';

export interface Build {
  readonly name: string;
  readonly p: Primitives;
}

/** A tool's command line: one git revision, its string options and its boolean flags; usage errors exit 2. */
export function abCommand(
  tool: string,
  usage: string,
  options: readonly string[],
  flags: readonly string[] = [],
) {
  const fail = (msg: string, code: number): never => {
    console.error(`${tool}: ${msg}\n${usage}`);
    process.exit(code);
  };
  const parsed = (() => {
    try {
      return parseArgs({
        options: Object.fromEntries([
          ...options.map((o) => [o, { type: 'string' as const }]),
          ...flags.map((f) => [f, { type: 'boolean' as const }]),
        ]),
        allowPositionals: true,
        strict: true,
      });
    } catch (e) {
      return fail((e as Error).message, 2);
    }
  })();
  const [rev, ...extra] = parsed.positionals;
  if (rev === undefined || extra.length > 0) fail('give one git revision', 2);
  const given = parsed.values as Record<string, string | boolean | undefined>;
  const values = Object.fromEntries(options.map((o) => [o, given[o]])) as Record<string, string | undefined>;
  /** Whether the boolean option `name` (one of `flags`) was given. */
  const flag = (name: string): boolean => given[name] === true;
  /** A comma-separated list of positive integers, `d` when the option is absent. */
  const list = (name: string, d: string): number[] => {
    const v = (values[name] ?? d).split(',').map(Number);
    if (v.some((n) => !Number.isInteger(n) || n < 1)) fail(`bad list "${values[name]}"`, 2);
    return v;
  };
  return { rev: rev as string, values, list, flag, fail };
}

/** The primitives of `rev` and of the working tree, in that order; exits 1 when either does not build. */
export function abBuilds(rev: string, fail: (msg: string, code: number) => never): [Build, Build] {
  let oldSource: string;
  try {
    oldSource = execFileSync('git', ['show', `${rev}:src/backends/cpu/c/kvplan_cpu.c`], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    return fail(
      `no CPU primitives at revision "${rev}": ${String((e as { stderr?: string }).stderr ?? e).trim()}`,
      1,
    );
  }
  try {
    return [
      { name: rev, p: bindPrimitives(compileLibrary(oldSource)) },
      { name: 'working tree', p: bindPrimitives(compilePrimitives()) },
    ];
  } catch (e) {
    return fail(`the primitives do not build: ${(e as Error).message}`, 1);
  }
}

/**
 * The median milliseconds of `pass` for each build over `rounds` rounds after one warm-up round,
 * the builds alternating and their order flipped every round (so that neither always runs on the
 * caches the other left).
 */
export function alternate(
  builds: readonly Build[],
  rounds: number,
  pass: (p: Primitives, build: number) => number,
): number[] {
  const times = builds.map(() => [] as number[]);
  for (let round = 0; round <= rounds; round++) {
    const order = round % 2 === 0 ? [0, 1] : [1, 0];
    for (const i of order) {
      const ms = pass((builds[i] as Build).p, i);
      if (round > 0) (times[i] as number[]).push(ms);
    }
  }
  return times.map(median);
}
