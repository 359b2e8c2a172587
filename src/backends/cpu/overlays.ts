import type { Instr, Stage, Value } from '../../ir/types.ts';

/** A cache overlaid with fresh rows whose result is written back to the same cache at `writes`. */
export interface Overlay {
  /** The C names of the run-time state: `saved_N` (rows saved, -1 when copied whole), `mark_N`. */
  readonly saved: string;
  readonly mark: string;
  /** The cache_write that stores the overlay's rows back. */
  readonly write: Instr;
}

/**
 * Overlays `scatter(cache_read(R), rows, fresh)` whose only write-back is
 * `cache_write(R, writes, gather(overlay, writes))`, with no other read or write of R in the stage
 * and not a stage output. The fresh rows are written into R itself and R is read as the overlay;
 * the rows among `rows` but not `writes`, which the overlay must not leave in R, are saved first
 * and restored once the overlay is dead. That is the same as copying R whole into the arena,
 * overlaying and writing back, and copies two lists of rows instead of a canvas of K or V a layer
 * (a cache of `prompt | before_block` holds none of the block it computes: every row is restored).
 */
export function inPlaceOverlays(stage: Stage): Map<number, Overlay> {
  const byResult = new Map<number, Instr>();
  for (const ins of stage.body) for (const r of ins.results) byResult.set(r.id, ins);
  const touches = new Map<string, Instr[]>();
  for (const ins of stage.body)
    if (ins.op === 'cache_read' || ins.op === 'cache_write') {
      const r = String(ins.attrs.resource);
      touches.set(r, [...(touches.get(r) ?? []), ins]);
    }
  const outputs = new Set(stage.outputs.map((o) => o.value.id));
  const found = new Map<number, Overlay>();
  for (const ins of stage.body) {
    if (ins.op !== 'scatter') continue;
    const base = byResult.get((ins.args[0] as Value).id);
    if (base?.op !== 'cache_read') continue;
    const all = touches.get(String(base.attrs.resource)) ?? [];
    const writes = all.filter((t) => t.op === 'cache_write');
    const write = writes[0];
    if (all.length !== 2 || !write) continue;
    const src = byResult.get((write.args[1] as Value).id);
    const result = ins.results[0] as Value;
    const sameList = (src?.args[1] as Value | undefined)?.id === (write.args[0] as Value).id;
    if (src?.op !== 'gather' || (src.args[0] as Value).id !== result.id || !sameList) continue;
    if (outputs.has(result.id)) continue;
    found.set(result.id, { saved: `saved_${result.id}`, mark: `mark_${result.id}`, write });
  }
  return found;
}
