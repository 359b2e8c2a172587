import type { Command } from 'commander';
import type { CheckCommandOptions } from '../check.ts';
import { type Io, setOption } from '../io.ts';

export function registerCheck(program: Command, io: Io, setExit: (code: number) => void): void {
  program
    .command('check')
    .description('check plan files; print one line per plan: exact, or approximate and its premise')
    .argument('<files...>', 'plan files (.kvp)')
    .addOption(setOption())
    .option(
      '--config <preset|file.json|dir>',
      'a model configuration: warn about layer scopes that select none of its layers',
    )
    .option('--json', 'one JSON object per file: its plans, their classification, and the diagnostics')
    .addHelpText(
      'after',
      '\nExit status: 0 all files well-formed, 1 a plan has errors, 2 usage error or unreadable file.',
    )
    .action(async (files: string[], options: CheckCommandOptions) => {
      const { runCheck } = await import('../check.ts');
      setExit(await runCheck(files, options, io));
    });
}
