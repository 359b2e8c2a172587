import type { Expr, Segment } from '../ast.ts';
import { type Mask, maskOf } from './evaluate.ts';

/** The key set of each segment of a `split`, as written. */
export const segmentKeys = (segments: readonly Segment[], set: (e: Expr) => Mask): Map<string, Mask> =>
  new Map(segments.map((s) => [s.name, set(s.keys)] as const));

/**
 * The key sets of a split's segments on a layer that a refresh of `all` makes full. A full layer is
 * an exact forward over every key, so the segments must cover all of them once: reused segments
 * keep their own keys (the partials stored now are what later steps reuse), the first segment that
 * is not reused takes every remaining key, and the others none. With every segment reused, the
 * first one takes the remainder too; its partial then holds more than its keys, so it is not kept
 * for reuse (`reusable` leaves it out). Sets of segments that are not reused are not evaluated: a
 * selection they read may not have been chosen yet at step 0.
 */
export function fullSegmentKeys(
  segments: readonly Segment[],
  set: (e: Expr) => Mask,
  L: number,
): { keys: Map<string, Mask>; reusable: Set<string> } {
  const keys = new Map<string, Mask>();
  const covered = maskOf(L, () => false);
  for (const s of segments) {
    if (!s.reusedUntil) continue;
    const k = set(s.keys);
    keys.set(s.name, k);
    k.forEach((x, i) => {
      if (x) covered[i] = 1;
    });
  }
  const reusable = new Set(keys.keys());
  const target = segments.find((s) => !s.reusedUntil) ?? segments[0];
  if (target?.reusedUntil && covered.some((x) => x === 0)) reusable.delete(target.name);
  for (const s of segments) {
    const own = keys.get(s.name) ?? maskOf(L, () => false);
    keys.set(s.name, s === target ? maskOf(L, (i) => own[i] === 1 || covered[i] !== 1) : own);
  }
  return { keys, reusable };
}
