/**
 * A runner's head computes the softmax statistics of each step's logits where they are: the CPU
 * runner natively (kv_softmax_stats), the WebGPU runner in a shader (softmax_stats), the PTX
 * runner in a kernel (kvp_softmax_stats; here on the emulated device, its PTX text interpreted
 * instruction by instruction). The decode
 * rule and the score-driven sets read them from there. Decided from them, a generation commits
 * the same tokens at the same steps as from the statistics src/model/golden.ts computes in
 * JavaScript, for every sequence of a batch (each reads its own rows of the step's statistics);
 * a row that is not finite ends the generation naming its position.
 */
import { expect, test, vi } from 'vitest';
import { bindPrimitives } from '../../src/backends/cpu/primitives.ts';
import { buildCpu, CpuRunner } from '../../src/backends/cpu/runner.ts';
import { buildPtx, PtxRunner } from '../../src/backends/cuda-ptx/runner.ts';
import { webGpuRunnerFactory } from '../../src/backends/webgpu/runner.ts';
import type { CheckedPlan } from '../../src/dsl/check.ts';
import { float32Of, type HostTensor } from '../../src/ir/tensor.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { randomWeights, type Weights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { type GenerateOptions, generate } from '../../src/runtime/generate.ts';
import { NonFiniteLogits } from '../../src/runtime/generationError.ts';
import { modelFor } from '../../src/runtime/modelFor.ts';
import type { HeadOutput, StepRunner } from '../../src/runtime/runner.ts';
import { EmulatedDevice } from '../backends/cuda-ptx/emulator.ts';
import { gpuOrSkip } from '../backends/webgpu/support.ts';
import { backendConfigs, examplePlan } from './support.ts';

const prompts = [
  [3, 1, 4],
  [1, 5, 9, 2, 6],
  [5, 3, 5, 8, 9, 7, 9],
].map((p) => Int32Array.from(p));

type Factory = (
  plan: CheckedPlan,
  config: ModelConfig,
  weights: Weights,
  L: number,
) => (L: number) => StepRunner;

const gpu = (await gpuOrSkip('prediction statistics on WebGPU')) !== undefined;
const backends: readonly (readonly [string, () => Promise<Factory | undefined>])[] = [
  [
    'cpu',
    async () => (plan, config, weights, L) => {
      const build = buildCpu(plan, config, L);
      return (n) => new CpuRunner(build, weights, n);
    },
  ],
  ['webgpu', async () => (gpu ? webGpuRunnerFactory() : undefined)],
  [
    'ptx (emulated)',
    async () => (plan, config, weights, L) => {
      const build = buildPtx(plan, config, L);
      return (n) =>
        new PtxRunner(build, weights, n, new EmulatedDevice({ interpret: /^kvp_softmax_stats$/ }));
    },
  ],
];

/** The prompts generated with the plan in one batch on `runner`. */
const inOneBatch = (
  plan: CheckedPlan,
  config: ModelConfig,
  weights: Weights,
  genLength: number,
  runner: (L: number) => StepRunner,
  extra: Partial<GenerateOptions> = {},
) =>
  generate({
    model: { config, weights },
    plan,
    lowered: compilePlan(plan, config, { target: 'reference' }).lowered,
    prompts,
    genLength,
    batchSize: prompts.length,
    runner,
    ...extra,
  });

/** A runner whose head counts the steps that came with statistics, and drops them unless `keep`. */
function counting(r: StepRunner, keep: boolean, seen: () => void): StepRunner {
  const { head } = r;
  r.head = async (program, out, logits) => {
    // Without the statistics, the steps compute them in JavaScript from the logits.
    const h = await head.call(r, program, out, keep ? logits : true);
    if (h.stats) seen();
    return keep ? h : { ...(h.logits ? { logits: h.logits } : {}) };
  };
  return r;
}

