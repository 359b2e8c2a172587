/**
 * How the OpenMP workers of the compiled libraries wait between parallel regions. libgomp reads
 * its environment once, when the first library linked against it loads, so this runs before every
 * load (compiler.ts, loadVerified): whichever loads first (a plan's library, the primitives for
 * the hardware probe or a benchmark) then sees the same setting.
 *
 * The default is a bounded spin, GOMP_SPINCOUNT 10 000 (a fraction of a millisecond): a worker
 * spins through the gaps between the kernels of a step and sleeps through longer host work, where
 * its core may be wanted by the runtime's own threads. Measured 2026-12-04 on the 2-core VM,
 * `es_dllm` on the policies model (gen 128), alternating processes: passive waiting (spin 0)
 * 2826-3111 ms of steps, spins of 2 000 to 300 000 (libgomp's default) 2412-2663; an OpenMP wake
 * from sleep costs about 25 us a region, and a cached layer runs a dozen regions in 1.5 ms
 * (docs/cpu-backend.md). Before, the runner asked for passive waiting, which only took effect when
 * it loaded libgomp first: `kvplan generate` waited passively while the benchmarks, whose hardware
 * probe loads the primitives first, spun with libgomp's default.
 *
 * A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is left as it is.
 */
export const SPIN_COUNT = 10_000;

export function openMpDefaults(env: NodeJS.ProcessEnv = process.env): void {
  if (env.OMP_WAIT_POLICY === undefined && env.GOMP_SPINCOUNT === undefined)
    env.GOMP_SPINCOUNT = String(SPIN_COUNT);
}
