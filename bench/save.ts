/**
 * Where a benchmark's results go. The committed files (bench/results/<suite>.json, and
 * docs/results.md for quality) are the numbers the docs quote: a run replaces them only when asked
 * with --write, so a quick run at another size (`quality --n 2`) cannot. `--out <file>` writes
 * the JSON elsewhere; with neither, the JSON is printed after the suite's table.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Suite = 'kernels' | 'policies' | 'peers' | 'checkpoints' | 'quality' | 'startup';

const REPO = fileURLToPath(new URL('../', import.meta.url));

/** The committed files --write replaces, relative to the repository: the JSON, then any document. */
export const committedFiles: Readonly<Record<Suite, readonly [string, ...string[]]>> = {
  kernels: ['bench/results/kernels.json'],
  policies: ['bench/results/policies.json'],
  peers: ['bench/results/peers.json'],
  checkpoints: ['bench/results/checkpoints.json'],
  quality: ['bench/results/quality.json', 'docs/results.md'],
  startup: ['bench/results/startup.json'],
};

export interface Destination {
  /** Where the JSON is written; null: printed on stdout. */
  readonly json: string | null;
  /** Where the suite's Markdown document is written (docs/results.md); null: not written. */
  readonly doc: string | null;
  /** Said when nothing is written: how to keep the results. */
  readonly hint: string;
}

export interface SaveOptions {
  /** --write: replace the committed files. */
  readonly write: boolean;
  /** --out <file>: write the JSON there instead. */
  readonly out: string | undefined;
  /** The option that runs only part of the suite (`--filter`), when given. */
  readonly partial?: string | undefined;
}

/**
 * Where `suite`'s results go, or the usage error of options that contradict each other. A partial
 * run never replaces the committed results of the whole suite. `repo` is the repository root.
 */
export function destination(suite: Suite, o: SaveOptions, repo: string = REPO): Destination | string {
  if (o.write && o.out !== undefined) return '--write and --out exclude each other';
  if (o.write && o.partial)
    return `--write replaces the results of the whole suite, and ${o.partial} runs part of it (use --out <file>)`;
  if (o.out !== undefined) return { json: o.out, doc: null, hint: '' };
  const [json, doc] = committedFiles[suite];
  if (!o.write)
    return {
      json: null,
      doc: null,
      hint: o.partial
        ? 'results not written (--out <file> writes them)'
        : `results not written: --write records them in ${[json, doc].filter(Boolean).join(' and ')}, --out <file> elsewhere`,
    };
  return { json: join(repo, json), doc: doc === undefined ? null : join(repo, doc), hint: '' };
}

/** Writes `text` to a temporary name beside `path` and renames it: an interrupt leaves the old file whole. */
export function replaceFile(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path);
  console.error(`wrote ${path}`);
}

/** Writes the results (and the document, made only when it is written) where `to` says, or prints them. */
export function saveResults(to: Destination, result: unknown, doc?: () => string): void {
  const json = `${JSON.stringify(result, null, 2)}\n`;
  if (to.json === null) {
    process.stdout.write(json);
    console.error(to.hint);
    return;
  }
  replaceFile(to.json, json);
  if (to.doc !== null && doc) replaceFile(to.doc, doc());
}
