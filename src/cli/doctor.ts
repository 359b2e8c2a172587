import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  compileLibrary,
  compilerSettings,
  compilerVersion,
  defaultCacheDir,
  findOnPath,
  openLibrary,
  prepareCacheDir,
} from '../backends/cpu/compiler.ts';
import { BACKEND_FEATURES, cpuInfo, resolveTarget } from '../backends/cpu/target.ts';
import { cudaAvailable } from '../backends/cuda-ptx/driver.ts';
import { findPtxas } from '../backends/cuda-ptx/ptxas.ts';
import { sharedDevice } from '../backends/webgpu/device.ts';

/** A piece of the environment: present (with what was found) or absent (with why). */
export type Probe<T extends object> =
  | ({ readonly ok: true } & T)
  | { readonly ok: false; readonly reason: string };

export interface DoctorReport {
  readonly kvplan: string;
  readonly node: string;
  readonly platform: string;
  readonly compiler: Probe<{ readonly command: string; readonly path: string; readonly version: string }>;
  readonly openmp: Probe<{ readonly threads: number }>;
  readonly cpu: {
    readonly model: string | null;
    /** The CPU the compiler resolves the build flags to, e.g. `-march=znver3`. */
    readonly target: string | null;
    readonly features: readonly {
      readonly name: string;
      /** The CPU has it (/proc/cpuinfo). */
      readonly cpu: boolean;
      /** The CPU backend's build enables it (the compiler's resolution of its flags). */
      readonly build: boolean;
      readonly use: string;
    }[];
  };
  readonly webgpu: Probe<{ readonly adapter: string }>;
  readonly ptxas: Probe<{ readonly path: string; readonly version: string }>;
  readonly cuda: Probe<{ readonly devices: string }>;
  readonly cache: Probe<{ readonly dir: string; readonly mode: string; readonly uid: number }> & {
    readonly dir: string;
  };
}

const firstLine = (text: string) =>
  text
    .split('\n')
    .find((l) => l.trim() !== '')
    ?.trim() ?? '';
const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Asks OpenMP for its thread count from a library built the way the CPU backend builds. */
const OPENMP_PROBE = `#ifdef _OPENMP
#include <omp.h>
int kvp_doctor_threads(void) { return omp_get_max_threads(); }
#else
int kvp_doctor_threads(void) { return 0; }
#endif
`;

function compilerProbe(cc: string): DoctorReport['compiler'] {
  const path = findOnPath(cc);
  if (!path) return { ok: false, reason: `\`${cc}\` is not on PATH (install gcc or set KVPLAN_CC)` };
  try {
    return { ok: true, command: cc, path, version: firstLine(compilerVersion(cc)) };
  } catch (e) {
    return { ok: false, reason: messageOf(e) };
  }
}

