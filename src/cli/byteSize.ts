const byteUnits: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** A size like transformers' `max_shard_size`: `2GB` (10^9), `500MiB` (2^20), or plain bytes. */
export function parseByteSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$/i.exec(text);
  if (m === null) return undefined;
  const n = Math.floor(Number(m[1]) * (byteUnits[(m[2] ?? 'b').toLowerCase()] as number));
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}