// Confidence decides fast-dllm-dual's commits, margin prophet's; es-dllm's compute set reads
// confidence too.
for (const [backend, factory] of backends)
  test.skipIf(backend === 'webgpu' && !gpu).each(['fast-dllm-dual', 'prophet', 'es-dllm'])(
    `%s: ${backend} statistics decide as the JavaScript ones, for each sequence of a batch`,
    async (name) => {
      const plan = examplePlan(name);
      const config = modelFor(plan, backendConfigs[0] as ModelConfig);
      const weights = randomWeights(config, 5);
      const genLength = 8;
      const L = prompts.reduce((a, p) => a + p.length + genLength, 0);
      const make = (await factory())?.(plan, config, weights, L) as (L: number) => StepRunner;
      let native = 0;
      const run = (withStats: boolean) =>
        inOneBatch(plan, config, weights, genLength, (n) =>
          counting(make(n), withStats, () => {
            native++;
          }),
        );
      const js = await run(false);
      const withNative = await run(true);
      expect(native).toBeGreaterThan(2 * 2);
      expect(withNative.sequences.map((s) => [s.generated, s.steps])).toEqual(
        js.sequences.map((s) => [s.generated, s.steps]),
      );
    },
  );

// A step may output no row (a plan whose output set is empty on it): its head still answers, with
// logits of no rows, asked for them or not.
for (const [backend, factory] of backends)
  test.skipIf(backend === 'webgpu' && !gpu)(
    `${backend}: a head of no rows returns logits of no rows`,
    async () => {
      const plan = examplePlan('fast-dllm-dual');
      const config = modelFor(plan, backendConfigs[0] as ModelConfig);
      const weights = randomWeights(config, 5);
      const genLength = 8;
      const L = prompts.reduce((a, p) => a + p.length + genLength, 0);
      const make = (await factory())?.(plan, config, weights, L) as (L: number) => StepRunner;
      // The first step's head, asked for no rows; the generation ends there (a head runs once a step).
      const emptyHead = async (read: boolean) => {
        let got: HeadOutput | undefined;
        await inOneBatch(plan, config, weights, genLength, (n) => {
          const r = make(n);
          const { head } = r;
          r.head = async (program) => {
            got = await head.call(r, program, new Int32Array(0), read);
            throw new Error('stop');
          };
          return r;
        }).catch(() => {});
        return got;
      };
      for (const read of [true, false])
        expect((await emptyHead(read))?.logits?.shape).toEqual([0, config.vocab]);
    },
  );

// A weight of the head that is not finite poisons one token's logit in every row: the first step's
// first row is named, from the backend's statistics.
for (const [backend, factory] of backends)
  test.skipIf(backend === 'webgpu' && !gpu)(
    `${backend}: a head weight that is not finite ends the generation at the first row, found by the statistics`,
    async () => {
      const plan = examplePlan('fast-dllm-dual');
      const config = modelFor(plan, { ...(backendConfigs[0] as ModelConfig), tieEmbeddings: false });
      // Asked for its logits, the step names the value too; not asked, a device runner leaves them
      // where they are and the statistics alone name the row.
      for (const [bad, logits] of [
        [Number.NaN, false],
        [Number.POSITIVE_INFINITY, false],
        [Number.NaN, true],
      ] as const) {
        const weights = randomWeights(config, 5);
        const head = weights.get('lm_head.weight');
        if (!head) throw new Error('the model has no lm_head.weight');
        head.data.fill(bad, 2 * config.dModel, 3 * config.dModel);
        const make = (await factory())?.(plan, config, weights, 5 + 8) as (L: number) => StepRunner;
        let first = -1;
        let stats = 0;
        const run = generate({
          model: { config, weights },
          plan,
          lowered: compilePlan(plan, config, { target: 'reference' }).lowered,
          prompts: [Int32Array.from([1, 5, 9, 2, 6])],
          genLength: 8,
          logits,
          runner: (n) => {
            const r = make(n);
            const { head } = r;
            r.head = async (program, out, read) => {
              const h = await head.call(r, program, out, read);
              if (first < 0) first = out[0] as number;
              if (h.stats) stats++;
              return h;
            };
            return r;
          },
        });
        await expect(run).rejects.toThrow(NonFiniteLogits);
        await expect(run).rejects.toThrow(`canvas position ${first} are not finite`);
        expect(stats).toBe(1);
      }
    },
  );

