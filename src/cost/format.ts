/**
 * The cost advisor's answer as text (`kvplan explain --cost`) and as JSON (`--json`): what each
 * phase costs and what bounds it, the speedup over the no-cache twin, where the cache starts to pay
 * off, and the assumptions the numbers rest on.
 */
import { fmt, table } from '../report/table.ts';
import type { Advice, Crossover, KernelGroup, PhasePrediction, RunPrediction } from './advise.ts';

const prefixes: readonly [number, string][] = [
  [1e15, 'P'],
  [1e12, 'T'],
  [1e9, 'G'],
  [1e6, 'M'],
  [1e3, 'k'],
];

/** `3.35 TB`, `989 TFLOP`: decimal prefixes, as datasheets print them. */
const si = (x: number, unit: string): string => {
  const [scale, prefix] = prefixes.find(([s]) => x >= s) ?? [1, ''];
  return `${fmt(x / scale)} ${prefix}${unit}`;
};

const time = (s: number): string =>
  s >= 1 ? `${fmt(s)} s` : s >= 1e-3 ? `${fmt(s * 1e3)} ms` : `${fmt(s * 1e6)} µs`;

const percent = (x: number) => `${Math.round(100 * x)}%`;

function phaseSummary(run: RunPrediction): string {
  return table(
    ['phase', 'steps', 'per step', 'FLOP/step', 'bytes/step', 'bound', 'total'],
    run.phases.map((p) => [
      p.phase,
      String(p.steps),
      time(p.secondsPerStep),
      si(p.flopsPerStep, ''),
      si(p.bytesPerStep, 'B'),
      p.bound,
      time(p.seconds),
    ]),
  );
}

function kernelTable(kernels: readonly KernelGroup[]): string {
  return table(
    ['kernel', 'kind', 'weights', 'calls', 'FLOP', 'bytes', 'time', 'bound', 'share'],
    kernels.map((k) => [
      k.name,
      k.kind,
      k.weights.join(' '),
      String(k.calls),
      si(k.flops, ''),
      si(k.bytes, 'B'),
      time(k.seconds),
      k.bound,
      percent(k.share),
    ]),
  );
}

const phaseHeading = (p: PhasePrediction) =>
  `a ${p.phase} step (the most common of the ${p.steps}), by kernel, the costliest first:`;

function crossoverText(c: Crossover, a: Advice): string {
  if (c.kind === 'always') return 'the cache pays off from the shortest generation (one block)';
  if (c.kind === 'at') return `the cache pays off from a generation of ${c.genLength} tokens`;
  return c.upTo === undefined
    ? `never: ${a.plan} runs as its own no-cache twin`
    : `never, up to a generation of ${c.upTo} tokens`;
}

/** The bound of the costliest of some phases. */
const mainBound = (phases: readonly PhasePrediction[]) =>
  phases.reduce((a, p) => (p.seconds > a.seconds ? p : a)).bound;

/** What the bounds say about the speedup, in one sentence. */
function verdict(a: Advice): string {
  const cached = a.cache.phases.filter((p) => p.phase !== 'refresh');
  if (a.crossover.kind === 'never' && a.crossover.upTo === undefined)
    return "nothing is cached: every step recomputes every row, as the twin's steps do";
  if (cached.length === 0) return "every step of the plan is a refresh: none is cheaper than the twin's";
  if (mainBound(a.twin.phases) === 'memory')
    return (
      'without the cache a step is already bound by memory traffic, and a cached step still reads every ' +
      'weight: the cache saves little until a longer canvas or a larger batch makes the uncached step compute-bound'
    );
  if (mainBound(cached) === 'memory')
    return (
      'the cache removes FLOPs, but its cached steps are bound by reading the weights: a larger batch shares ' +
      'that traffic among more sequences'
    );
  return 'both runs are compute-bound: the speedup is near the ratio of their FLOPs';
}

/**
 * How close the advisor came on the machine it was calibrated on (docs/perf.md, "Cost advisor"):
 * `npx tsx bench/advisor-calibration.ts --remeasure` against the policies benchmark, every example
 * plan but the baseline for the speedup, all 13 for the time per step. test/cost/format.test.ts
 * checks these against the table in docs/perf.md.
 */
export const cpuCalibration = {
  machine: '2-core AMD EPYC (Zen 4) VM',
  date: '2026-12-02',
  plans: 12,
  speedup: { median: 0.1, max: 0.31 },
  step: { median: 0.38, max: 0.49 },
} as const;

