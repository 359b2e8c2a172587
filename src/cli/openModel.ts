import { bundledModelPath } from '../eval/bundledModels.ts';
import { modelPathProblem } from '../model/fsError.ts';
import { CheckpointError } from '../model/hf/checkpointError.ts';
import { OnnxError } from '../model/onnx/error.ts';
import type { OpenedModel } from '../runtime/openModel.ts';
import { TokenizerError } from '../runtime/tokenizer.ts';
import { Exit, type Io } from './io.ts';

/**
 * Opens a model for a command that generates: the named file, or the bundled model. Returns the
 * exit code instead when it cannot: 2 for a path that cannot be a model, 1 for a bad model.
 */
export async function openModelFor(path: string | undefined, io: Io): Promise<OpenedModel | number> {
  const file = path ?? bundledModelPath();
  const problem = modelPathProblem(file);
  if (problem !== undefined) {
    io.err(`kvplan: --model ${file}: ${problem}\n`);
    return Exit.usage;
  }
  const { openModel } = await import('../runtime/openModel.ts');
  try {
    return openModel(file);
  } catch (e) {
    if (!(e instanceof OnnxError || e instanceof CheckpointError || e instanceof TokenizerError)) throw e;
    io.err(`kvplan: ${e.message}\n`);
    return Exit.failed;
  }
}
