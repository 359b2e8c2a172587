import type { Instr, Stage, Value } from '../../ir/types.ts';

/** A cache overlaid with fresh rows whose result is written back to the same cache at `writes`. */
export interface Overlay {
  /** The C flag that says, at run time, that every fresh row is also written. */
  readonly flag: string;
  /** The cache_write that stores the overlay's rows back. */
  readonly write: Instr;
}

/**
 * Overlays `scatter(cache_read(R), rows, fresh)` whose only write-back is
 * `cache_write(R, writes, gather(overlay, writes))`, with no other read or write of R in the stage.
 * When rows ⊆ writes at run time (every plan that caches what it computes), writing the fresh rows
 * into R first and reading R in place gives the same values as copying R whole into the arena,
 * overlaying and writing back: the copy of the whole cache (a canvas of K or V per layer) is saved.
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
    found.set(result.id, { flag: `inplace_${result.id}`, write });
  }
  return found;
}
