/**
 * Reads the small text files a command is handed (plans, model configs, JSON side files) with a
 * bound: only a regular file (a device such as /dev/zero never ends), of at most `maxBytes`,
 * read through one descriptor so that what was measured is what is read.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** Why a small file could not be read; `code` is the errno code when the system refused. */
export class SmallFileError extends Error {
  override readonly name = 'SmallFileError';
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** Plans and configs are a few KB; this bounds a hostile or mistaken one. */
export const maxSmallFileBytes = 4 << 20;

export function readSmallFile(path: string, maxBytes = maxSmallFileBytes): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new SmallFileError((e as Error).message, (e as { code?: string }).code);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new SmallFileError('is a directory', 'EISDIR');
    if (!st.isFile()) throw new SmallFileError('not a regular file');
    if (st.size > maxBytes)
      throw new SmallFileError(
        `${st.size.toLocaleString('en-US')} bytes, more than the ${maxBytes.toLocaleString('en-US')}-byte limit`,
      );
    // One byte more than fstat said: a file that grew since is noticed, not read on and on.
    const buf = Buffer.alloc(st.size + 1);
    let n = 0;
    for (let r = 1; r > 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, n);
    if (n > st.size) throw new SmallFileError('changed while being read');
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
