import type { Command } from 'commander';
import { writeCpuBuild } from '../backends/cpu/output.ts';
import { buildCpu } from '../backends/cpu/runner.ts';
import { ARCHES, type Arch } from '../backends/cuda-ptx/kernels/ptx.ts';
import { writePtxBuild } from '../backends/cuda-ptx/output.ts';
import { renderPtx } from '../backends/cuda-ptx/render.ts';
import { writeWebGpuBuild } from '../backends/webgpu/output.ts';
import { buildWebGpu } from '../backends/webgpu/runner.ts';
import type { CheckedPlan } from '../dsl/check.ts';
import type { Dim } from '../ir/types.ts';
import type { ModelConfig } from '../model/config.ts';
import { type Compiled, compilePlan, pipeline } from '../passes/compile.ts';
import { evalCost, type KernelProgram } from '../passes/kernelIR.ts';
import type { Target } from '../passes/state.ts';
import { type SampleState, sampleStates } from '../runtime/sample.ts';
import { blockLength } from '../runtime/simulate.ts';
import { collectSetting, Exit, type Io, makeOutputDir, worstExit, writingTo } from './io.ts';
import { genLengthValue } from './numbers.ts';
import { fitsModelDepth, loadModelConfig, loadPlans } from './plans.ts';

export interface CompileCommandOptions {
  readonly set?: Map<string, string>;
  readonly config: string;
  readonly target: string;
  readonly dumpAfter?: string;
  readonly dumpAll?: boolean;
  readonly stats?: boolean;
  readonly json?: boolean;
  readonly promptLength: number;
  readonly genLength: number;
  readonly output?: string;
  readonly arch?: string;
}

const targets: readonly Target[] = ['reference', 'cpu', 'wgsl', 'ptx'];

export interface CompileStats {
  readonly plan: string;
  readonly config: string;
  readonly target: Target;
  readonly canvas: number;
  readonly phases: Record<string, number>;
  readonly kernels: number;
  readonly flops_per_step: Record<string, number>;
  readonly bytes_per_step: Record<string, number>;
  readonly peak_bytes: number;
  readonly naive_bytes: number;
  readonly cache_bytes: number;
  readonly passes: readonly { readonly pass: string; readonly ms: number }[];
}

/** Sizes of the symbolic dims at a sample step: index lists as the inspector built them. */
function sizesAt(sample: SampleState | undefined, canvas: number): (d: Dim) => number {
  const lists = new Map<string, number>();
  for (const lp of sample?.layers ?? [])
    for (const [name, list] of lp.lists) lists.set(`#${name}`, list.length);
  const out = sample?.layers.at(-1)?.rows.reduce((a, b) => a + b, 0);
  if (out !== undefined) lists.set('#out', out);
  return (d) => (typeof d === 'number' ? d : (lists.get(d) ?? canvas));
}

export function compileStats(
  plan: CheckedPlan,
  config: ModelConfig,
  compiled: Compiled,
  target: Target,
  promptLen: number,
  genLen: number,
): CompileStats {
  const samples = sampleStates(plan, compiled.lowered, promptLen, genLen);
  const canvas = promptLen + genLen;
  const refreshSample = samples.find((s) => s.full) ?? samples[0];
  const cachedSample = samples.find((s) => !s.full) ?? samples.at(-1);
  const kernels = compiled.state.kernels ?? new Map<string, KernelProgram>();
  const per = (f: (kp: KernelProgram, size: (d: Dim) => number) => number) =>
    Object.fromEntries(
      [...kernels].map(([name, kp]) => [
        name,
        f(kp, sizesAt(name === 'refresh' ? refreshSample : cachedSample, canvas)),
      ]),
    );
  const memory = [...(compiled.state.memory?.values() ?? [])];
  return {
    plan: plan.plan.name,
    config: config.name,
    target,
    canvas,
    phases: Object.fromEntries([...kernels].map(([name, kp]) => [name, kp.kernels.length])),
    kernels: [...kernels.values()].reduce((a, kp) => a + kp.kernels.length, 0),
    flops_per_step: per((kp, size) => kp.kernels.reduce((a, k) => a + evalCost(k.flops, size), 0)),
    bytes_per_step: per((kp, size) => kp.kernels.reduce((a, k) => a + evalCost(k.bytes, size), 0)),
    peak_bytes: Math.max(0, ...memory.map((m) => m.peakBytes)),
    naive_bytes: Math.max(0, ...memory.map((m) => m.naiveBytes)),
    cache_bytes: Math.max(0, ...memory.map((m) => m.persistentBytes)),
    passes: compiled.timings,
  };
}

