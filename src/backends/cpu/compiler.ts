/**
 * Compiles C source to a shared library with the system compiler, through a content-addressed
 * cache. The artifact's name is the SHA-256 of everything that determines it (source, the
 * primitives header, compiler, flags, compiler version); a side file `<hash>.sha256` holds the
 * artifact's own SHA-256, checked on every hit, so a tampered or truncated library is rebuilt,
 * never loaded. The cache directory must belong to the current user and must not be writable by
 * group or others. The cache holds `<hash>.c` (the source), `<hash>.so` and `<hash>.sha256`. See
 * docs/cpu-backend.md.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

export interface CompileOptions {
  /** The compiler executable; default env KVPLAN_CC, then `cc`. */
  readonly cc?: string;
  /** Replaces DEFAULT_FLAGS; env KVPLAN_CFLAGS is appended either way. */
  readonly flags?: readonly string[];
  /** Default env KVPLAN_CACHE_DIR, then $XDG_CACHE_HOME/kvplan, then ~/.cache/kvplan. */
  readonly cacheDir?: string;
}

export interface CompiledLibrary {
  /** Absolute path of the shared library. */
  readonly path: string;
  /** True when the library came from the cache. */
  readonly cached: boolean;
  /** The cache key (hex SHA-256), also the file's base name. */
  readonly hash: string;
}

export const DEFAULT_FLAGS: readonly string[] = [
  '-O3',
  '-march=native',
  '-fopenmp',
  '-fPIC',
  '-shared',
  '-std=c11',
];

/** The directory holding kvplan_cpu.h, passed to the compiler with -I. */
export const INCLUDE_DIR = fileURLToPath(new URL('./c/', import.meta.url));
const HEADER = join(INCLUDE_DIR, 'kvplan_cpu.h');

/** Lines of compiler diagnostics kept in a CompilerError. */
const STDERR_LINES = 40;

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KVPLAN_CACHE_DIR) return env.KVPLAN_CACHE_DIR;
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg ? xdg : join(homedir(), '.cache'), 'kvplan');
}

function envFlags(): string[] {
  const extra = process.env.KVPLAN_CFLAGS;
  return extra ? extra.split(/\s+/).filter((f) => f.length > 0) : [];
}

const versions = new Map<string, string>();

/** The compiler's `--version` banner; a missing compiler is a CompilerError. */
function compilerVersion(cc: string): string {
  const known = versions.get(cc);
  if (known !== undefined) return known;
  let out: string;
  try {
    out = execFileSync(cc, ['--version'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 30_000,
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES') {
      throw new CompilerError(`no C compiler found (tried \`${cc}\`); install gcc or set KVPLAN_CC`);
    }
    throw new CompilerError(
      `the C compiler \`${cc}\` failed to report its version: ${(err as Error).message}`,
    );
  }
  versions.set(cc, out);
  return out;
}

/**
 * Creates the cache directory (mode 0700) or checks that an existing one is private: owned by
 * `uid` (default: this process's user) and not writable by group or others.
 */
export function prepareCacheDir(dir: string, uid: number | undefined = process.getuid?.()): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new CompilerError(`cannot create the kvplan cache directory ${dir}: ${(err as Error).message}`);
  }
  const st = statSync(dir);
  if (!st.isDirectory()) throw new CompilerError(`the kvplan cache path ${dir} is not a directory`);
  if (uid !== undefined && st.uid !== uid) {
    throw new CompilerError(
      `refusing to use the kvplan cache directory ${dir}: it is owned by uid ${st.uid}, not by this user (uid ${uid}); ` +
        'set KVPLAN_CACHE_DIR to a private directory',
    );
  }
  if ((st.mode & 0o022) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
    throw new CompilerError(
      `refusing to use the kvplan cache directory ${dir}: it is writable by group or others (mode ${mode}); ` +
        `run \`chmod 700 ${dir}\` or set KVPLAN_CACHE_DIR to a private directory`,
    );
  }
}

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The cache key: every input that determines the artifact, length-prefixed. */
function cacheKey(parts: readonly string[]): string {
  const h = createHash('sha256');
  for (const p of parts) {
    const b = Buffer.from(p, 'utf8');
    h.update(`${b.length}:`);
    h.update(b);
  }
  return h.digest('hex');
}

/** True when the stored artifact exists and its SHA-256 matches the side file. */
function intact(so: string, sum: string): boolean {
  if (!existsSync(so) || !existsSync(sum)) return false;
  try {
    return sha256(readFileSync(so)) === readFileSync(sum, 'utf8').trim();
  } catch {
    return false;
  }
}

/** Writes data next to its final name and renames it into place (atomic within the directory). */
function atomicWrite(dir: string, name: string, data: string | Buffer): void {
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  writeFileSync(tmp, data, { mode: 0o600 });
  renameSync(tmp, join(dir, name));
}

/**
 * Compiles `source` (a whole translation unit; it may #include "kvplan_cpu.h") to a shared
 * library, or returns the cached one. Throws CompilerError when no compiler is found, when it
 * fails (with the first lines of its diagnostics), or when the cache directory is unsafe.
 */
export function compileLibrary(source: string, opts: CompileOptions = {}): CompiledLibrary {
  const cc = opts.cc ?? (process.env.KVPLAN_CC || 'cc');
  const flags = [...(opts.flags ?? DEFAULT_FLAGS), ...envFlags()];
  const dir = opts.cacheDir ?? defaultCacheDir();
  const version = compilerVersion(cc);
  const header = readFileSync(HEADER, 'utf8');
  const hash = cacheKey(['kvplan-cpu-1', source, header, cc, flags.join('\u0000'), version]);
  prepareCacheDir(dir);
  const path = join(dir, `${hash}.so`);
  const sumPath = join(dir, `${hash}.sha256`);
  if (intact(path, sumPath)) return { path, cached: true, hash };

  // The source is kept next to its library under the same name (for diagnostics and for
  // inspection); its path is the same for every build of this hash, so the artifact is too.
  atomicWrite(dir, `${hash}.c`, source);
  const src = join(dir, `${hash}.c`);
  const out = join(dir, `.${hash}.${process.pid}.${randomBytes(6).toString('hex')}.so`);
  try {
    try {
      execFileSync(cc, [...flags, '-I', INCLUDE_DIR, src, '-o', out, '-lm'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 300_000,
        maxBuffer: 64 * 1024 * 1024,
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string; status?: number | null };
      if (e.code === 'ENOENT') {
        throw new CompilerError(`no C compiler found (tried \`${cc}\`); install gcc or set KVPLAN_CC`);
      }
      const stderr = typeof e.stderr === 'string' ? e.stderr : '';
      const lines = stderr.split('\n');
      const head = lines.slice(0, STDERR_LINES).join('\n');
      const more = lines.length > STDERR_LINES ? `\n... (${lines.length - STDERR_LINES} more lines)` : '';
      throw new CompilerError(
        `C compilation failed (${cc} exited with ${e.status ?? e.code ?? 'an error'}):\n${head}${more}`,
        stderr,
      );
    }
    chmodSync(out, 0o700);
    // The side file goes first: a reader that sees the new library also sees its checksum.
    atomicWrite(dir, `${hash}.sha256`, `${sha256(readFileSync(out))}\n`);
    renameSync(out, path);
  } finally {
    rmSync(out, { force: true });
  }
  return { path, cached: false, hash };
}
