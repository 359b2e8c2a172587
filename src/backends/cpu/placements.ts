import type { Stage, Value } from '../../ir/types.ts';

/**
 * Canvases `place(values, rows)` (zero but at rows) that the stage reads only through gathers and
 * does not return: each one's gathered index lists, by the place's result id. Where every gathered
 * row is among the placed rows at run time (a `hidden` cache writes the rows the step computed),
 * no zero is ever read, and the canvas need not be cleared: a memset of L rows a layer, a fifth of
 * a cached layer's time past the attention at a canvas of 1280 rows.
 */
export function gatheredPlacements(stage: Stage): Map<number, Value[]> {
  // The lists are the stage's inputs (the inspector's), known before the place runs.
  const inputs = new Set(stage.inputs.map((i) => i.value.id));
  const placed = new Map<number, Value[] | undefined>();
  for (const ins of stage.body) {
    ins.args.forEach((a, i) => {
      if (!placed.has(a.id)) return;
      const lists = placed.get(a.id);
      const list = ins.args[1] as Value;
      const read = ins.op === 'gather' && i === 0 && lists && inputs.has(list.id);
      placed.set(a.id, read ? [...lists, list] : undefined);
    });
    if (ins.op === 'place') placed.set((ins.results[0] as Value).id, []);
  }
  for (const o of stage.outputs) placed.set(o.value.id, undefined);
  const found = new Map<number, Value[]>();
  for (const [id, lists] of placed) if (lists && lists.length > 0) found.set(id, lists);
  return found;
}
