import { readFileSync, writeFileSync } from 'node:fs';
import { InvalidArgumentError } from 'commander';
import type { SourceFile } from '../dsl/source.ts';

/** Where a command writes; tests pass their own to capture the output. */
export interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

export const processIo: Io = {
  out: (text) => {
    process.stdout.write(text);
  },
  err: (text) => {
    process.stderr.write(text);
  },
};

/** Exit codes shared by every command. */
export const Exit = {
  ok: 0,
  /** A plan file has errors, or (fmt --check) is not in canonical form. */
  failed: 1,
  /** Bad command line, or a file that cannot be read. */
  usage: 2,
  /** A bug in kvplan itself. */
  internal: 70,
} as const;

const errnoWords: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EISDIR: 'is a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a component of the path is not a directory',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'file name too long',
  EMFILE: 'too many open files',
};

/** A short reason for a failed file operation, without Node's `ENOENT: ..., open 'x'` noise. */
export function describeFsError(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && errnoWords[code]) return errnoWords[code];
  if (e instanceof Error) return e.message;
  return String(e);
}

export type ReadResult = { readonly ok: true; readonly file: SourceFile } | { readonly ok: false };

/** Reads a plan file as UTF-8; on failure reports `kvplan: cannot read <path>: <reason>`. */
export function readPlanFile(path: string, io: Io): ReadResult {
  try {
    return { ok: true, file: { path, text: readFileSync(path, 'utf8') } };
  } catch (e) {
    io.err(`kvplan: cannot read ${path}: ${describeFsError(e)}\n`);
    return { ok: false };
  }
}

/** Writes a file; on failure reports `kvplan: cannot write <path>: <reason>` and returns false. */
export function writePlanFile(path: string, text: string, io: Io): boolean {
  try {
    writeFileSync(path, text, 'utf8');
    return true;
  } catch (e) {
    io.err(`kvplan: cannot write ${path}: ${describeFsError(e)}\n`);
    return false;
  }
}

const paramName = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Parses one `--set name=value` argument. The value is kept as text: the checker knows each
 * parameter's type and range and reports a bad value against the plan that declares it.
 */
export function parseSetting(arg: string): [string, string] {
  const eq = arg.indexOf('=');
  if (eq < 0) throw new InvalidArgumentError(`expected name=value, e.g. --set tau=0.8`);
  const name = arg.slice(0, eq).trim();
  const value = arg.slice(eq + 1).trim();
  if (name === '') throw new InvalidArgumentError(`the parameter name before '=' is missing`);
  if (!paramName.test(name)) throw new InvalidArgumentError(`'${name}' is not a parameter name`);
  if (value === '') throw new InvalidArgumentError(`the value of '${name}' after '=' is missing`);
  return [name, value];
}

/** Commander accumulator for a repeatable `--set`; a later setting of the same name wins. */
export function collectSetting(arg: string, previous: Map<string, string> | undefined): Map<string, string> {
  const [name, value] = parseSetting(arg);
  const out = new Map(previous ?? []);
  out.set(name, value);
  return out;
}

/** The worst of several exit codes: usage (2) over failed (1) over ok (0). */
export const worstExit = (codes: Iterable<number>): number => {
  let worst = 0;
  for (const c of codes) worst = Math.max(worst, c);
  return worst;
};
