/**
 * The machine a CPU library is built for. Libraries are compiled with `-march=native`, so the
 * same source, flags and compiler give different code on different CPUs: the cache key must name
 * the CPU the compiler resolved, or a cache shared across machines (a network home directory, a
 * copied cache, a container image) would hand a library to a CPU that cannot run it.
 *
 * The resolution is read from the compiler's own dry run (`cc <flags> -### -c`): GCC's driver
 * passes cc1 the concrete `-march=<cpu>`, every `-m<feature>`/`-mno-<feature>` and the cache-size
 * `--param`s it detected; Clang passes `-target-cpu` and `-target-feature`s. Where a compiler
 * reports none of that, the CPU's model and feature flags from /proc/cpuinfo stand in, which is
 * never less specific than the machine.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** The CPU features the primitives' code paths depend on (kvplan_cpu.c, kv_gemm16_path). */
export const BACKEND_FEATURES = [
  { name: 'AVX2', cpuinfo: 'avx2', flag: 'avx2', use: '8-lane kernels' },
  { name: 'FMA', cpuinfo: 'fma', flag: 'fma', use: 'fused multiply-add in the 8-lane kernels' },
  { name: 'F16C', cpuinfo: 'f16c', flag: 'f16c', use: 'f16 weights converted by vcvtph2ps' },
  { name: 'AVX-512', cpuinfo: 'avx512f', flag: 'avx512f', use: '16-lane kernels' },
  { name: 'AVX512_BF16', cpuinfo: 'avx512_bf16', flag: 'avx512bf16', use: 'vdpbf16ps bf16 dot products' },
] as const;

export interface CpuInfo {
  /** `model name` of the first processor, or undefined where /proc/cpuinfo says none. */
  readonly model?: string;
  readonly flags: ReadonlySet<string>;
}

let cpuinfo: CpuInfo | undefined;

/** The first processor's model and feature flags from /proc/cpuinfo (empty where it is missing). */
export function cpuInfo(): CpuInfo {
  if (cpuinfo) return cpuinfo;
  let text = '';
  try {
    text = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // not Linux: no model, no flags; the compiler's resolution is then the only source
  }
  const field = (name: string) =>
    new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim() || undefined;
  const model = field('model name');
  cpuinfo = { ...(model ? { model } : {}), flags: new Set((field('flags') ?? '').split(/\s+/)) };
  return cpuinfo;
}

/** Command lines of a `-###` dry run, split into arguments (the driver quotes with `"`). */
function commandArgs(dryRun: string): string[][] {
  return dryRun
    .split('\n')
    .filter((line) => line.startsWith(' '))
    .map((line) => [...line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? ''));
}

/**
 * The target-describing arguments of a dry run: `-m…` options, and the values of `--param`,
 * `-target-cpu`, `-tune-cpu` and `-target-feature`. Temporary file names and paths are left out,
 * so the result is the same on every run on one machine.
 */
export function targetArgs(dryRun: string): string[] {
  const out: string[] = [];
  for (const args of commandArgs(dryRun)) {
    for (let i = 0; i < args.length; i++) {
      const a = args[i] as string;
      if (a.startsWith('-m')) out.push(a);
      else if (['--param', '-target-cpu', '-tune-cpu', '-target-feature'].includes(a)) {
        out.push(`${a} ${args[i + 1] ?? ''}`);
        i++;
      }
    }
  }
  return out;
}

export interface Target {
  /** What the cache key takes: the resolved target, one argument a line. */
  readonly key: string;
  /** Whether the key came from the compiler (true) or from /proc/cpuinfo (false). */
  readonly fromCompiler: boolean;
  /** The backend features the build enables, by BACKEND_FEATURES name. */
  readonly enabled: ReadonlySet<string>;
}

const targets = new Map<string, Target>();

/** Whether the resolved arguments enable a GCC `-m<flag>` or a Clang `+<flag>` feature. */
function enables(args: readonly string[], flag: string): boolean {
  let on = false;
  for (const a of args) {
    if (a === `-m${flag}` || a === `-target-feature +${flag}`) on = true;
    if (a === `-mno-${flag}` || a === `-target-feature -${flag}`) on = false;
  }
  return on;
}

/**
 * Flags that never change what the driver targets: flag sets that differ only in these (the
 * primitives' `-O3 -fopenmp` and a plan's `-O2`) share one dry run. Any other flag counts.
 */
const TARGET_NEUTRAL = /^(-O[0-3sz]?|-fopenmp|-fPIC|-shared|-std=\S+)$/;

/**
 * The target `cc` resolves `flags` to on this machine; computed once per process for each
 * compiler and target-relevant flags, since a dry run costs a process start.
 */
export function resolveTarget(cc: string, flags: readonly string[]): Target {
  const id = [cc, ...flags.filter((f) => !TARGET_NEUTRAL.test(f))].join('\u0000');
  const known = targets.get(id);
  if (known) return known;
  // -### prints what the driver would run, on stderr, and runs nothing. A compiler that is
  // missing or rejects it reports no target arguments, and /proc/cpuinfo stands in.
  const run = spawnSync(cc, [...flags, '-###', '-x', 'c', '-c', '/dev/null', '-o', '/dev/null'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 30_000,
  });
  const args = targetArgs(run.stderr ?? '');
  const cpu = cpuInfo();
  const target: Target =
    args.length > 0
      ? {
          key: args.join('\n'),
          fromCompiler: true,
          enabled: new Set(BACKEND_FEATURES.filter((f) => enables(args, f.flag)).map((f) => f.name)),
        }
      : {
          key: `cpuinfo ${cpu.model ?? '?'}\n${[...cpu.flags].sort().join(' ')}`,
          fromCompiler: false,
          enabled: new Set(BACKEND_FEATURES.filter((f) => cpu.flags.has(f.cpuinfo)).map((f) => f.name)),
        };
  targets.set(id, target);
  return target;
}
