import type { Command } from 'commander';
import { runBackends } from '../../backends/registry.ts';
import { bundledTasks } from '../../eval/bundledModels.ts';
import { defaultTask, tasks } from '../../eval/tasks.ts';
import type { DemoCommandOptions } from '../demo.ts';
import type { Io } from '../io.ts';
import { batchValue, countValue, genLengthValue, integerIn, threadCount } from '../numbers.ts';

export function registerDemo(program: Command, io: Io, setExit: (code: number) => void): void {
  program
    .command('demo')
    .description(
      'compile every example plan, answer held-out problems with the bundled model made for it, print accuracy and the speedup of its cache and decode rule',
    )
    .option(
      '--model <dir|m.onnx>',
      'one model for every plan: a Hugging Face checkpoint directory or an ONNX file (default: each plan on the bundled model made for its attention structure)',
    )
    .option(
      '--task <name>',
      `the task (bundled models: ${bundledTasks().join(', ')}, default each model's first, a plan whose model does not know the task is not run; with --model: ${[...tasks.keys()].join(', ')}, default ${defaultTask})`,
    )
    .option('--n <n>', 'held-out problems per plan', countValue, 8)
    .option('--show <n>', 'answers shown per plan', integerIn(0, 1_000_000), 3)
    .option('--backend <name>', runBackends.join(', '), 'cpu')
    .option('--gen-length <n>', 'generated positions per problem', genLengthValue, 64)
    .option('--batch <n>', 'problems generated together in one batch', batchValue, 1)
    .option('--plans <dir>', 'the directory of plans (default: the bundled examples)')
    .option('--threads <n>', 'threads of the cpu backend (0: all cores)', threadCount, 0)
    .option('--json', "print the table as JSON, with each plan's runs and answers")
    .action(async (options: DemoCommandOptions) => {
      const { runDemo } = await import('../demo.ts');
      setExit(await runDemo(options, io));
    });
}
