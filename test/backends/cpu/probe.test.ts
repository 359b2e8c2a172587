/**
 * The compiled score probe (CpuProbe) against the probe program on the float64 interpreter, under
 * the budget derived from the interpreter's eager float32 evaluation of the same program.
 */
import koffi from 'koffi';
import { describe, expect, test, vi } from 'vitest';
import { buildCpu, CpuRunner } from '../../../src/backends/cpu/runner.ts';
import { float32Tensor } from '../../../src/ir/tensor.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { createRng, randomWeights } from '../../../src/model/weights.ts';
import type { CachePart } from '../../../src/runtime/cachePart.ts';
import { generate } from '../../../src/runtime/generate.ts';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import { InterpretedProbe, type Probe, type ProbeOutput } from '../../../src/runtime/probe.ts';
import { ModelScores } from '../../../src/runtime/scores.ts';
import { backendConfigs, examplePlan } from '../../runtime/support.ts';
import { EPS32, expectClose } from '../../support/float32.ts';

const outputs: ProbeOutput[] = ['mass', 'mass_heads', 'row', 'query_key', 'v'];

describe.each(backendConfigs.map((c) => [c.name, c] as const))(
  'CPU probe on %s',
  (_name, config: ModelConfig) => {
    const plan = examplePlan('d2cache');
    const L = 13;
    const weights = randomWeights(config, 5);
    const runner = new CpuRunner(buildCpu(plan, config, L), weights, L);
    const rng = createRng(9);
    const h = {
      shape: [L, config.dModel],
      data: Float64Array.from({ length: L * config.dModel }, () => 2 * rng.uniform() - 1),
    };
    // The prompt is block -1; two blocks of the generation, so that the block-causal mask hides keys.
    const blocks = Int32Array.from({ length: L }, (_, i) => (i < 5 ? -1 : Math.floor((i - 5) / 4)));
    const reference = new InterpretedProbe(config, weights);
    const eager = new InterpretedProbe(config, weights, true);

    test.each(
      outputs.flatMap((o) =>
        [
          ['all queries', Int32Array.from({ length: L }, (_, i) => i)],
          ['some queries', Int32Array.from([7, 2, 11])],
          ['no query', new Int32Array(0)],
        ].flatMap(([label, q]) =>
          [true, false].map((causal) => [o, label as string, q as Int32Array, causal] as const),
        ),
      ),
    )('%s, %s, block-causal %s', (output, _label, queries, causal) => {
      const b = causal ? blocks : undefined;
      for (const layer of [0, config.layers - 1]) {
        const got = runner.probe.measure(output, layer, h, queries, b);
        const ref = reference.measure(output, layer, h, queries, b);
        expect(got.shape).toEqual(ref.shape);
        expectClose(
          `${output} layer ${layer}`,
          got.data,
          ref.data,
          eager.measure(output, layer, h, queries, b).data,
        );
      }
    });

    test("each KV head's mass is what its own query heads give, and the heads' masses add up to the mass", () => {
      const queries = Int32Array.from([7, 2, 11]);
      const heads = runner.probe.measure('mass_heads', 1, h, queries, blocks);
      const mass = runner.probe.measure('mass', 1, h, queries, blocks).data;
      const kvh = config.kvHeads;
      expect(heads.shape).toEqual([L, kvh]);
      const group = config.heads / kvh;
      for (let g = 0; g < kvh; g++) {
        let total = 0;
        for (let j = 0; j < L; j++) total += heads.data[j * kvh + g] as number;
        // Each query row gives one unit of probability through each of the group's query heads.
        expect(Math.abs(total - queries.length * group)).toBeLessThanOrEqual(
          queries.length * group * L * EPS32,
        );
      }
      for (let j = 0; j < L; j++) {
        let sum = 0;
        for (let g = 0; g < kvh; g++) sum += heads.data[j * kvh + g] as number;
        expect(Math.abs(sum - (mass[j] as number))).toBeLessThanOrEqual(
          config.heads * queries.length * EPS32,
        );
      }
      // The heads see the keys differently: the columns are not one another's copies.
      if (kvh > 1) expect(heads.data[0]).not.toBe(heads.data[1]);
    });

    test('block-causal mass differs from unmasked mass (the mask reaches the kernel)', () => {
      const all = Int32Array.from({ length: L }, (_, i) => i);
      const masked = runner.probe.measure('mass', 0, h, all, blocks).data;
      const open = runner.probe.measure('mass', 0, h, all, undefined).data;
      // Keys of the last block are seen only by their own block's queries under the mask.
      expect(masked[L - 1]).toBeLessThan(open[L - 1] as number);
      // Every query row spreads one unit of probability per head either way, up to the float32
      // rounding of its L probabilities.
      const rows = L * config.heads;
      const total = (m: Float64Array) => m.reduce((a, x) => a + x, 0);
      expect(Math.abs(total(masked) - rows)).toBeLessThanOrEqual(rows * L * EPS32);
      expect(Math.abs(total(open) - rows)).toBeLessThanOrEqual(rows * L * EPS32);
    });

    // A probe keeps each layer's projections and projects again only the rows whose hidden state
    // changed: after any history of calls it must give every bit a probe without history gives.
    test('after earlier calls, a probe gives every bit a new probe gives (kept projections)', () => {
      const kept = new CpuRunner(buildCpu(plan, config, L), weights, L);
      const r = createRng(21);
      const state = Float32Array.from(h.data);
      const all = Int32Array.from({ length: L }, (_, i) => i);
      const calls: [ProbeOutput, Int32Array][] = [
        ['mass', all],
        ['row', all],
        ['k', all],
        ['query_key', Int32Array.from([7, 2, 11])],
        ['mass_heads', all],
        ['mass', Int32Array.from([3])],
      ];
      // Per layer, whether the probe keeps every row's queries too.
      const memo = new Map<number, boolean>();
      for (let step = 0; step < 12; step++) {
        // No row, every row, or a few rows changed; a changed row may be given back its old bytes.
        const changed = step % 4 === 1 ? [] : step % 4 === 2 ? all : [...all].filter(() => r.uniform() < 0.3);
        for (const row of changed) {
          const at = (row as number) * config.dModel;
          if (step % 3 === 0) state.set(Float32Array.from(h.data.subarray(at, at + config.dModel)), at);
          else for (let d = 0; d < config.dModel; d++) state[at + d] = 2 * r.uniform() - 1;
        }
        const hs = float32Tensor([L, config.dModel], Float32Array.from(state));
        for (const layer of [0, config.layers - 1]) {
          const [output, queries] = calls[(step + layer) % calls.length] as [ProbeOutput, Int32Array];
          const fresh = new CpuRunner(buildCpu(plan, config, L), weights, L);
          const bytes = (x: { data: ArrayLike<number> }) => {
            const d = x.data as Float32Array | Float64Array;
            return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
          };
          const label = `step ${step} layer ${layer} ${output}`;
          const got = kept.probe.measure(output, layer, hs, queries, blocks);
          // It says what it projected: with no row changed, nothing, unless it had kept no queries
          // and now projects every row's; with every row given new values, every row.
          const withQ = output !== 'k' && queries.length === L;
          const reusable = memo.has(layer) && (!withQ || memo.get(layer));
          if (step % 4 === 1) expect(kept.probe.projected?.keys, label).toBe(reusable ? 0 : L);
          if (step % 4 === 2 && step % 3 !== 0) expect(kept.probe.projected?.keys, label).toBe(L);
          memo.set(layer, (reusable && memo.get(layer)) || withQ);
          expect(
            bytes(got).equals(bytes(fresh.probe.measure(output, layer, hs, queries, blocks))),
            label,
          ).toBe(true);
        }
      }
    });
  },
);

