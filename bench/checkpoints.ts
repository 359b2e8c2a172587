/**
 * The checkpoints benchmark: random bf16 checkpoints with published shapes, written in their
 * family's Hugging Face layout, loaded and run by the CPU backend, each run in a process of its
 * own (bench/checkpointRun.ts) so that its peak RSS is measured alone. Reports load time,
 * tokens/s, steps per token and peak RSS against the bound the checkpoint issue sets:
 * peak RSS <= 1.3 x (checkpoint bytes + cache bytes).
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openCheckpoint } from '../src/model/hf/checkpoint.ts';
import type { Family } from '../src/model/hf/families.ts';
import type { CheckpointRun, CheckpointRunArgs } from './checkpointRun.ts';
import { type Destination, saveResults } from './save.ts';
import { runWorker } from './signals.ts';
import { machineInfo } from './timing.ts';

export interface CheckpointsOptions {
  /** Where the checkpoints are written (kept there and reused by a later run unless `clean`). */
  readonly dir: string;
  readonly genLength: number;
  readonly threads: number;
  /** Skip the 16 GB LLaDA-8B-shaped checkpoint. */
  readonly small: boolean;
  /** Remove the checkpoints afterwards. */
  readonly clean: boolean;
  readonly to: Destination;
}

/** The memory bound: peak RSS within this factor of the checkpoint and its caches. */
export const rssBound = 1.3;

interface Case {
  readonly preset: string;
  readonly family: Family;
  readonly runs: readonly { plan: string; overrides: Record<string, string>; genLength?: number }[];
}

const examples = fileURLToPath(new URL('../examples/', import.meta.url));

function cases(o: CheckpointsOptions): Case[] {
  const sdar: Case = {
    preset: 'sdar-1.7b',
    family: 'sdar',
    runs: [
      { plan: 'baseline.kvp', overrides: {} },
      { plan: 'fast-dllm-dual.kvp', overrides: {} },
    ],
  };
  // One step: the whole answer is one block, decoded in one step.
  const llada: Case = {
    preset: 'llada-8b',
    family: 'llada',
    runs: [{ plan: 'baseline.kvp', overrides: { block: '32', steps_per_block: '1' }, genLength: 32 }],
  };
  return o.small ? [sdar] : [sdar, llada];
}

const GB = 1e9;

/** Writes the checkpoint of `c` under `root`, unless a complete one is already there. */
function ensureCheckpoint(root: string, c: Case): { dir: string; bytes: number; write_s: number | null } {
  const dir = join(root, c.preset);
  if (existsSync(join(dir, 'config.json'))) {
    try {
      return { dir, bytes: openCheckpoint(dir).memory.bytes, write_s: null };
    } catch {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const t0 = performance.now();
  console.log(`writing a random bf16 ${c.preset} checkpoint to ${dir} ...`);
  // As a user would: make-model writes the weights, config.json and a BPE tokenizer.
  const cli = fileURLToPath(new URL('../bin/kvplan.mjs', import.meta.url));
  const args = ['make-model', '--format', 'hf', '--family', c.family, '--config', c.preset, '-o', dir];
  const r = runWorker(process.execPath, [cli, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`kvplan ${args.join(' ')} failed (exit ${r.status})`);
  return { dir, bytes: openCheckpoint(dir).memory.bytes, write_s: (performance.now() - t0) / 1000 };
}

function runOne(args: CheckpointRunArgs): CheckpointRun {
  const child = fileURLToPath(new URL('./checkpointRun.ts', import.meta.url));
  const r = runWorker(process.execPath, ['--import', 'tsx/esm', child, JSON.stringify(args)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 20,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{'))
    throw new Error(`the run of ${args.plan} on ${args.dir} failed (exit ${r.status})`);
  return JSON.parse(line) as CheckpointRun;
}

export async function checkpointsSuite(o: CheckpointsOptions): Promise<void> {
  mkdirSync(o.dir, { recursive: true });
  const rows: Record<string, unknown>[] = [];
  for (const c of cases(o)) {
    const ckpt = ensureCheckpoint(o.dir, c);
    for (const r of c.runs) {
      const genLength = r.genLength ?? o.genLength;
      const run = runOne({
        dir: ckpt.dir,
        plan: join(examples, r.plan),
        overrides: r.overrides,
        prompt: 'Write a short story about a robot who learns to paint.',
        genLength,
        threads: o.threads,
      });
      const ratio = run.peak_rss_bytes / (ckpt.bytes + run.cache_bytes);
      const row = {
        model: c.preset,
        plan: r.plan.replace(/\.kvp$/, ''),
        ...r.overrides,
        gen_length: genLength,
        checkpoint_bytes: ckpt.bytes,
        write_s: ckpt.write_s,
        ...run,
        rss_ratio: ratio,
        within_bound: ratio <= rssBound,
      };
      rows.push(row);
      console.log(
        `${c.preset.padEnd(10)} ${row.plan.padEnd(15)} load ${run.load_s.toFixed(1)} s, ` +
          `${run.tokens} tokens in ${run.steps} steps, ${run.tokens_per_s.toFixed(2)} tokens/s, ` +
          `peak RSS ${(run.peak_rss_bytes / GB).toFixed(2)} GB = ${ratio.toFixed(2)} x ` +
          `(checkpoint ${(ckpt.bytes / GB).toFixed(2)} GB + caches ${(run.cache_bytes / GB).toFixed(3)} GB)` +
          `${ratio <= rssBound ? '' : `  ABOVE the ${rssBound} x bound`}, others ${run.others ?? '?'} cores`,
      );
    }
  }
  if (o.clean) for (const c of cases(o)) rmSync(join(o.dir, c.preset), { recursive: true, force: true });
  saveResults(o.to, { machine: machineInfo(), rss_bound: rssBound, threads: o.threads, rows });
}
