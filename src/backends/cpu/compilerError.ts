/**
 * The C toolchain or the library cache failed (no compiler, a compile error, a cache directory the
 * user must fix). Its own module so that the CLI can recognise it without loading the compiler,
 * which loads koffi.
 */
export class CompilerError extends Error {
  constructor(
    message: string,
    /** The compiler's diagnostics, when it ran. */
    readonly stderr?: string,
  ) {
    super(message);
    this.name = 'CompilerError';
  }
}