test('generation on the CPU backend measures scores with the compiled probe (a batch of two)', async () => {
  // d2Cache ranks rows by rollout every step, dLLM-Cache by value drift at every layer above 0.
  for (const [name, output] of [
    ['d2cache', 'mass'],
    ['dllm-cache', 'v'],
  ] as const) {
    const plan = examplePlan(name);
    const config = modelFor(plan, backendConfigs[0] as ModelConfig);
    const weights = randomWeights(config, 5);
    const prompts = [Int32Array.from([3, 1, 4]), Int32Array.from([2, 7, 1, 8, 2])];
    const build = buildCpu(
      plan,
      config,
      prompts.reduce((a, p) => a + p.length + 8, 0),
    );
    const calls: ProbeOutput[] = [];
    const runner = (L: number) => {
      const r = new CpuRunner(build, weights, L);
      const compiled = r.probe;
      // An own property shadows the runner's getter: the compiled probe, counted.
      return Object.defineProperty(r, 'probe', {
        value: {
          measure: (...args: Parameters<typeof compiled.measure>) => {
            calls.push(args[0]);
            return compiled.measure(...args);
          },
        },
      });
    };
    await generate({
      model: { config, weights },
      plan,
      lowered: build.lowered,
      prompts,
      genLength: 8,
      runner,
    });
    expect(calls.filter((c) => c === output).length, name).toBeGreaterThan(0);
  }
});

