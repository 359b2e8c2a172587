import { describe, expect, test } from 'vitest';
import { ProgramBuilder } from '../../src/ir/builder.ts';
import { index, type Stage, tensor, type Value } from '../../src/ir/types.ts';
import { inPlaceOverlays } from '../../src/passes/overlays.ts';

/**
 * A layer stage that overlays a K cache with its fresh rows and writes the overlay back through
 * the writes list; `use` adds what keeps it from being read in place: the overlay returned as an
 * output, or another read of the cache.
 */
function stage(use: 'attention' | 'output' | 'second read'): { stage: Stage; overlay: Value } {
  const pb = new ProgramBuilder('p.cached');
  const k = pb.resource({ name: 'k.0', kind: 'kv', dtype: 'f32', shape: ['L', 8] });
  const sb = pb.stage('layer.0');
  const h = sb.input('h', 'carried', tensor('f32', ['L', 8]));
  const rows = sb.input('rows.0', 'index', index('#rows.0'));
  const writes = sb.input('write.0', 'index', index('#write.0'));
  const fresh = sb.op1('gather', [h, rows]);
  const overlay = sb.op1('scatter', [sb.cacheRead(k), rows, fresh]);
  sb.cacheWrite(k, writes, sb.op1('gather', [overlay, writes]));
  const read = use === 'second read' ? sb.cacheRead(k) : overlay;
  if (use === 'output') sb.output('overlay', overlay);
  else sb.output('h', sb.op1('gather', [read, rows]));
  return { stage: pb.finish().stages[0] as Stage, overlay };
}

describe('caches overlaid with fresh rows, read in place', () => {
  test('an overlay written back through one list and read in the stage is taken, with its write-back', () => {
    const { stage: s, overlay } = stage('attention');
    const write = inPlaceOverlays(s).get(overlay.id);
    expect(write?.op).toBe('cache_write');
    expect(write?.attrs.resource).toBe('k.0');
  });
  test.each(['output', 'second read'] as const)('an overlay with %s is copied, not read in place', (use) => {
    const { stage: s, overlay } = stage(use);
    expect(inPlaceOverlays(s).has(overlay.id)).toBe(false);
  });
});
