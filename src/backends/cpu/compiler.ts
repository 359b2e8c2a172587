/**
 * Compiles C source to a shared library with the system compiler, through a content-addressed
 * cache, and loads it. The artifact's name is the SHA-256 of everything that determines it
 * (source, the primitives header, compiler, flags, compiler version, the target CPU the
 * compiler resolves `-march=native` to, and the hash of the library it is linked against, if
 * any); a side file `<hash>.sha256` holds the artifact's own SHA-256. A plan's library is linked
 * against the primitives' library by soname, and openLibrary loads the primitives first. The
 * cache trusts its owner: the directory must belong to the current user and not be writable by
 * group or others, and so must every directory above it (root-owned ones and sticky
 * ones excepted). openLibrary loads the very bytes it verified (through a file descriptor), and a
 * library that fails to verify or load is deleted and rebuilt once. An interrupted compile leaves
 * no compiler running and no temporary file. See docs/cpu-backend.md.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  accessSync,
  chmodSync,
  closeSync,
  constants,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';
import { CompilerError } from './compilerError.ts';
import { openMpDefaults } from './openmp.ts';
import { resolveTarget } from './target.ts';

export interface CompileOptions {
  /** The compiler executable; default env KVPLAN_CC, then `cc`. */
  readonly cc?: string;
  /** Replaces DEFAULT_FLAGS; env KVPLAN_CFLAGS is appended either way. */
  readonly flags?: readonly string[];
  /** Default env KVPLAN_CACHE_DIR, then $XDG_CACHE_HOME/kvplan, then ~/.cache/kvplan. */
  readonly cacheDir?: string;
  /**
   * A library of this cache that the unit calls into (the primitives): linked by its soname,
   * loaded (and verified) before this one, and part of this one's cache key, so that a rebuilt
   * dependency never pairs with a library linked against another build of it.
   */
  readonly against?: CompiledLibrary;
}

export interface CompiledLibrary {
  /** Absolute path of the shared library. */
  readonly path: string;
  /** True when the library came from the cache. */
  readonly cached: boolean;
  /** The cache key (hex SHA-256), also the file's base name. */
  readonly hash: string;
  /** What it was built from, so that openLibrary can rebuild an entry that fails to load. */
  readonly source: string;
  readonly options: CompileOptions;
}

/** A library loaded through koffi. */
export type LibraryHandle = ReturnType<typeof koffi.load>;

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

/** The compiler's default time limit, in seconds (env KVPLAN_CC_TIMEOUT replaces it). */
const DEFAULT_TIMEOUT_S = 300;

/** The compiler's time limit in milliseconds: env KVPLAN_CC_TIMEOUT (seconds), else 300 s. */
function compileTimeoutMs(): number {
  const s = Number(process.env.KVPLAN_CC_TIMEOUT);
  return (Number.isFinite(s) && s > 0 ? s : DEFAULT_TIMEOUT_S) * 1000;
}

/**
 * The name a library of this cache carries in its DT_SONAME, and the file name of the primitives
 * next to a plan library written out by `kvplan compile -o` (the plan finds it there by rpath).
 */
export const soname = (hash: string): string => `kvplan-${hash}.so`;

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KVPLAN_CACHE_DIR) return env.KVPLAN_CACHE_DIR;
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg ? xdg : join(homedir(), '.cache'), 'kvplan');
}

function envFlags(): string[] {
  const extra = process.env.KVPLAN_CFLAGS;
  return extra ? extra.split(/\s+/).filter((f) => f.length > 0) : [];
}

/** The compiler and the flags a compile with `options` uses (env KVPLAN_CC and KVPLAN_CFLAGS). */
export function compilerSettings(options: CompileOptions = {}): { cc: string; flags: string[] } {
  return {
    cc: options.cc ?? (process.env.KVPLAN_CC || 'cc'),
    flags: [...(options.flags ?? DEFAULT_FLAGS), ...envFlags()],
  };
}

const versions = new Map<string, string>();

