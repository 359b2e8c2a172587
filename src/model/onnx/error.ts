/** A model file that cannot be used: the message names the file and what is wrong with it. */
export class OnnxError extends Error {
  override readonly name = 'OnnxError';
}
