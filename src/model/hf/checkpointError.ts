/**
 * A checkpoint that cannot be used; the message names the file (and the tensor or key). Its own
 * module so that the CLI can recognise it without loading the checkpoint readers.
 */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
}
