/**
 * A journal of a `policies` run: each plan's pass is written to it as it ends, so that the full
 * size (four to five hours on 2 cores, more than a working session) can run in parts. A run given
 * the journal of an earlier one runs only the passes it does not hold, and writes the results when
 * it holds them all. A journal is only resumed by a run of the same settings and the same sources
 * (src/, bench/, examples/): one set of numbers comes from one build of the code.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { replaceFile } from './save.ts';

const REPO = fileURLToPath(new URL('../', import.meta.url));

/** What a run measures: a journal is resumed only by a run of the same settings. */
export interface JournalSettings {
  readonly model: unknown;
  readonly prompt_length: number;
  readonly gen_length: number;
  readonly block: number;
  readonly prompts: number;
  readonly repeats: number;
  /** The plans of the run, baseline first. */
  readonly plans: readonly string[];
  /** The CPU the passes run on. */
  readonly machine: unknown;
  /** The hash of the sources the numbers come from (sourcesHash). */
  readonly sources: string;
}

/** One plan's pass, as the suite keeps it (its roofline time already costed on the machine around it). */
export interface PassRecord {
  readonly ms: number;
  readonly roofMs: number;
  readonly flops: number;
  readonly probe: number;
  readonly stageMs: number;
  readonly probeMs: number;
  readonly generated: number;
  readonly outputs: readonly (readonly number[])[];
  readonly peak: number;
  readonly around: readonly [
    { readonly peakFlops: number; readonly bandwidth: number },
    { readonly peakFlops: number; readonly bandwidth: number },
  ];
}

/** One process's part of the run: when it ran, how busy the rest of the machine was, what it ran. */
export interface Segment {
  /** The git revision of the checkout (null outside one); its sources may hold changes not committed. */
  readonly revision: string | null;
  readonly started: string;
  ended: string;
  other_processes_busy_cores: number | null;
  readonly passes: string[];
}

interface JournalFile {
  readonly kind: 'kvplan policies journal';
  readonly settings: JournalSettings;
  readonly segments: Segment[];
  /** `<plan>#<pass>` -> its record. */
  readonly passes: Record<string, PassRecord>;
}

/** A journal that cannot be used for this run: the message says why and what to do. */
export class JournalError extends Error {}

/**
 * The hash of the files a run's numbers depend on: every .ts, .c, .h and .kvp file under src/,
 * bench/ and examples/ of `repo`, by path and content (results and journals are not among them).
 */
export function sourcesHash(repo: string = REPO): string {
  const h = createHash('sha256');
  for (const dir of ['src', 'bench', 'examples']) {
    const files = readdirSync(join(repo, dir), { recursive: true, encoding: 'utf8' })
      .filter((f) => /\.(ts|c|h|kvp)$/.test(f))
      .sort();
    for (const f of files) {
      const path = `${dir}/${f}`;
      h.update(`${path}\0`);
      h.update(readFileSync(join(repo, path)));
      h.update('\0');
    }
  }
  return h.digest('hex');
}

/** The checkout's git revision, or null (no git, or not a checkout). */
function gitRevision(): string | null {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO, encoding: 'utf8', stdio: 'pipe' }).trim();
  } catch {
    return null;
  }
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null;
const isNumbers = (x: unknown): boolean => Array.isArray(x) && x.every((v) => Number.isFinite(v));

/** A record as record() writes it: a pass read back must not fail later, in the table. */
function isPassRecord(r: unknown): r is PassRecord {
  if (!isObject(r)) return false;
  const numbers = ['ms', 'roofMs', 'flops', 'probe', 'stageMs', 'probeMs', 'generated', 'peak'];
  return (
    numbers.every((n) => Number.isFinite(r[n])) &&
    Array.isArray(r.outputs) &&
    r.outputs.every(isNumbers) &&
    Array.isArray(r.around) &&
    r.around.length === 2 &&
    r.around.every((m) => isObject(m) && Number.isFinite(m.peakFlops) && Number.isFinite(m.bandwidth))
  );
}

