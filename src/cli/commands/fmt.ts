import { type Command, Option } from 'commander';
import type { FmtCommandOptions } from '../fmt.ts';
import type { Io } from '../io.ts';

export function registerFmt(program: Command, io: Io, setExit: (code: number) => void): void {
  program
    .command('fmt')
    .description('print plan files in canonical form, or rewrite or check them')
    .argument('<files...>', 'plan files (.kvp)')
    .addOption(new Option('--write', 'rewrite files that are not in canonical form'))
    .addOption(
      new Option('--check', 'list files that are not in canonical form and fail if any').conflicts('write'),
    )
    .addHelpText(
      'after',
      '\nExit status: 0 ok, 1 a file does not parse (or, with --check, is not canonical), 2 usage error.',
    )
    .action(async (files: string[], options: FmtCommandOptions) => {
      const { runFmt } = await import('../fmt.ts');
      setExit(runFmt(files, options, io));
    });
}
