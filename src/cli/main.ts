/**
 * The kvplan command line. Start-up loads commander and the command declarations (commands/), which
 * import nothing of the pipeline: each command's action imports its implementation, so that
 * `--version`, `--help` and `check` do not pay for the backends, koffi or the model readers.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { CompilerError } from '../backends/cpu/compilerError.ts';
import { CheckpointError } from '../model/hf/checkpointError.ts';
import { registerCheck } from './commands/check.ts';
import { registerCompile } from './commands/compile.ts';
import { registerDemo } from './commands/demo.ts';
import { registerDoctor } from './commands/doctor.ts';
import { registerEval } from './commands/eval.ts';
import { registerExplain } from './commands/explain.ts';
import { registerFmt } from './commands/fmt.ts';
import { registerGenerate } from './commands/generate.ts';
import { registerInspect } from './commands/inspect.ts';
import { registerMakeModel } from './commands/makeModel.ts';
import { registerVerify } from './commands/verify.ts';
import { Exit, type Io, processIo } from './io.ts';

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version?: unknown;
  };
  return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}

function buildProgram(io: Io, setExit: (code: number) => void): Command {
  const program = new Command('kvplan');
  // Settings made before .command() are inherited by every subcommand.
  program
    .description('A compiler for KV-cache policies of diffusion language models')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'print help')
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError('(run kvplan --help for usage)')
    .exitOverride();
  registerCheck(program, io, setExit);
  registerFmt(program, io, setExit);
  registerExplain(program, io, setExit);
  registerCompile(program, io, setExit);
  registerVerify(program, io, setExit);
  registerGenerate(program, io, setExit);
  registerEval(program, io, setExit);
  registerDemo(program, io, setExit);
  registerMakeModel(program, io, setExit);
  registerInspect(program, io, setExit);
  registerDoctor(program, io, setExit);
  return program;
}

/**
 * Runs the CLI and returns its exit status (never calls process.exit): 0 ok, 1 a checked file
 * failed, 2 usage error, 70 internal error. Set KVPLAN_DEBUG=1 to see an internal error's stack.
 */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  let code: number = Exit.ok;
  try {
    const program = buildProgram(io, (c) => {
      code = c;
    });
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    // Commander has already printed its message (or the help / version text).
    if (e instanceof CommanderError) return e.exitCode === 0 ? Exit.ok : Exit.usage;
    const message = e instanceof Error ? e.message : String(e);
    // A checkpoint's tensors are read when a backend loads them or a step runs, past the point
    // where a command opened the model: a bad one is the input's fault wherever it surfaces.
    // So is a C toolchain or cache directory the user can fix (generate, eval and demo report it
    // where they prepare a backend; compile and verify meet it deeper down).
    if (e instanceof CheckpointError || e instanceof CompilerError) {
      io.err(`kvplan: ${message}\n`);
      return Exit.failed;
    }
    io.err(`kvplan: internal error: ${message}\n`);
    if (process.env.KVPLAN_DEBUG && e instanceof Error && e.stack) io.err(`${e.stack}\n`);
    return Exit.internal;
  }
}
