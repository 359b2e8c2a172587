import type { Command } from 'commander';
import { runBackends } from '../../backends/registry.ts';
import { defaultTask, tasks } from '../../eval/tasks.ts';
import type { EvalCommandOptions } from '../eval.ts';
import { type Io, setOption } from '../io.ts';
import { batchValue, countValue, genLengthValue, seedValue, threadCount } from '../numbers.ts';

export function registerEval(program: Command, io: Io, setExit: (code: number) => void): void {
  program
    .command('eval')
    .description(
      'accuracy and tokens/s of a plan on held-out problems of a task (exact match of the answer before EOS)',
    )
    .requiredOption('--plan <p.kvp>', 'the cache plan')
    .option(
      '--model <dir|m.onnx>',
      'the model: a Hugging Face checkpoint directory or an ONNX file (default: the bundled model)',
    )
    .option('--task <name>', `the task (${[...tasks.keys()].join(', ')}; default ${defaultTask})`)
    .option('--n <n>', 'held-out problems', countValue, 50)
    .option('--backend <name>', runBackends.join(', '), 'cpu')
    .option('--gen-length <n>', 'generated positions per problem', genLengthValue, 64)
    .option('--batch <n>', 'problems generated together in one batch', batchValue, 1)
    .option('--seed <n>', 'seed of the held-out problems and of random decode orders', seedValue, 1)
    .option('--threads <n>', 'threads of the cpu backend (0: all cores)', threadCount, 0)
    .addOption(setOption('the plan'))
    .option('--json', 'print the result as JSON (with every problem)')
    .option('--show', 'print every problem, its answer and the expected one to stderr')
    .option(
      '--ablate',
      "also run the plan's no-cache twin and the one-token-per-step baseline on the same problems; print the effect of the cache alone, of the decode rule alone and of both",
    )
    .addHelpText(
      'after',
      '\nExit status: 0 evaluated (whatever the accuracy), 1 a bad model, plan or backend, 2 usage error.',
    )
    .action(async (options: EvalCommandOptions) => {
      const { runEval } = await import('../eval.ts');
      setExit(await runEval(options, io));
    });
}
