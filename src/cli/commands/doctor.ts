import type { Command } from 'commander';
import { Exit, type Io } from '../io.ts';

export function registerDoctor(program: Command, io: Io, setExit: (code: number) => void): void {
  program
    .command('doctor')
    .description(
      'report the environment for a bug report: versions, C compiler, OpenMP, CPU features, WebGPU, ptxas, CUDA, the cache directory',
    )
    .option('--json', 'print the report as JSON')
    .action(async (options: { json?: boolean }) => {
      const { doctorReport, formatDoctor } = await import('../doctor.ts');
      const report = await doctorReport(program.version() ?? '');
      io.out(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctor(report));
      // Missing optional pieces are what the report is for, not a failure.
      setExit(Exit.ok);
    });
}