/** The compiler's `--version` banner; a missing compiler is a CompilerError. */
export function compilerVersion(cc: string): string {
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

/** The sticky bit: in such a directory only an entry's owner may rename or remove it. */
const STICKY = 0o1000;

const modeText = (mode: number) => (mode & 0o7777).toString(8).padStart(3, '0');

/**
 * Every directory whose owner could replace the cache: the ancestors of the path as given (one
 * of them may be a symbolic link, which its directory's owner can repoint) and of the path with
 * links resolved.
 */
function ancestors(dir: string): string[] {
  const out = new Set<string>();
  for (const start of [resolve(dir), realpathSync(dir)]) {
    for (let p = dirname(start); !out.has(p); p = dirname(p)) out.add(p);
  }
  return [...out];
}

/**
 * Creates the cache directory (mode 0700) or checks that an existing one is private: owned by
 * `uid` (default: this process's user) and not writable by group or others. The directories
 * above it must be owned by `uid` or root, and not writable by group or others unless sticky
 * (like /tmp): whoever can rename an ancestor can put their own library where ours was.
 */
export function prepareCacheDir(dir: string, uid: number | undefined = process.getuid?.()): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new CompilerError(`cannot create the kvplan cache directory ${dir}: ${(err as Error).message}`);
  }
  const st = statSync(dir);
  if (!st.isDirectory()) throw new CompilerError(`the kvplan cache path ${dir} is not a directory`);
  const refuse = (why: string, fix: string) =>
    new CompilerError(
      `refusing to use the kvplan cache directory ${dir}: ${why}; ${fix}set KVPLAN_CACHE_DIR to a private directory`,
    );
  if (uid !== undefined && st.uid !== uid) {
    throw refuse(`it is owned by uid ${st.uid}, not by this user (uid ${uid})`, '');
  }
  if ((st.mode & 0o022) !== 0) {
    throw refuse(
      `it is writable by group or others (mode ${modeText(st.mode & 0o777)})`,
      `run \`chmod 700 ${dir}\` or `,
    );
  }
  for (const parent of ancestors(dir)) {
    const p = statSync(parent);
    if (uid !== undefined && p.uid !== uid && p.uid !== 0) {
      throw refuse(
        `the directory above it, ${parent}, is owned by uid ${p.uid} (neither this user, uid ${uid}, nor root), who could replace the cache`,
        '',
      );
    }
    if ((p.mode & 0o022) !== 0 && (p.mode & STICKY) === 0) {
      throw refuse(
        `the directory above it, ${parent}, is writable by group or others without the sticky bit (mode ${modeText(p.mode)}), so another user could replace the cache`,
        `run \`chmod go-w ${parent}\` or `,
      );
    }
  }
  removeStaleTemps(dir);
}

/** Temporary names: `.<name>.<pid>.<12 hex>.so` from a compile, `….tmp` from atomicWrite. */
const TEMP_NAME = /^\..+\.\d+\.[0-9a-f]{12}\.(so|tmp)$/;
const swept = new Set<string>();

/**
 * Removes temporary files a killed process left behind (once per directory and process). Only
 * old ones: a young one may belong to a compile still running in another process.
 */