const key = (plan: string, pass: number) => `${plan}#${pass}`;

/** The setting where two runs differ, or undefined. */
function differing(a: JournalSettings, b: JournalSettings): string | undefined {
  const names = Object.keys(a) as (keyof JournalSettings)[];
  return names.find((n) => JSON.stringify(a[n]) !== JSON.stringify(b[n]));
}

export class Journal {
  private constructor(
    readonly path: string,
    private readonly file: JournalFile,
    /** This process's segment. */
    private readonly segment: Segment,
  ) {}

  /**
   * The journal at `path` for a run of `settings`: a new one when there is no file, else the file's,
   * which must be a journal of the same settings (JournalError otherwise). Nothing is written until
   * a pass is recorded.
   */
  static open(
    path: string,
    settings: JournalSettings,
    now: Date = new Date(),
    revision: string | null = gitRevision(),
  ): Journal {
    const segment: Segment = {
      revision,
      started: now.toISOString(),
      ended: now.toISOString(),
      other_processes_busy_cores: null,
      passes: [],
    };
    if (!existsSync(path))
      return new Journal(
        path,
        { kind: 'kvplan policies journal', settings, segments: [], passes: {} },
        segment,
      );
    let file: JournalFile;
    try {
      file = JSON.parse(readFileSync(path, 'utf8')) as JournalFile;
    } catch (e) {
      throw new JournalError(`${path}: not a journal of a policies run (${(e as Error).message})`);
    }
    if (
      file?.kind !== 'kvplan policies journal' ||
      !isObject(file.settings) ||
      !Array.isArray(file.segments) ||
      !isObject(file.passes)
    )
      throw new JournalError(`${path}: not a journal of a policies run`);
    const bad = Object.entries(file.passes).find(([, r]) => !isPassRecord(r));
    if (bad) throw new JournalError(`${path}: the pass ${bad[0]} is not a pass record`);
    const diff = differing(settings, file.settings);
    if (diff === 'sources') {
      const revisions = [...new Set(file.segments.map((s) => s?.revision).filter(Boolean))];
      throw new JournalError(
        `${path}: written by other sources (src/, bench/ or examples/ differ from the run that began it); ` +
          `resume it from a checkout of that revision${revisions.length > 0 ? ` (${revisions.join(', ')})` : ''}, ` +
          'or start a new journal',
      );
    }
    if (diff !== undefined)
      throw new JournalError(
        `${path}: begun with another ${diff} (${JSON.stringify(file.settings[diff as keyof JournalSettings])}); ` +
          'resume it with the options that began it, or start a new journal',
      );
    return new Journal(path, file, segment);
  }

  /** The earlier processes' segments and this one's, once it has recorded a pass. */
  get segments(): readonly Segment[] {
    return this.file.segments;
  }

  get(plan: string, pass: number): PassRecord | undefined {
    return this.file.passes[key(plan, pass)];
  }

  /** Passes of the run the journal does not hold yet. */
  missing(): number {
    const { plans, repeats } = this.file.settings;
    let n = 0;
    for (let pass = 0; pass < repeats; pass++) for (const p of plans) if (!this.get(p, pass)) n++;
    return n;
  }

  /**
   * Records a pass and writes the journal (to a temporary name, then renamed: a run stopped
   * mid-write leaves the last journal whole). `busy` is the other processes' load so far.
   */
  record(plan: string, pass: number, r: PassRecord, busy: number | null, now: Date = new Date()): void {
    this.file.passes[key(plan, pass)] = r;
    if (!this.file.segments.includes(this.segment)) this.file.segments.push(this.segment);
    this.segment.passes.push(key(plan, pass));
    this.segment.ended = now.toISOString();
    this.segment.other_processes_busy_cores = busy;
    replaceFile(this.path, `${JSON.stringify(this.file)}\n`);
  }
}