/** Compiles and runs the OpenMP probe in a private temporary cache, so the user's is not needed. */
function openmpProbe(): DoctorReport['openmp'] {
  const dir = mkdtempSync(join(tmpdir(), 'kvplan-doctor-'));
  try {
    const lib = openLibrary(compileLibrary(OPENMP_PROBE, { cacheDir: join(dir, 'cache') }), [
      'kvp_doctor_threads',
    ]);
    const threads = lib.func('int kvp_doctor_threads(void)')() as number;
    if (threads === 0) return { ok: false, reason: 'the compiler does not define _OPENMP with -fopenmp' };
    return { ok: true, threads };
  } catch (e) {
    return { ok: false, reason: firstLine(messageOf(e)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function cpuProbe(cc: string, flags: readonly string[], haveCompiler: boolean): DoctorReport['cpu'] {
  const info = cpuInfo();
  const target = haveCompiler ? resolveTarget(cc, flags) : undefined;
  const march = target?.fromCompiler ? (/^-march=(.*)$/m.exec(target.key)?.[1] ?? null) : null;
  return {
    model: info.model ?? null,
    target: march,
    features: BACKEND_FEATURES.map((f) => ({
      name: f.name,
      cpu: info.flags.has(f.cpuinfo),
      build: target?.enabled.has(f.name) ?? false,
      use: f.use,
    })),
  };
}

async function webgpuProbe(): Promise<DoctorReport['webgpu']> {
  try {
    const got = await sharedDevice();
    if (!got.ok) return { ok: false, reason: got.reason };
    const info = got.gpu.device.adapterInfo;
    const words = [info.vendor, info.architecture, info.description].filter((w) => w);
    return { ok: true, adapter: `${got.gpu.source}${words.length ? `: ${words.join(' ')}` : ''}` };
  } catch (e) {
    return { ok: false, reason: messageOf(e) };
  }
}

function ptxasProbe(): DoctorReport['ptxas'] {
  const path = findPtxas();
  if (!path) return { ok: false, reason: 'ptxas is not on PATH (set KVPLAN_PTXAS to use another)' };
  const run = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  const version = (run.stdout ?? '').split('\n').find((l) => /release/.test(l));
  return { ok: true, path, version: version?.trim() ?? firstLine(run.stdout ?? '') };
}

function cudaProbe(): DoctorReport['cuda'] {
  const status = cudaAvailable();
  return status.ok ? { ok: true, devices: status.reason } : { ok: false, reason: status.reason };
}

/** The cache directory, checked as a compile checks it (which creates it when missing). */
function cacheProbe(): DoctorReport['cache'] {
  const dir = defaultCacheDir();
  try {
    prepareCacheDir(dir);
    const st = statSync(dir);
    return { ok: true, dir, mode: (st.mode & 0o777).toString(8).padStart(3, '0'), uid: st.uid };
  } catch (e) {
    return { ok: false, dir, reason: messageOf(e) };
  }
}

/** Everything `kvplan doctor` reports. Optional pieces that are missing are `ok: false`. */
export async function doctorReport(version: string): Promise<DoctorReport> {
  const { cc, flags } = compilerSettings();
  const compiler = compilerProbe(cc);
  return {
    kvplan: version,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    compiler,
    openmp: compiler.ok ? openmpProbe() : { ok: false, reason: 'no C compiler' },
    cpu: cpuProbe(cc, flags, compiler.ok),
    webgpu: await webgpuProbe(),
    ptxas: ptxasProbe(),
    cuda: cudaProbe(),
    cache: cacheProbe(),
  };
}

const yes = (b: boolean) => (b ? 'yes' : 'no');

/** The report as text, one `name  value` line per piece; a missing one reads `absent: <reason>`. */
export function formatDoctor(r: DoctorReport): string {
  const show = <T extends object>(p: Probe<T>, text: (p: { ok: true } & T) => string) =>
    p.ok ? text(p) : `absent: ${p.reason}`;
  const rows: [string, string][] = [
    ['kvplan', r.kvplan],
    ['node', `${r.node} (${r.platform})`],
    ['C compiler', show(r.compiler, (c) => `${c.path} (${c.command}): ${c.version}`)],
    ['OpenMP', show(r.openmp, (o) => `yes, ${o.threads} threads`)],
    ['CPU', r.cpu.model ?? 'unknown'],
    ['build target', r.cpu.target ? `-march=${r.cpu.target}` : 'unknown (the compiler did not say)'],
    ...r.cpu.features.map((f): [string, string] => [
      `  ${f.name}`,
      `cpu ${yes(f.cpu)}, build ${yes(f.build)} (${f.use})`,
    ]),
    ['WebGPU', show(r.webgpu, (w) => w.adapter)],
    ['ptxas', show(r.ptxas, (p) => `${p.path}: ${p.version}`)],
    ['CUDA driver', show(r.cuda, (c) => c.devices)],
    [
      'cache',
      r.cache.ok
        ? `${r.cache.dir} (mode ${r.cache.mode}, uid ${r.cache.uid}): ok`
        : `${r.cache.dir}: refused: ${r.cache.reason}`,
    ],
  ];
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  return rows.map(([k, v]) => `${k.padEnd(width)}${v}\n`).join('');
}
