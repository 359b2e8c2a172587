import type { Command } from 'commander';
import { type Io, setOption } from '../io.ts';
import { countValue, genLengthValue, seedValue, threadCount } from '../numbers.ts';
import type { VerifyCommandOptions } from '../verify.ts';

export const verifyBackends = ['reference', 'cpu', 'webgpu', 'ptx'];

export function registerVerify(program: Command, io: Io, setExit: (code: number) => void): void {
  program
    .command('verify')
    .description(
      'prove plans against full attention on random models: exact plans at every step, approximate ones under their premise and at refresh steps',
    )
    .argument('<files...>', 'plan files (.kvp)')
    .option(
      '--backend <name>',
      `backend to run the step programs on (${verifyBackends.join(', ')})`,
      'reference',
    )
    .option(
      '--config <preset|file.json|dir>',
      'model configuration (default: tiny, small, and tiny without QKV bias); its attention structure and AR shift follow the plan',
    )
    .option('--cases <n>', 'random models and prompts per plan', countValue, 3)
    .option('--seed <n>', 'seed of the first case', seedValue, 1)
    .option('--prompt-length <n>', 'prompt positions per case', genLengthValue, 5)
    .option(
      '--gen-length <n>',
      'generated positions per case (default: two blocks, at most 64)',
      genLengthValue,
    )
    .option('--threads <n>', 'threads of the cpu backend (0: all cores)', threadCount, 0)
    .addOption(setOption())
    .option('--json', 'one JSON object per plan: its checks and verdict')
    .addHelpText(
      'after',
      '\nExit status: 0 every property holds, 1 a property fails or a plan is ill-formed, 2 usage error.',
    )
    .action(async (files: string[], options: VerifyCommandOptions) => {
      const { runVerify } = await import('../verify.ts');
      setExit(await runVerify(files, options, io));
    });
}
