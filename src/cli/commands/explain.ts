import type { Command } from 'commander';
import type { ExplainCommandOptions } from '../explain.ts';
import { type Io, setOption } from '../io.ts';
import { batchValue, genLengthValue, integerIn } from '../numbers.ts';

// The advisor's hardware names, for the help text; src/cost/hardware.ts holds their figures.
const hardwareHelp = 'h100, h200, a100, rtx4090, m3max, or cpu (this machine, measured once and kept)';

export function registerExplain(program: Command, io: Io, setExit: (code: number) => void): void {
  program
    .command('explain')
    .description(
      'show how a plan lowers: its phases, the schedule, the index lists for a sample token state, and the IR of each phase',
    )
    .argument('<files...>', 'plan files (.kvp)')
    .option('--config <preset|file.json|dir>', 'model configuration', 'tiny')
    .option('--no-ir', 'leave out the IR listing')
    .addOption(setOption())
    .option(
      '--cost',
      'instead: predict per-step time and the speedup over no cache from a roofline of the compiled kernels, which kernels bound each phase, and the generation length below which the plan does not pay off',
    )
    .option('--hardware <name>', `with --cost: the machine (${hardwareHelp})`, 'cpu')
    .option('--batch <n>', 'with --cost: sequences generated together', batchValue, 1)
    .option('--prompt-length <n>', 'with --cost: prompt positions', integerIn(0, 16_384), 256)
    .option('--gen-length <n>', 'with --cost: generated positions', genLengthValue, 256)
    .option('--remeasure', 'with --cost --hardware cpu: measure this machine again')
    .option('--json', 'with --cost: one JSON object per plan')
    .action(async (files: string[], options: ExplainCommandOptions, command: Command) => {
      const { runExplain } = await import('../explain.ts');
      const given = command.options
        .map((opt) => opt.attributeName())
        .filter((name) => command.getOptionValueSource(name) === 'cli');
      setExit(await runExplain(files, { ...options, given }, io));
    });
}