/** The calibration, in one line, for the `cpu` hardware: the error bound its predictions claim. */
function calibration(a: Advice): string | undefined {
  if (a.hardware.name !== 'cpu') return undefined;
  const c = cpuCalibration;
  return (
    `predictions within ±${percent(c.speedup.max)} on this machine's calibration: speedups of the ` +
    `${c.plans} example plans within ±${percent(c.speedup.max)} of the measured ones (median ` +
    `${percent(c.speedup.median)}), times per step within ±${percent(c.step.max)} (median ` +
    `${percent(c.step.median)}, predicted short: host time is not costed) (${c.machine}, ${c.date}, ` +
    'idle; docs/perf.md); a probe taken while other processes load the machine is not calibrated: ' +
    'remeasure on an idle one (--remeasure)'
  );
}

/** How each kernel is costed on `hw`, in words. */
function kernelModel(hw: Advice['hardware']): string {
  const overlap = hw.overlap ?? 1;
  const pure = overlap >= 1 && hw.weightBandwidth === undefined && hw.attentionFlops === undefined;
  if (pure) return 'roofline: each kernel takes max(FLOPs / peak, bytes / bandwidth), one after another';
  return (
    'roofline of the measured kernels: each kernel takes the longer of FLOPs / peak (attention at its own ' +
    `peak) and bytes / bandwidth (GEMM weights at their streaming rate), plus ${percent(1 - overlap)} of ` +
    'the shorter (the part the kernels do not overlap), one after another'
  );
}

/** The assumptions behind every number of the report, in one line. */
function assumptions(a: Advice): string {
  const readback = a.hardware.readbackBandwidth
    ? 'hidden states read back to fresh host buffers for model-internal scores; no launch, inspector or decode time'
    : 'no launch, host or inspector time';
  return (
    `${kernelModel(a.hardware)}; ${readback}; ${a.weights} weights, float32 activations; a batch packs its rows into ` +
    'each kernel, which reads its weights once; threshold and factor rules commit one token a step; ' +
    'drift and similarity refreshes never fire'
  );
}

/** The measured figures of a machine beyond peak and bandwidth, in words (none for a datasheet). */
function measuredFigures(hw: Advice['hardware']): string | undefined {
  const parts = [
    hw.weightBandwidth === undefined ? undefined : `GEMM weights stream at ${si(hw.weightBandwidth, 'B/s')}`,
    hw.attentionFlops === undefined ? undefined : `attention peaks at ${si(hw.attentionFlops, 'FLOP/s')}`,
    hw.massFlops === undefined ? undefined : `attention mass (probes) at ${si(hw.massFlops, 'FLOP/s')}`,
    hw.overlap === undefined ? undefined : `${percent(hw.overlap)} of memory time overlapped`,
    hw.readbackBandwidth === undefined
      ? undefined
      : `copies into fresh host buffers at ${si(hw.readbackBandwidth, 'B/s')}`,
  ].filter((p) => p !== undefined);
  return parts.length > 0 ? `  ${parts.join(', ')}` : undefined;
}

/** The text report. */
export function formatAdvice(a: Advice): string {
  const hw = a.hardware;
  const lines = [
    `${a.plan} on ${a.model}, ${hw.name}: ${hw.description}`,
    `  peak ${si(hw.peakFlops, 'FLOP/s')} (${hw.peakDtype}), bandwidth ${si(hw.bandwidth, 'B/s')}; ${hw.source}`,
    ...[measuredFigures(hw)].filter((l) => l !== undefined),
    `  batch ${a.batch}, prompt ${a.promptLength}, generation ${a.genLength} (${a.promptLength + a.genLength} rows a sequence)`,
    '',
    `with the cache (${a.cache.steps} steps):`,
    phaseSummary(a.cache),
    '',
    `without it: ${a.twin.plan}, the decode-matched no-cache twin, recomputes every row each step:`,
    ...a.twin.phases.map(
      (p) =>
        `  ${p.steps} steps of ${time(p.secondsPerStep)} (${si(p.flopsPerStep, 'FLOP')}, ${si(p.bytesPerStep, 'B')}, ${p.bound}-bound), ${time(p.seconds)} in all`,
    ),
  ];
  for (const p of a.cache.phases) lines.push('', phaseHeading(p), kernelTable(p.kernels));
  lines.push(
    '',
    `predicted: ${time(a.cache.seconds)} with the cache, ${time(a.twin.seconds)} without: ` +
      `speedup ${fmt(a.speedup)}x (${fmt(a.cache.tokensPerSecond)} against ${fmt(a.twin.tokensPerSecond)} tokens/s)`,
    `crossover: ${crossoverText(a.crossover, a)}`,
    `why: ${verdict(a)}`,
    `assumptions: ${assumptions(a)}`,
    ...[calibration(a)].filter((l) => l !== undefined).map((l) => `calibration: ${l}`),
  );
  return `${lines.join('\n')}\n`;
}

/** The advice as JSON (`--json`): the Advice object, which holds only plain data, and its assumptions. */
export const adviceJson = (a: Advice): string =>
  `${JSON.stringify({ ...a, assumptions: assumptions(a), ...(calibration(a) ? { calibration: calibration(a) } : {}) })}\n`;
