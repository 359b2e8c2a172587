/**
 * Runs NVIDIA's ptxas on generated PTX: `ptxas -arch=<sm> -v -o <tmp>.cubin <file>.ptx`, through
 * spawnSync with an argument array (no shell), and parses what `-v` reports per entry: registers,
 * spill stores/loads, stack frame, static shared memory, barriers. Failures become a PtxasError
 * that names the file, line and the offending PTX line. Results are memoised by the SHA-256 of
 * (text, arch), so a kernel text shared by many plans is assembled once.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { Arch } from './kernels/ptx.ts';

export interface PtxasReport {
  readonly entry: string;
  readonly arch: string;
  readonly registers: number;
  readonly spillStores: number;
  readonly spillLoads: number;
  readonly stackFrame: number;
  /** Static shared memory (the kernels use dynamic shared memory, reported by the generator). */
  readonly sharedStatic: number;
  readonly barriers: number;
}

export class PtxasError extends Error {
  override readonly name = 'PtxasError';
  constructor(
    message: string,
    /** The kernel (file) name, when known. */
    readonly file?: string,
    /** 1-based line of the first error in the PTX text. */
    readonly line?: number,
    readonly stderr?: string,
  ) {
    super(message);
  }
}

/** The ptxas executable: env KVPLAN_PTXAS, else the first `ptxas` on PATH; null when absent. */
export function findPtxas(env: NodeJS.ProcessEnv = process.env): string | null {
  const candidates = env.KVPLAN_PTXAS
    ? [env.KVPLAN_PTXAS]
    : (env.PATH ?? '')
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, 'ptxas'));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not here
    }
  }
  return null;
}

/** Parses `ptxas -v` output into one report per entry. */
export function parsePtxasVerbose(text: string): PtxasReport[] {
  const out: PtxasReport[] = [];
  let cur: { entry: string; arch: string; stack: number; ss: number; sl: number } | undefined;
  for (const line of text.split('\n')) {
    const c = /Compiling entry function '([^']+)' for '([^']+)'/.exec(line);
    if (c) {
      cur = { entry: c[1] as string, arch: c[2] as string, stack: 0, ss: 0, sl: 0 };
      continue;
    }
    const f = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line);
    if (f && cur) {
      cur.stack = Number(f[1]);
      cur.ss = Number(f[2]);
      cur.sl = Number(f[3]);
      continue;
    }
    const u = /Used (\d+) registers/.exec(line);
    if (u && cur) {
      out.push({
        entry: cur.entry,
        arch: cur.arch,
        registers: Number(u[1]),
        spillStores: cur.ss,
        spillLoads: cur.sl,
        stackFrame: cur.stack,
        sharedStatic: Number(/(\d+) bytes smem/.exec(line)?.[1] ?? 0),
        barriers: Number(/used (\d+) barriers/.exec(line)?.[1] ?? 0),
      });
      cur = undefined;
    }
  }
  return out;
}

const memo = new Map<string, PtxasReport[]>();

/**
 * Assembles one PTX module for `arch` and returns the per-entry reports. Throws PtxasError when
 * ptxas is missing or rejects the text (message: `<name>.ptx:<line>: <error>` and the line).
 */
export function assemble(
  ptx: string,
  arch: Arch | string,
  name = 'kernel',
  ptxas = findPtxas(),
): PtxasReport[] {
  if (!ptxas)
    throw new PtxasError(
      'ptxas not found: install the CUDA toolkit (ptxas on PATH) or set KVPLAN_PTXAS to its path',
      name,
    );
  const key = createHash('sha256').update(arch).update('\0').update(ptx).digest('hex');
  const hit = memo.get(key);
  if (hit) return hit;
  const dir = mkdtempSync(join(tmpdir(), 'kvplan-ptxas-'));
  try {
    const file = join(dir, `${name}.ptx`);
    writeFileSync(file, ptx);
    const r = spawnSync(ptxas, [`-arch=${arch}`, '-v', '-o', join(dir, `${name}.cubin`), file], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    if (r.error) throw new PtxasError(`could not run ${ptxas}: ${r.error.message}`, name);
    const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    if (r.status !== 0) {
      const m =
        /line (\d+); (?:error|fatal)\s*:\s*(.*)/.exec(text) ?? /(?:error|fatal)\s*:\s*(.*)/.exec(text);
      const line = m && m.length > 2 ? Number(m[1]) : undefined;
      const msg = (m && (m.length > 2 ? m[2] : m[1])) ?? text.trim();
      const src = line ? ptx.split('\n')[line - 1]?.trim() : undefined;
      throw new PtxasError(
        `${name}.ptx${line ? `:${line}` : ''}: ${msg}${src ? `\n  ${line} | ${src}` : ''}`,
        name,
        line,
        text,
      );
    }
    const reports = parsePtxasVerbose(text);
    memo.set(key, reports);
    return reports;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
