import type { Instr, Stage } from '../../ir/types.ts';
import { inPlaceOverlays } from '../../passes/overlays.ts';

/** A cache overlaid with fresh rows whose result is written back to the same cache at `writes`. */
export interface Overlay {
  /** The C names of the run-time state: `saved_N` (rows saved, -1 when copied whole), `mark_N`. */
  readonly saved: string;
  readonly mark: string;
  /** The cache_write that stores the overlay's rows back. */
  readonly write: Instr;
}

/**
 * The stage's overlays read in place (src/passes/overlays.ts), by result id, with the names of
 * their run-time state: the rows the overlay must not leave in the cache are saved by
 * kv_overlay_save and put back by kv_overlay_restore, which copies two lists of rows instead of a
 * canvas of K or V a layer.
 */
export function cOverlays(stage: Stage): Map<number, Overlay> {
  return new Map(
    [...inPlaceOverlays(stage)].map(([id, write]) => [
      id,
      { saved: `saved_${id}`, mark: `mark_${id}`, write },
    ]),
  );
}
