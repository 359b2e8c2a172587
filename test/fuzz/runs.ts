/**
 * Seeds and run counts of the fuzz properties: a fixed seed, so that CI is reproducible, plus a
 * fresh one, so that every run explores new plans; fast-check prints the seed of a failure.
 * KVPLAN_FUZZ_SEED replays one seed (both batches use it); KVPLAN_FUZZ_RUNS scales the counts.
 */
const FIXED_SEED = 14;

/** A batch of runs; `fixed`: the CI seed's, the same plans in every run (shares are counted there). */
export function fuzzRuns(runs: number): { seed: number; numRuns: number; fixed: boolean }[] {
  const scale = Number(process.env.KVPLAN_FUZZ_RUNS ?? '1');
  const total = Math.max(1, Math.round(runs * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
  const fresh = Math.max(1, Math.floor(total / 4));
  const replay = process.env.KVPLAN_FUZZ_SEED;
  if (replay !== undefined) return [{ seed: Number(replay), numRuns: total, fixed: false }];
  const seed = Math.floor(Math.random() * 2 ** 31);
  return [
    { seed: FIXED_SEED, numRuns: total - fresh, fixed: true },
    { seed, numRuns: fresh, fixed: false },
  ];
}