/** An example plan's CPU runner over L rows, on the first backend model fitted to the plan. */
function exampleRunner(name: string, L: number, seed: number) {
  const plan = examplePlan(name);
  const config = modelFor(plan, backendConfigs[0] as ModelConfig);
  const weights = randomWeights(config, seed);
  return { config, weights, runner: new CpuRunner(buildCpu(plan, config, L), weights, L) };
}

test('drift scores on the compiled probe equal the host computation on the same float32 rows', () => {
  const L = 11;
  const { config, weights, runner } = exampleRunner('dllm-cache', L, 6);
  const rng = createRng(4);
  const floats = (n: number) => Float32Array.from({ length: n }, () => 2 * rng.uniform() - 1);
  const kv = config.kvHeads * config.headDim;
  // Caches of K, V and hidden states, row 3 never written (NaN), as a backend hands them out.
  const cache = (width: number) => {
    const f = floats(L * width);
    f.fill(Number.NaN, 3 * width, 4 * width);
    return f;
  };
  const parts = { k: cache(kv), v: cache(kv), hidden: cache(config.dModel) };
  const cachePart = (part: CachePart) =>
    float32Tensor(part === 'hidden' ? [L, config.dModel] : [L, config.kvHeads, config.headDim], parts[part]);
  const compiled = runner.probe;
  const h = float32Tensor([L, config.dModel], floats(L * config.dModel));
  const scoresWith = (probe: Probe) => {
    const s = new ModelScores(config, weights, L, new Int32Array(L), false, cachePart, undefined, probe);
    s.hiddenIn.set(1, h);
    return s;
  };
  const inC = scoresWith(compiled);
  // The same probe without rowDrift: the host's float64 loop over the same rows.
  const onHost = scoresWith({ measure: (...a) => compiled.measure(...a) });
  for (const name of ['key_drift', 'value_drift', 'hidden_drift'])
    for (const head of [undefined, 0, config.kvHeads - 1]) {
      const got = inC.score(name, undefined, 1, head);
      const want = onHost.score(name, undefined, 1, head);
      expect(got[3], name).toBe(1);
      for (let i = 0; i < L; i++)
        expect(Math.abs((got[i] as number) - (want[i] as number)), `${name} ${head} row ${i}`).toBeLessThan(
          1e-12,
        );
      expect(new Set(got).size).toBeGreaterThan(L / 2);
    }
});

test('the probe views each packed weight once, however often it measures', () => {
  // A view of native memory counts as external memory to V8: one per call set off a full
  // collection every few layers, whose threads then took the kernels' second core.
  const L = 9;
  const { config, runner } = exampleRunner('d2cache', L, 2);
  const h = float32Tensor([L, config.dModel], new Float32Array(L * config.dModel).fill(0.5));
  const all = Int32Array.from({ length: L }, (_, i) => i);
  const view = vi.spyOn(koffi, 'view');
  try {
    const measure = () => {
      for (const layer of [0, 1])
        for (const output of ['mass', 'v'] as const) runner.probe.measure(output, layer, h, all, undefined);
    };
    measure();
    const first = view.mock.calls.length;
    // q, k and v of two layers, each viewed once.
    expect(first).toBe(6);
    for (let i = 0; i < 4; i++) measure();
    expect(view.mock.calls.length).toBe(first);
  } finally {
    view.mockRestore();
  }
});
