import { statSync } from 'node:fs';

const errnoWords: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EISDIR: 'is a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a component of the path is not a directory',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'file name too long',
  EMFILE: 'too many open files',
  EEXIST: 'already exists',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
};

/** A short reason for a failed file operation, without Node's `ENOENT: ..., open 'x'` noise. */
export function describeFsError(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && errnoWords[code]) return errnoWords[code];
  if (e instanceof Error) return e.message;
  return String(e);
}

/**
 * Why a path cannot be a model: missing, unreadable, or neither a file nor a directory (a device
 * such as /dev/zero would be read without end); undefined when it may be one.
 */
export function modelPathProblem(path: string): string | undefined {
  try {
    const st = statSync(path);
    return st.isFile() || st.isDirectory() ? undefined : 'not a regular file or a directory';
  } catch (e) {
    return describeFsError(e);
  }
}
