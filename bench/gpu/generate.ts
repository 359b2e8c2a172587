/**
 * Whole generations through PtxRunner on a CUDA device, on a model of a published shape with random
 * bf16 weights made in memory (no checkpoint file travels): tokens/s and ms a step for each plan and
 * GEMM path, then the same generation once more with the device synchronised after every call, to
 * split a step into kernels (by name), copies and the host's own time.
 *
 *   node generate.mjs [--preset sdar-1.7b] [--layers N] [--gen 128] [--prompt 64]
 *                     [--plans baseline,fast-dllm-dual] [--gemm fma,mma-bf16] [--split on|off|on,off]
 *                     [--out result.json] [--emulator | --null]
 *                     [--emulator]
 *
 * Run from the repository root (plans are read from examples/). bench/gpu/pack.sh bundles it;
 * `--emulator` runs it on the JS emulator of the kernels (use a small preset) to try the bundle;
 * `--null` on a device that does nothing (bench/gpu/nullDevice.ts), to time the host side alone.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { cudaAvailable } from '../../src/backends/cuda-ptx/driver.ts';
import type { GemmPath, GemmSplitPolicy } from '../../src/backends/cuda-ptx/kernels/index.ts';
import type { CudaDevice } from '../../src/backends/cuda-ptx/launch.ts';
import { buildPtx, PtxRunner, sharedCudaDevice } from '../../src/backends/cuda-ptx/runner.ts';
import { checkSource } from '../../src/dsl/check.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { type Tensor, weightSpec } from '../../src/model/weights.ts';
import { generate } from '../../src/runtime/generate.ts';
import { planOnModel } from '../../src/runtime/prepare.ts';
import type { StepRunner } from '../../src/runtime/runner.ts';
import { blockLength } from '../../src/runtime/simulate.ts';
import { EmulatedDevice } from '../../test/backends/cuda-ptx/emulator.ts';
import { NullDevice } from './nullDevice.ts';
import { DeviceProfile } from './profile.ts';

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

/**
 * Random weights in bf16 bits: uniform with the variance randomWeights draws (linear N(0, 1/fan_in),
 * norms around 1), which is all a timing needs. Each tensor is cut from a pool of 2^22 values of
 * its distribution at an offset of its own, so that 2e9 parameters take seconds.
 */
function randomBf16(config: ModelConfig, seed: number): Map<string, Tensor> {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  const pools = new Map<string, Uint16Array>();
  const pool = (centre: number, half: number): Uint16Array => {
    const key = `${centre}/${half}`;
    let p = pools.get(key);
    if (!p) {
      const f = Float32Array.from({ length: 1 << 22 }, () => centre + half * (next() / 2 ** 31 - 1));
      p = new Uint16Array(f.length);
      const u = new Uint32Array(f.buffer);
      for (let i = 0; i < p.length; i++) p[i] = (u[i] as number) >>> 16;
      pools.set(key, p);
    }
    return p;
  };
  const weights = new Map<string, Tensor>();
  for (const spec of weightSpec(config)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const fanIn = spec.shape[spec.shape.length - 1] ?? 1;
    const p =
      spec.kind === 'norm'
        ? pool(1, 0.17)
        : spec.kind === 'embedding'
          ? pool(0, Math.sqrt(3))
          : pool(0, Math.sqrt(3 / fanIn));
    const bits = new Uint16Array(n);
    for (let at = 0; at < n; ) {
      const from = next() % (p.length >> 1);
      const len = Math.min(n - at, p.length - from);
      bits.set(p.subarray(from, from + len), at);
      at += len;
    }
    weights.set(spec.name, { shape: [...spec.shape], half: 'bf16', bits });
  }
  return weights;
}

const emulator = process.argv.includes('--emulator');
const nothing = process.argv.includes('--null');
const status = emulator
  ? { ok: true, reason: 'the JS emulator' }
  : nothing
    ? { ok: true, reason: 'no device (host time only)' }
    : cudaAvailable();
