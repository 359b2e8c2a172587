import { accessSync, constants, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InvalidArgumentError, Option } from 'commander';
import type { SourceFile } from '../dsl/source.ts';
import { describeFsError } from '../model/fsError.ts';
import { readSmallFile, SmallFileError } from '../model/smallFile.ts';

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

export type ReadResult = { readonly ok: true; readonly file: SourceFile } | { readonly ok: false };

/** Plans are a few KB; a larger file is not a plan (and would take long to check). */
export const maxPlanBytes = 1 << 20;

/**
 * Reads a plan file as UTF-8, bounded (a regular file of at most maxPlanBytes); on failure
 * reports `kvplan: cannot read <path>: <reason>`.
 */
export function readPlanFile(path: string, io: Io): ReadResult {
  try {
    // A UTF-8 byte-order mark, which some editors write, is not part of the plan.
    const text = readSmallFile(path, maxPlanBytes);
    return { ok: true, file: { path, text: text.startsWith('\ufeff') ? text.slice(1) : text } };
  } catch (e) {
    if (!(e instanceof SmallFileError)) throw e;
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

/**
 * Makes the output directory `path`, creating missing components one at a time (Node's recursive
 * mkdir never returns under /proc), and checks that what is there is a writable directory. On
 * failure reports `kvplan: -o <path>: <reason>` and returns false (a usage error: the path is
 * wrong, not the input).
 */
export function makeOutputDir(path: string, io: Io): boolean {
  const fail = (reason: string) => {
    io.err(`kvplan: -o ${path}: ${reason}\n`);
    return false;
  };
  const missing: string[] = [];
  for (let p = resolve(path); ; p = dirname(p)) {
    try {
      if (!statSync(p).isDirectory())
        return fail(p === resolve(path) ? 'not a directory' : `${p} is not a directory`);
      break;
    } catch (e) {
      if ((e as { code?: unknown }).code !== 'ENOENT' || dirname(p) === p) return fail(describeFsError(e));
      missing.unshift(p);
    }
  }
  for (const d of missing) {
    try {
      mkdirSync(d);
    } catch (e) {
      return fail(`cannot create ${d}: ${describeFsError(e)}`);
    }
  }
  try {
    accessSync(path, constants.W_OK);
  } catch (e) {
    return fail(`cannot write there: ${describeFsError(e)}`);
  }
  return true;
}

/**
 * Checks the output file `path` before any work: its directory exists and is writable, and the
 * path is not a directory (an existing file is replaced, as compilers do). Reports
 * `kvplan: -o <path>: <reason>` and returns false otherwise.
 */
export function checkOutputFile(path: string, io: Io): boolean {
  const fail = (reason: string) => {
    io.err(`kvplan: -o ${path}: ${reason}\n`);
    return false;
  };
  try {
    if (statSync(path).isDirectory()) return fail('is a directory (give a file name)');
  } catch (e) {
    if ((e as { code?: unknown }).code !== 'ENOENT') return fail(describeFsError(e));
  }
  const dir = dirname(resolve(path));
  try {
    if (!statSync(dir).isDirectory()) return fail(`${dir} is not a directory`);
    accessSync(dir, constants.W_OK);
  } catch (e) {
    return fail(`${dir}: ${describeFsError(e)}`);
  }
  return true;
}

/** Runs `write`; a file-system error becomes `kvplan: -o <path>: <reason>` and false. */
export function writingTo(path: string, io: Io, write: () => void): boolean {
  try {
    write();
    return true;
  } catch (e) {
    if (typeof (e as { code?: unknown } | null)?.code !== 'string') throw e;
    io.err(`kvplan: -o ${path}: cannot write: ${describeFsError(e)}\n`);
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

/** The repeatable `--set name=value` of the commands that take plans; `of` says whose parameters. */
export const setOption = (of = 'every plan that declares it'): Option =>
  new Option('--set <name=value>', `override a parameter of ${of} (repeatable)`).argParser(collectSetting);

/** The worst of several exit codes: usage (2) over failed (1) over ok (0). */
export const worstExit = (codes: Iterable<number>): number => {
  let worst = 0;
  for (const c of codes) worst = Math.max(worst, c);
  return worst;
};