const human = (x: number) =>
  x >= 1e9
    ? `${(x / 1e9).toFixed(2)} G`
    : x >= 1e6
      ? `${(x / 1e6).toFixed(2)} M`
      : x >= 1e3
        ? `${(x / 1e3).toFixed(1)} k`
        : `${x}`;

function statsText(s: CompileStats): string {
  const lines = [`plan ${s.plan}  model ${s.config}  target ${s.target}  canvas ${s.canvas}`];
  for (const [phase, n] of Object.entries(s.phases)) {
    lines.push(
      `  ${phase.padEnd(8)} ${String(n).padStart(4)} kernels  ${human(s.flops_per_step[phase] ?? 0)}FLOP  ${human(s.bytes_per_step[phase] ?? 0)}B per step`,
    );
  }
  lines.push(
    `  memory: peak ${human(s.peak_bytes)}B (naive ${human(s.naive_bytes)}B), caches ${human(s.cache_bytes)}B`,
  );
  lines.push(`  passes: ${s.passes.map((p) => `${p.pass} ${p.ms.toFixed(1)} ms`).join(', ')}`);
  return `${lines.join('\n')}\n`;
}

function kernelsText(compiled: Compiled): string {
  const lines: string[] = [];
  for (const [phase, kp] of compiled.state.kernels ?? []) {
    lines.push(`phase ${phase}: ${kp.kernels.length} kernels`);
    for (const k of kp.kernels) {
      const extra = [
        k.indirect.length ? `indirect ${k.indirect.join(',')}` : '',
        k.epilogue.length ? `epilogue ${k.epilogue.join(',')}` : '',
      ]
        .filter(Boolean)
        .join('  ');
      lines.push(`  ${k.name.padEnd(26)} ${k.kind.padEnd(11)} [${k.grid.join(', ')}]  ${extra}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export function runCompile(paths: readonly string[], o: CompileCommandOptions, io: Io): number {
  if (!targets.includes(o.target as Target)) {
    io.err(`kvplan: --target ${o.target}: choose one of ${targets.join(', ')}\n`);
    return Exit.usage;
  }
  const names = pipeline.map((p) => p.name);
  const dumpAfter = o.dumpAfter?.split(',').filter(Boolean);
  const unknown = dumpAfter?.filter((n) => !names.includes(n)) ?? [];
  if (unknown.length) {
    io.err(`kvplan: --dump-after ${unknown.join(',')}: no such pass; passes: ${names.join(', ')}\n`);
    return Exit.usage;
  }
  const { promptLength: promptLen, genLength: genArg } = o;
  if (o.arch !== undefined && (o.target !== 'ptx' || !ARCHES.includes(o.arch as Arch))) {
    io.err(`kvplan: --arch ${o.arch}: with --target ptx, choose one of ${ARCHES.join(', ')}\n`);
    return Exit.usage;
  }
  const config = loadModelConfig(o.config, io);
  if (!config) return Exit.usage;
  const target = o.target as Target;
  if (o.output !== undefined && target !== 'reference' && !makeOutputDir(o.output, io)) return Exit.usage;
  const wrote = (files: readonly string[]) => {
    for (const f of files) io.err(`wrote ${f}\n`);
  };
  const { plans, codes } = loadPlans(paths, o.set ?? new Map(), io);
  for (const p of plans) {
    if (!fitsModelDepth(p, config, io)) {
      codes.push(Exit.failed);
      continue;
    }
    const checked = p.checked;
    const genLen = Math.max(genArg, blockLength(checked, genArg));
    const compiled = compilePlan(checked, config, {
      target,
      canvas: promptLen + genLen,
      ...(dumpAfter ? { dumpAfter } : {}),
      ...(o.dumpAll ? { dumpAll: true } : {}),
      onDump: (pass, text) =>
        io.out(`// ---- after ${pass} ----\n${text.endsWith('\n') ? text : `${text}\n`}`),
    });
    if (o.output !== undefined && target === 'ptx') {
      const { state } = compiled;
      if (!state.kernels || !state.memory) throw new Error('the pipeline produced no kernels');
      const render = renderPtx(config, state.phases, state.kernels, state.memory, {
        arch: (o.arch ?? 'sm_80') as Arch,
        maxCanvas: promptLen + genLen,
      });
      const out = o.output;
      if (!writingTo(out, io, () => wrote(writePtxBuild(out, checked.plan.name, render))))
        codes.push(Exit.usage);
    } else if (o.output !== undefined && target === 'wgsl') {
      const build = buildWebGpu(checked, config, promptLen + genLen);
      const out = o.output;
      if (!writingTo(out, io, () => wrote(writeWebGpuBuild(out, checked.plan.name, build))))
        codes.push(Exit.usage);
    } else if (o.output !== undefined) {
      if (target !== 'cpu') {
        io.err(
          `kvplan: -o writes generated code, which the reference target does not have (got --target ${target})\n`,
        );
        codes.push(Exit.usage);
        continue;
      }
      const build = buildCpu(checked, config, promptLen + genLen);
      const out = o.output;
      if (!writingTo(out, io, () => wrote(writeCpuBuild(out, checked.plan.name, build))))
        codes.push(Exit.usage);
    }
    if (o.stats) {
      const stats = compileStats(checked, config, compiled, target, promptLen, genLen);
      io.out(o.json ? `${JSON.stringify(stats)}\n` : statsText(stats));
    } else if (!dumpAfter && !o.dumpAll) io.out(kernelsText(compiled));
    codes.push(Exit.ok);
  }
  return worstExit(codes);
}

