import type { Command } from 'commander';
import type { InspectOptions } from '../inspect.ts';
import type { Io } from '../io.ts';

export function registerInspect(program: Command, io: Io, setExit: (code: number) => void): void {
  program
    .command('inspect-model')
    .description(
      'describe a model: a Hugging Face checkpoint directory (LLaDA, Dream, SDAR, Fast-dLLM v2) or a kvplan ONNX file',
    )
    .argument('<dir|file>', 'a checkpoint directory or an ONNX model')
    .option('--plan <file...>', 'plans to check against the model (default: the example plans)')
    .option('--json', 'print the description as JSON')
    .action(async (path: string, options: InspectOptions) => {
      const { runInspect } = await import('../inspect.ts');
      setExit(await runInspect(path, options, io));
    });
}
