/**
 * A meter of the pure roofline that does not let a slow second of the host stand for the machine.
 *
 * The peak is the GEMM's best over about a second. On the shared VM it read 193-216 GFLOP/s all
 * through the full-size policies run of 2026-12-06, except once: 109, at 12:28, which priced the
 * two passes around it at 1.26 and 1.30 of their roofline (docs/perf.md, "The full size, third
 * part"). The bandwidth has real phases of minutes (35-49 GB/s), which a pass should be held to;
 * the peak has none, so a reading whose peak falls far below the best this meter has read is a
 * slow moment, and is read again.
 */
import type { Roofline } from '../src/cost/roofline.ts';

export interface SteadyOptions {
  /** A reading whose peak is below this share of the best peak read so far is read again. */
  readonly floor: number;
  /** At most this many readings again; then the one of highest peak stands. */
  readonly retakes: number;
  /** Called before each reading again (a pause, so that a slow moment can pass). */
  readonly pause: () => void;
  /** Told of each reading taken again. */
  readonly onRetake?: (low: Roofline, best: number) => void;
}

const pauseMs = (ms: number) => () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

export const steadyDefaults: SteadyOptions = { floor: 0.75, retakes: 3, pause: pauseMs(2000) };

export function steadyMeter(read: () => Roofline, o: SteadyOptions): () => Roofline {
  let bestPeak = 0;
  return () => {
    let kept = read();
    for (let n = 0; n < o.retakes && kept.peakFlops < o.floor * bestPeak; n++) {
      o.onRetake?.(kept, bestPeak);
      o.pause();
      const again = read();
      if (again.peakFlops > kept.peakFlops) kept = again;
    }
    bestPeak = Math.max(bestPeak, kept.peakFlops);
    return kept;
  };
}