test('a logit that is not finite, found by the native statistics, ends the generation naming its position', async () => {
  const plan = examplePlan('fast-dllm-dual');
  const config = modelFor(plan, backendConfigs[0] as ModelConfig);
  const weights = randomWeights(config, 5);
  const build = buildCpu(plan, config, 5 + 8);
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    let heads = 0;
    let poisoned = -1;
    let native = 0;
    const run = generate({
      model: { config, weights },
      plan,
      lowered: build.lowered,
      prompts: [Int32Array.from([1, 5, 9, 2, 6])],
      genLength: 8,
      runner: (L) => {
        const r = new CpuRunner(build, weights, L);
        const { head } = r;
        r.head = (program, out) => {
          const h = head.call(r, program, out);
          if (h.stats) native++;
          // The third step's second row: one logit, not the mask's, with the statistics of the
          // poisoned logits computed as the runner's head computes them.
          if (++heads !== 3) return h;
          const logits = float32Of(h.logits as HostTensor) as Float32Array;
          logits[config.vocab + 2] = bad;
          poisoned = out[1] as number;
          const stats = new Float64Array(3 * out.length);
          const argmax = new Int32Array(out.length);
          bindPrimitives(build.primitives).softmaxStats(
            out.length,
            config.vocab,
            logits,
            config.maskTokenId,
            stats,
            argmax,
          );
          return { logits: h.logits, stats: { stats, argmax } };
        };
        return r;
      },
    });
    await expect(run).rejects.toThrow(NonFiniteLogits);
    await expect(run).rejects.toThrow(`canvas position ${poisoned} are not finite (${bad})`);
    expect(native).toBe(3);
  }
});

// The logits of a step are megabytes with a real vocabulary: a generation that only decodes needs
// their statistics, which a device runner reads back instead (16 bytes a row).
for (const backend of ['ptx (emulated)', 'webgpu'] as const)
  test.skipIf(backend === 'webgpu' && !gpu)(
    `${backend}: a generation that does not ask for the logits leaves them on the device, and decides the same`,
    async () => {
      const plan = examplePlan('fast-dllm-dual');
      const config = modelFor(plan, { ...(backendConfigs[0] as ModelConfig), vocab: 1000 });
      const weights = randomWeights(config, 5);
      const genLength = 8;
      const L = prompts.reduce((a, p) => a + p.length + genLength, 0);
      // Bytes read back from the device in pieces of at least one row of logits.
      let logitBytes = 0;
      const large = (bytes: number) => {
        if (bytes >= config.vocab * 4) logitBytes += bytes;
      };
      let make: (n: number) => StepRunner;
      let done = () => {};
      if (backend === 'webgpu') {
        const device = (await gpuOrSkip('prediction statistics on WebGPU')) as GPUDevice;
        const create = device.createBuffer.bind(device);
        const spy = vi.spyOn(device, 'createBuffer').mockImplementation((d) => {
          if (d.usage & GPUBufferUsage.MAP_READ) large(d.size);
          return create(d);
        });
        done = () => spy.mockRestore();
        make = (await webGpuRunnerFactory())(plan, config, weights, L);
      } else {
        const build = buildPtx(plan, config, L);
        make = (n) => {
          const device = new EmulatedDevice();
          const { download } = device;
          device.download = (dst, src) => {
            large(dst.byteLength);
            download.call(device, dst, src);
          };
          return new PtxRunner(build, weights, n, device);
        };
      }
      const run = async (logits: boolean) => {
        logitBytes = 0;
        const r = await inOneBatch(
          plan,
          config,
          weights,
          genLength,
          make,
          logits ? { logits: true, onStep: () => {} } : {},
        );
        return { bytes: logitBytes, sequences: r.sequences.map((s) => [s.generated, s.steps]) };
      };
      try {
        const asked = await run(true);
        const left = await run(false);
        expect(asked.bytes).toBeGreaterThan(4 * config.vocab * genLength);
        expect(left.bytes).toBe(0);
        expect(left.sequences).toEqual(asked.sequences);
      } finally {
        done();
      }
    },
  );
