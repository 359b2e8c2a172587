import { ARCHES, type Arch } from '../backends/cuda-ptx/kernels/ptx.ts';
import { type Compiled, compilePlan, pipeline } from '../passes/compile.ts';
import type { Target } from '../passes/state.ts';
import { type CompileStats, compileStats } from '../runtime/compileStats.ts';
import { blockLength } from '../runtime/simulate.ts';
import { compileTargets } from './commands/compile.ts';
import { Exit, type Io, makeOutputDir, worstExit, writingTo } from './io.ts';
import { loadModelConfig } from './modelConfig.ts';
import { fitsModelDepth, loadPlans } from './plans.ts';

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

/**
 * `kvplan compile`. A backend's generator (the CPU one loads koffi) is imported only when `-o`
 * writes its code.
 */
export async function runCompile(
  paths: readonly string[],
  o: CompileCommandOptions,
  io: Io,
): Promise<number> {
  if (!compileTargets.includes(o.target as Target)) {
    io.err(`kvplan: --target ${o.target}: choose one of ${compileTargets.join(', ')}\n`);
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
      const [{ renderPtx }, { writePtxBuild }] = await Promise.all([
        import('../backends/cuda-ptx/render.ts'),
        import('../backends/cuda-ptx/output.ts'),
      ]);
      const render = renderPtx(config, state.phases, state.kernels, state.memory, {
        arch: (o.arch ?? 'sm_80') as Arch,
        maxCanvas: promptLen + genLen,
      });
      const out = o.output;
      if (!writingTo(out, io, () => wrote(writePtxBuild(out, checked.plan.name, render))))
        codes.push(Exit.usage);
    } else if (o.output !== undefined && target === 'wgsl') {
      const [{ buildWebGpu }, { writeWebGpuBuild }] = await Promise.all([
        import('../backends/webgpu/runner.ts'),
        import('../backends/webgpu/output.ts'),
      ]);
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
      const [{ buildCpu }, { writeCpuBuild }] = await Promise.all([
        import('../backends/cpu/runner.ts'),
        import('../backends/cpu/output.ts'),
      ]);
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
