/**
 * Interrupts in the benchmarks end them as they end `kvplan`: at once, by the signal itself (a
 * shell reports 130 for SIGINT, 143 for SIGTERM), with nothing left running and no temporary
 * file (src/backends/cpu/compiler.ts cleans up after an interrupted C compile).
 */
import { type SpawnSyncOptions, type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { constants } from 'node:os';
import { endsWithThisProcess } from '../src/backends/cpu/compiler.ts';

const ending: ReadonlySet<string> = new Set<NodeJS.Signals>(['SIGINT', 'SIGTERM', 'SIGHUP']);

/**
 * Gives SIGINT and SIGTERM back their default action: the process ends the moment one arrives.
 * `tsx` (npm run bench) runs the script in a child process with listeners of its own for them,
 * and a listener runs only between tasks: behind a compile or a generation that computes
 * synchronously for minutes, a Ctrl-C waited for the run to end, and a compile killed under it
 * surfaced first as a CompilerError with a stack trace.
 */
export function endOnSignals(): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.removeAllListeners(signal);
  // tsx adds its listeners once the child has connected to its parent, which may come later.
  process.on('newListener', (event) => {
    if (event === 'SIGINT' || event === 'SIGTERM') queueMicrotask(() => process.removeAllListeners(event));
  });
}

/**
 * Runs a worker process to its end, killed with SIGTERM if this process dies first. A worker
 * ended by SIGINT, SIGTERM or SIGHUP ends this process by the same signal, as a shell does: the
 * interrupt was meant for the whole run, not only for the worker that happened to be running.
 */
export function runWorker(
  command: string,
  args: readonly string[],
  options: SpawnSyncOptions & { encoding: BufferEncoding },
): SpawnSyncReturns<string>;
export function runWorker(
  command: string,
  args: readonly string[],
  options: SpawnSyncOptions,
): SpawnSyncReturns<string | Buffer>;
export function runWorker(
  command: string,
  args: readonly string[],
  options: SpawnSyncOptions,
): SpawnSyncReturns<string | Buffer> {
  const [cmd, argv] = endsWithThisProcess(command, args);
  const r = spawnSync(cmd, argv, options);
  if (r.signal !== null && ending.has(r.signal)) {
    process.kill(process.pid, r.signal);
    // Should the signal land a moment later (on another thread), this reports the same status.
    process.exit(128 + constants.signals[r.signal]);
  }
  return r;
}
