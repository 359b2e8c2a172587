import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/main.ts';

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI in this process, capturing what it writes. */
export async function runCli(argv: string[]): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    out: (s) => {
      stdout += s;
    },
    err: (s) => {
      stderr += s;
    },
  });
  return { code, stdout, stderr };
}

export interface TempDir {
  readonly dir: string;
  readonly path: (name: string) => string;
  readonly cleanup: () => void;
}

/** A fresh temporary directory holding the given files. */
export function tempFiles(files: Record<string, string>): TempDir {
  const dir = mkdtempSync(join(tmpdir(), 'kvplan-test-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return { dir, path: (n) => join(dir, n), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Fast-dLLM dual cache: well-formed, canonical, approximate. */
export const okPlan = [
  '# Fast-dLLM dual cache',
  'plan fast_dllm_dual(block: int = 32 in [4, 32], tau: float = 0.9 in [0.5, 1.0]) {',
  '  blocks block',
  '  refresh all when block_start',
  '  compute current_block',
  '  cache kv of all',
  '  attend all',
  '  decode threshold(tau) by confidence in current_block',
  '}',
  '',
].join('\n');

/** Well-formed but not canonical: spacing and a redundant parenthesis. */
export const messyPlan = 'plan   messy(block=4){ blocks (block)\n  compute current_block }';
export const messyCanonical = 'plan messy(block = 4) {\n  blocks block\n  compute current_block\n}\n';

/** Two syntax errors, on lines 2 and 3. */
export const brokenPlan = 'plan broken() {\n  compute a b\n  let = 3\n}\n';
