import { listWords } from './describe.ts';
import type { Approximations } from './simulate.ts';

// Fixed order so that the same plan always gets the same words.
const classOrder = [
  'prompt rows',
  'decoded rows before the current block',
  'remasked rows before the current block',
  'decoded rows of the current block',
  'masked rows of the current block',
  'decoded rows after the current block',
  'masked rows after the current block',
  'decoded rows',
  'masked rows',
];
const ordered = (s: Set<string>): string[] =>
  [...s].sort((a, b) => classOrder.indexOf(a) - classOrder.indexOf(b) || a.localeCompare(b));

/** The premise under which an approximate plan equals full attention; undefined when it is exact. */
export function premiseOf(a: Approximations): string | undefined {
  const parts: string[] = [];
  if (a.staleKv.size > 0)
    parts.push(`cached K/V of ${listWords(ordered(a.staleKv))} equal their fresh values`);
  if (a.staleHidden.size > 0)
    parts.push(`cached hidden states of ${listWords(ordered(a.staleHidden))} equal their fresh values`);
  if (a.staleFeatures.size > 0) {
    parts.push(
      `cached attention and FFN outputs of ${listWords(ordered(a.staleFeatures))} equal their fresh values`,
    );
  }
  for (const seg of [...a.reusedPartials].sort())
    parts.push(`the reused partial (O, LSE) of segment '${seg}' equals its fresh value`);
  for (const keys of [...a.sparse].sort()) parts.push(`keys outside \`${keys}\` receive no attention weight`);
  for (const keys of [...a.sparsePerHead].sort())
    parts.push(
      `keys outside each KV head's own \`${keys}\` receive no attention weight from its query heads`,
    );
  if (a.staleLogits.size > 0) {
    parts.push(
      `predictions of ${listWords(ordered(a.staleLogits))} that are not recomputed equal their fresh values`,
    );
  }
  return parts.length > 0 ? parts.join('; ') : undefined;
}
