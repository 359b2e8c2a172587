import type { Command } from 'commander';
import { ARCHES } from '../../backends/cuda-ptx/kernels/ptx.ts';
import type { Target } from '../../passes/state.ts';
import type { CompileCommandOptions } from '../compile.ts';
import { type Io, setOption } from '../io.ts';
import { genLengthValue } from '../numbers.ts';

export const compileTargets: readonly Target[] = ['reference', 'cpu', 'wgsl', 'ptx'];

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
      `target the layouts and memory plan are chosen for (${compileTargets.join(', ')})`,
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
    .addOption(setOption())
    .action(async (files: string[], options: CompileCommandOptions) => {
      const { runCompile } = await import('../compile.ts');
      setExit(await runCompile(files, options, io));
    });
}