export function registerCompile(program: Command, io: Io, setExit: (code: number) => void): void {
  program
    .command('compile')
    .description(
      'run the pass pipeline: step IR cleanup, hoisting, fusion into kernels, layouts and memory planning',
    )
    .argument('<files...>', 'plan files (.kvp)')
    .option('--config <preset|file.json|dir>', 'model configuration', 'small')
    .option(
      '--target <name>',
      `target the layouts and memory plan are chosen for (${targets.join(', ')})`,
      'reference',
    )
    .option('--dump-after <passes>', 'print the program after these passes (comma-separated)')
    .option('--dump-all', 'print the program after every pass')
    .option('--stats', 'print kernel counts, estimated FLOPs and bytes per step, and the memory plan')
    .option('--json', 'with --stats: one JSON object per plan')
    .option(
      '--prompt-length <n>',
      'prompt length of the canvas the estimates and memory plan assume',
      genLengthValue,
      64,
    )
    .option(
      '--gen-length <n>',
      'generated positions of that canvas (at least one block)',
      genLengthValue,
      256,
    )
    .option(
      '-o, --output <dir>',
      'write the generated code there: C source, library and manifest (cpu); .wgsl shaders and a dispatch manifest (wgsl); .ptx files and a launch manifest (ptx)',
    )
    .option('--arch <sm>', `with --target ptx: the PTX target (${ARCHES.join(', ')}; default sm_80)`)
    .option(
      '--set <name=value>',
      'override a parameter of every plan that declares it (repeatable)',
      collectSetting,
    )
    .action((files: string[], options: CompileCommandOptions) => {
      setExit(runCompile(files, options, io));
    });
}