function removeStaleTemps(dir: string): void {
  if (swept.has(dir)) return;
  swept.add(dir);
  const now = Date.now();
  // Older than twice the time limit: an orphan of a dead run, not a compile still running (in
  // this process or another, which may have the default limit where this one has less).
  const stale = 2 * Math.max(compileTimeoutMs(), DEFAULT_TIMEOUT_S * 1000);
  for (const name of readdirSync(dir)) {
    if (!TEMP_NAME.test(name)) continue;
    const file = join(dir, name);
    try {
      if (now - statSync(file).mtimeMs > stale) rmSync(file, { force: true });
    } catch {
      // removed by another process meanwhile
    }
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

/** The first executable `name` on PATH (a name with a slash is taken as it is), or undefined. */
export function findOnPath(name: string): string | undefined {
  const dirs = name.includes('/') ? [''] : (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const d of dirs) {
    const file = d ? join(d, name) : name;
    try {
      accessSync(file, constants.X_OK);
      return resolve(file);
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Runs `"$@"` (the compiler) in its own session and waits for it; on SIGTERM, SIGINT or SIGHUP
 * it kills that whole session (the driver and its cc1, as and ld) and removes the output file $1.
 * The compiler has a session of its own so that a Ctrl-C reaches only this guard, which cleans up.
 * The handler first ignores further signals (the parent-death signal comes once per thread of the
 * dying Node process) and points its output at /dev/null: the shell reports the killed compiler
 * ("Terminated") on stderr, a pipe whose reader is gone, and SIGPIPE would end it before the rm.
 */
export const GUARD =
  'out=$1; shift; c=; ' +
  'trap \'trap "" HUP INT TERM; exec >/dev/null 2>&1; ' +
  '[ -n "$c" ] && kill -TERM -"$c" && wait "$c"; rm -f -- "$out"; exit 143\' HUP INT TERM; ' +
  'setsid "$@" & c=$!; wait "$c"';

let pdeathsig: boolean | undefined;
const hasPdeathsig = (): boolean =>
  (pdeathsig ??= process.platform === 'linux' && findOnPath('setpriv') !== undefined);

/**
 * The command and arguments that run `command args` under `setpriv --pdeathsig TERM` where
 * util-linux has it (Linux), so that the child hears of this process's death by any signal, even
 * SIGKILL: a synchronous child (execFileSync, spawnSync) blocks this process's own signal
 * handlers, and outlives it unless told. Elsewhere they are returned as they are.
 */
export function endsWithThisProcess(command: string, args: readonly string[]): [string, string[]] {
  return hasPdeathsig() ? ['setpriv', ['--pdeathsig', 'TERM', command, ...args]] : [command, [...args]];
}

let guarded: boolean | undefined;

/**
 * The command that runs the compiler. The compile runs synchronously, so no signal handler of
 * this process can run while it does; where util-linux is present a guard shell does the
 * cleaning instead, started by endsWithThisProcess. Elsewhere the compiler runs directly.
 */
function compilerCommand(cc: string, args: readonly string[], out: string): [string, string[]] {
  guarded ??= hasPdeathsig() && findOnPath('setsid') !== undefined;
  if (!guarded) return [cc, [...args]];
  return endsWithThisProcess('sh', ['-c', GUARD, 'kvplan-cc-guard', out, cc, ...args]);
}

/** Why a compile failed, in words, from execFileSync's error. */
function failure(
  cc: string,
  source: string,
  e: NodeJS.ErrnoException & { stderr?: string; status?: number | null },
): CompilerError {
  if (e.code === 'ENOENT') {
    return new CompilerError(`no C compiler found (tried \`${cc}\`); install gcc or set KVPLAN_CC`);
  }
  const stderr = typeof e.stderr === 'string' ? e.stderr : '';
  if (e.code === 'ETIMEDOUT') {
    // A plan's unit names each kernel it renders in a comment; the primitives' unit has none.
    const kernels = source.match(/\/\* kernel /g)?.length ?? 0;
    const size = `${source.split('\n').length} lines${kernels > 0 ? `, ${kernels} kernels` : ''}`;
    return new CompilerError(
      `C compilation timed out: ${cc} ran past the limit of ${compileTimeoutMs() / 1000} s and was stopped ` +
        `(the unit has ${size}); set KVPLAN_CC_TIMEOUT=<seconds> to allow longer`,
      stderr,
    );
  }
  const lines = stderr.split('\n');
  const head = lines.slice(0, STDERR_LINES).join('\n');
  const more = lines.length > STDERR_LINES ? `\n... (${lines.length - STDERR_LINES} more lines)` : '';
  return new CompilerError(
    `C compilation failed (${cc} exited with ${e.status ?? e.code ?? 'an error'}):\n${head}${more}`,
    stderr,
  );
}

/**
 * Compiles `source` (a whole translation unit; it may #include "kvplan_cpu.h") to a shared
 * library, or returns the cached one. With `options.against`, the unit is linked against that
 * library by its soname, with an rpath of `$ORIGIN`. Throws CompilerError when no compiler is
 * found, when it fails (with the first lines of its diagnostics) or times out, or when the cache
 * directory is unsafe.
 */
export function compileLibrary(source: string, options: CompileOptions = {}): CompiledLibrary {
  const { cc, flags } = compilerSettings(options);
  const dir = options.cacheDir ?? defaultCacheDir();
  const version = compilerVersion(cc);
  const header = readFileSync(HEADER, 'utf8');
  const target = resolveTarget(cc, flags).key;
  const against = options.against;
  const hash = cacheKey([
    'kvplan-cpu-2',
    source,
    header,
    cc,
    flags.join('\u0000'),
    version,
    target,
    against?.hash ?? '',
  ]);
  prepareCacheDir(dir);
  const path = join(dir, `${hash}.so`);
  const sumPath = join(dir, `${hash}.sha256`);
  const built = { path, hash, source, options };
  if (intact(path, sumPath)) return { ...built, cached: true };

  // The source is kept next to its library under the same name (for diagnostics and for
  // inspection); its path is the same for every build of this hash, so the artifact is too.
  atomicWrite(dir, `${hash}.c`, source);
  const src = join(dir, `${hash}.c`);
  const out = join(dir, `.${hash}.${process.pid}.${randomBytes(6).toString('hex')}.so`);
  // The dependency is linked by its soname (DT_NEEDED), never by its path: openLibrary loads it
  // first, from the bytes it verified, and the dynamic loader then matches it by that name.
  const link = against ? [against.path, '-Wl,-rpath,$ORIGIN'] : [];
  const [command, args] = compilerCommand(
    cc,
    [...flags, `-Wl,-soname,${soname(hash)}`, '-I', INCLUDE_DIR, src, '-o', out, ...link, '-lm'],
    out,
  );
  try {
    try {
      execFileSync(command, args, {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: compileTimeoutMs(),
        maxBuffer: 64 * 1024 * 1024,
      });
    } catch (err) {
      throw failure(cc, source, err as NodeJS.ErrnoException);
    }
    chmodSync(out, 0o700);
    // The side file goes first: a reader that sees the new library also sees its checksum.
    atomicWrite(dir, `${hash}.sha256`, `${sha256(readFileSync(out))}\n`);
    renameSync(out, path);
  } finally {
    rmSync(out, { force: true });
  }
  return { ...built, cached: false };
}

type Opened =
  | { readonly ok: true; readonly lib: LibraryHandle }
  | { readonly ok: false; readonly reason: string };

/**
 * The libraries this process loaded, by path. Each stays loaded, and the descriptor it was loaded
 * through stays open: the dynamic loader remembers a library by the name it was opened under,
 * /proc/self/fd/<n>, and would hand the old library to a later dlopen of a reused <n>.
 */
const loadedLibraries = new Map<string, LibraryHandle>();

/**
 * Loads the library from the bytes it verified: the file is opened once, checked (a regular file
 * of this user, writable by no one else, whose content hashes to the side file's checksum), and
 * the dynamic loader is handed that same open file as /proc/self/fd/<n>, so that a file renamed
 * into place after the check is never the one loaded. (Without /proc the path is loaded after
 * the check; the private directory is then what keeps it in place.)
 */
function loadVerified(lib: CompiledLibrary): Opened {
  let fd: number;
  try {
    fd = openSync(lib.path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  let keep = false;
  try {
    const st = fstatSync(fd);
    const uid = process.getuid?.();
    if (!st.isFile()) return { ok: false, reason: 'it is not a regular file' };
    if ((uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) {
      return { ok: false, reason: `it is owned by uid ${st.uid} with mode ${modeText(st.mode & 0o777)}` };
    }
    let want = '';
    try {
      want = readFileSync(join(dirname(lib.path), `${lib.hash}.sha256`), 'utf8').trim();
    } catch {
      return { ok: false, reason: 'its checksum file is missing' };
    }
    if (sha256(readFileSync(fd)) !== want) return { ok: false, reason: 'its checksum does not match' };
    try {
      openMpDefaults();
      const handle = koffi.load(existsSync('/proc/self/fd') ? `/proc/self/fd/${fd}` : lib.path);
      keep = true;
      return { ok: true, lib: handle };
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    }
  } finally {
    if (!keep) closeSync(fd);
  }
}

/** Loads the library once per process and checks that it defines each of `symbols`. */
function tryOpen(lib: CompiledLibrary, symbols: readonly string[]): Opened {
  const known = loadedLibraries.get(lib.path);
  const opened = known ? ({ ok: true, lib: known } as const) : loadVerified(lib);
  if (!opened.ok) return opened;
  for (const name of symbols) {
    try {
      // Only looked up, never called: the prototype does not matter.
      opened.lib.func(`void ${name}(void)`);
    } catch {
      // Left loaded (functions bound from it may still be in use); a rebuild loads afresh.
      loadedLibraries.delete(lib.path);
      return { ok: false, reason: `it has no function ${name}` };
    }
  }
  loadedLibraries.set(lib.path, opened.lib);
  return opened;
}

/**
 * Loads a compiled library and checks that it defines `symbols`. A library that does not verify
 * or load (a corrupt cache entry: a bad ELF file, missing functions, a checksum that no longer
 * matches) is deleted and rebuilt once, with a warning on stderr; a rebuilt one that still fails
 * is a CompilerError.
 */
export function openLibrary(lib: CompiledLibrary, symbols: readonly string[]): LibraryHandle {
  // A library linked against another finds it only among those already loaded (by soname).
  if (lib.options.against) openLibrary(lib.options.against, []);
  const first = tryOpen(lib, symbols);
  if (first.ok) return first.lib;
  process.stderr.write(
    `kvplan: warning: the compiled library ${lib.path} cannot be loaded (${first.reason}); rebuilding it\n`,
  );
  rmSync(lib.path, { force: true });
  rmSync(join(dirname(lib.path), `${lib.hash}.sha256`), { force: true });
  const rebuilt = compileLibrary(lib.source, lib.options);
  const second = tryOpen(rebuilt, symbols);
  if (second.ok) return second.lib;
  throw new CompilerError(`the freshly compiled library ${rebuilt.path} cannot be loaded: ${second.reason}`);
}
