import type { Instr, Stage, Value } from '../ir/types.ts';

/**
 * Overlays a backend may read in place: `scatter(cache_read(R), rows, fresh)` whose only
 * write-back is `cache_write(R, writes, gather(overlay, writes))`, with no other read or write of
 * R in the stage and not a stage output. Writing the fresh rows into R itself and reading R as the
 * overlay is then the same as copying R whole, overlaying and writing back, provided the rows
 * among `rows` but not `writes`, which the overlay must not leave in R, are saved first and
 * restored once the overlay is dead (the CPU backend does so: src/backends/cpu/render.ts). A cache
 * of `prompt | before_block` holds none of the block it computes: every row is restored.
 * Returns each such overlay's result id and its write-back.
 */
export function inPlaceOverlays(stage: Stage): Map<number, Instr> {
  const byResult = new Map<number, Instr>();
  for (const ins of stage.body) for (const r of ins.results) byResult.set(r.id, ins);
  const touches = new Map<string, Instr[]>();
  for (const ins of stage.body)
    if (ins.op === 'cache_read' || ins.op === 'cache_write') {
      const r = String(ins.attrs.resource);
      touches.set(r, [...(touches.get(r) ?? []), ins]);
    }
  const outputs = new Set(stage.outputs.map((o) => o.value.id));
  const found = new Map<number, Instr>();
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
    found.set(result.id, write);
  }
  return found;
}
