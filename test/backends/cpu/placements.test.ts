import { describe, expect, test } from 'vitest';
import { gatheredPlacements } from '../../../src/backends/cpu/placements.ts';
import { ProgramBuilder } from '../../../src/ir/builder.ts';
import { index, type Stage, tensor, type Value } from '../../../src/ir/types.ts';

/**
 * A layer stage that places its fresh rows on a zero canvas (`place`) and then reads the canvas as
 * `use` says: `gathers` through the rows' and the writes' lists (inputs), `attention` reading it
 * whole, `output` gathering through the writes and returning it, or `derived` gathering through a list the stage computes.
 */
function stage(use: 'gathers' | 'attention' | 'output' | 'derived'): {
  stage: Stage;
  lists: Value[];
  placed: Value;
} {
  const pb = new ProgramBuilder('p.cached');
  const hidden = pb.resource({ name: 'hidden.0', kind: 'hidden', dtype: 'f32', shape: ['L', 8] });
  const sb = pb.stage('layer.0');
  const h = sb.input('h', 'carried', tensor('f32', ['L', 8]));
  const rows = sb.input('rows.0', 'index', index('#rows.0'));
  const writes = sb.input('write.0', 'index', index('#write.0'));
  const fresh = sb.op1('gather', [h, rows]);
  const placed = sb.op1('place', [fresh, rows]);
  if (use === 'output') {
    sb.cacheWrite(hidden, writes, sb.op1('gather', [placed, writes]));
    sb.output('placed', placed);
  } else if (use === 'attention') {
    const q = sb.op1('reshape', [fresh], { inner: [2, 4] });
    const kv = sb.op1('reshape', [placed], { inner: [2, 4] });
    const [o] = sb.op('attention', [q, kv, kv, rows, sb.input('keys.0', 'index', index('L'))], {
      scale: 0.5,
      mask: 'none',
    }) as [Value];
    sb.output('o', o);
  } else {
    const list = use === 'derived' ? sb.op1('gather', [rows, writes]) : writes;
    sb.cacheWrite(hidden, list, sb.op1('gather', [placed, list]));
    sb.output('h', sb.op1('gather', [placed, rows]));
  }
  const program = pb.finish();
  return { stage: program.stages[0] as Stage, lists: [writes, rows], placed };
}

describe('canvases placed and read only through gathers', () => {
  test('a canvas read through gathers of the stage’s lists is found, with those lists', () => {
    const { stage: s, lists, placed } = stage('gathers');
    expect(
      gatheredPlacements(s)
        .get(placed.id)
        ?.map((v) => v.id),
    ).toEqual(lists.map((v) => v.id));
  });
  test.each(['attention', 'output', 'derived'] as const)(
    'a canvas read otherwise (%s) keeps its clear',
    (use) => {
      const { stage: s, placed } = stage(use);
      expect(gatheredPlacements(s).has(placed.id)).toBe(false);
    },
  );
});