if (!status.ok) {
  console.log(`skipped: ${status.reason}`);
  process.exit(0);
}
const base = presets[option('preset', 'sdar-1.7b')];
if (!base) throw new Error(`no preset ${option('preset', '')}`);
const config: ModelConfig = { ...base, layers: Number(option('layers', String(base.layers))) };
const genLength = Number(option('gen', '128'));
const promptLength = Number(option('prompt', '64'));
const plans = option('plans', 'baseline,fast-dllm-dual').split(',');
const paths = option('gemm', 'fma,mma-bf16').split(',') as GemmPath[];
// `off`: no GEMM splits K (a policy that never does), to compare with the default in one run.
const splitModes = option('split', 'on').split(',');
const NO_SPLIT: GemmSplitPolicy = { ctas: 0, minK: 1, scratchBytes: 0 };
if (splitModes.some((m) => m !== 'on' && m !== 'off')) {
  console.error(`generate: --split takes on, off or on,off (got ${splitModes.join(',')})`);
  process.exit(2);
}

const t0 = performance.now();
const weights = randomBf16(config, 1);
console.log(
  `${config.name} (${config.layers} layers): random bf16 weights in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
const device: CudaDevice = emulator ? new EmulatedDevice() : nothing ? new NullDevice() : sharedCudaDevice();
const prompt = Int32Array.from({ length: promptLength }, (_, i) => (i * 7919) % (config.vocab - 1));
const rows: Record<string, unknown>[] = [];

for (const path of paths)
  for (const splitMode of splitModes)
    for (const name of plans) {
      const file = `examples/${name}.kvp`;
      const plan = checkSource({ path: file, text: readFileSync(file, 'utf8') }).plans[0];
      if (!plan) throw new Error(`${file} has no plan`);
      const fit = planOnModel(plan, config);
      if (!fit.ok) throw new Error(fit.error);
      const L = promptLength + genLength;
      const maxCanvas = promptLength + Math.max(genLength, blockLength(plan, genLength));
      const tb = performance.now();
      const build = buildPtx(plan, fit.config, maxCanvas, {
        arch: device.computeCapability[0] >= 9 ? 'sm_90' : 'sm_80',
        gemm: path,
        weights,
        ...(splitMode === 'off' ? { split: NO_SPLIT } : {}),
      });
      const buildMs = performance.now() - tb;
      // One runner for both runs: building one uploads (and transposes on the host) every weight.
      const profile = new DeviceProfile(device);
      const runner = new PtxRunner(build, weights, L, profile);
      const once = async () => {
        const opts = {
          model: { config: fit.config, weights },
          plan,
          lowered: build.lowered,
          prompts: [prompt],
        };
        // generate releases its runner at the end; this one is kept for the second run.
        const kept: StepRunner = {
          embed: (p, c, r) => runner.embed(p, c, r),
          layer: (p, l, lists, r) => runner.layer(p, l, lists, r),
          head: (p, out, logits) => runner.head(p, out, logits),
          cachePart: (part, l) => runner.cachePart(part, l),
        };
        const r = await generate({ ...opts, genLength, runner: () => kept });
        return { seq: r.sequences[0], tokensPerSecond: r.tokensPerSecond };
      };
      let timed: Awaited<ReturnType<typeof once>>;
      let profiledMs: number;
      try {
        timed = await once();
        profile.recording = true;
        const tp = performance.now();
        await once();
        profiledMs = performance.now() - tp;
      } finally {
        runner.release();
      }
      const seq = timed.seq;
      if (!seq) throw new Error('no sequence');
      const row = {
        plan: name,
        gemm: path,
        split: splitMode,
        steps: seq.steps,
        tokens: seq.generated.length,
        tokens_per_s: timed.tokensPerSecond,
        ms_per_step: seq.ms / seq.steps,
        build_ms: buildMs,
        profiled_ms: profiledMs,
        profile: profile.report(profiledMs),
      };
      rows.push(row);
      console.log(
        `${name.padEnd(15)} ${path.padEnd(9)} split ${splitMode.padEnd(3)} ${seq.steps} steps, ${row.tokens_per_s.toFixed(1)} tokens/s, ` +
          `${row.ms_per_step.toFixed(2)} ms a step`,
      );
      for (const line of profile.lines(profiledMs)) console.log(`    ${line}`);
    }
const out = process.argv.indexOf('--out');
const report = { device: status.reason, config, genLength, promptLength, rows };
if (out > 0) writeFileSync(process.argv[out + 1] as string, `${JSON.stringify(report, null, 1)}\n`);
