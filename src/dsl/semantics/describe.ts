import type { Canvas } from './canvas.ts';

/** The class of a position as a reader thinks of it: prompt, decoded before the block, … */
export function rowClass(c: Canvas, i: number): string {
  if (c.isPrompt(i)) return 'prompt rows';
  // Literals, not templates: the simulation classifies every stale row it reads, every step.
  const masked = c.isMasked(i);
  if (c.numBlocks === 1) return masked ? 'masked rows' : 'decoded rows';
  const b = c.blockOf(i);
  // Before the current block a masked row is one a revoking decode rule took back.
  if (b < c.block)
    return masked ? 'remasked rows before the current block' : 'decoded rows before the current block';
  if (b > c.block)
    return masked ? 'masked rows after the current block' : 'decoded rows after the current block';
  return masked ? 'masked rows of the current block' : 'decoded rows of the current block';
}

const ranges = (ps: readonly number[]): string => {
  const out: string[] = [];
  let i = 0;
  while (i < ps.length) {
    let j = i;
    while (j + 1 < ps.length && (ps[j + 1] ?? 0) === (ps[j] ?? 0) + 1) j++;
    out.push(i === j ? `${ps[i]}` : `${ps[i]}..${ps[j]}`);
    i = j + 1;
  }
  return out.length > 4 ? `${out.slice(0, 4).join(', ')}, …` : out.join(', ');
};

/** "positions 12..15 (masked rows after the current block)", grouped by class. */
export function describePositions(c: Canvas, ps: readonly number[]): string {
  const byClass = new Map<string, number[]>();
  for (const p of ps) {
    const k = rowClass(c, p);
    byClass.set(k, [...(byClass.get(k) ?? []), p]);
  }
  return [...byClass].map(([k, v]) => `position${v.length > 1 ? 's' : ''} ${ranges(v)} (${k})`).join(', ');
}

export const when = (c: Canvas, layer?: number): string =>
  `at step ${c.step} (block ${c.block}, block step ${c.blockStep})${layer === undefined ? '' : `, layer ${layer}`}`;

/** "a, b and c". */
export const listWords = (xs: readonly string[]): string =>
  xs.length <= 1 ? (xs[0] ?? '') : `${xs.slice(0, -1).join(', ')} and ${xs.at(-1)}`;
