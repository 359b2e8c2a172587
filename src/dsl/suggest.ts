/** Levenshtein distance, for "did you mean" hints. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur.push(Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** The closest candidate within a distance that scales with the name's length, if any. */
export function closest(name: string, candidates: Iterable<string>): string | undefined {
  const limit = Math.max(1, Math.floor(name.length / 3));
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const d = editDistance(name.toLowerCase(), c.toLowerCase());
    if (d < bestDistance || (d === bestDistance && best !== undefined && c < best)) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= limit ? best : undefined;
}

export const didYouMean = (name: string, candidates: Iterable<string>): string[] => {
  const hit = closest(name, candidates);
  return hit ? [`help: did you mean \`${hit}\`?`] : [];
};

/** A parameter setting no plan declares: its name, the closest declared one, and what is declared. */
export interface UndeclaredSetting {
  readonly name: string;
  readonly hint: string | undefined;
  /** `parameters: a, b` or `the plans have no parameters`, for the message. */
  readonly known: string;
}

/**
 * The settings among `names` that no plan declares: a misspelt `tua` would otherwise run with the
 * default `tau` and let the user believe they measured a setting they did not. The CLI and the
 * library word them their own way.
 */
export function undeclaredSettings(
  names: Iterable<string>,
  declared: ReadonlySet<string>,
): UndeclaredSetting[] {
  const known = declared.size
    ? `parameters: ${[...declared].sort().join(', ')}`
    : 'the plans have no parameters';
  return [...names]
    .filter((name) => !declared.has(name))
    .map((name) => ({ name, hint: closest(name, declared), known }));
}
