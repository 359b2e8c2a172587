/**
 * `npx tsx bench/gemm-ab.ts <git revision> [--rows 1,16,17,32,64] [--threads 1,2] [--dtype f32]
 * [--multi]`: the GEMM of the working tree's CPU primitives against the one of another revision, in
 * one process, on the projections of the policies benchmark's model (8 layers, weights cold: 400 MB
 * streamed per pass in float32, 200 MB in 16 bits; --dtype f32, bf16, f16 or bf16-dot). With
 * --multi the working tree calls them as a plan's layer does, q/k/v and gate/up each in one
 * gemmMulti call (kv_gemm_multi, kv_gemm16_multi), the revision each alone: the gain of one call.
 *
 * On this shared VM two runs of the same build differ by up to 1.5x, and two builds each reading
 * its own copy of the weights by up to 15% (where the copies lie in memory), so kernel changes are
 * compared here: both builds loaded side by side, reading one packed copy of the weights, calls
 * alternating (the order flipped every round), the median per layer reported for each.
 */
import { Dtype16, type Primitives } from '../src/backends/cpu/primitives.ts';
import { fmt, table } from '../src/report/table.ts';
import { abBuilds, abCommand, alternate } from './ab.ts';
import { benchModel } from './policies.ts';
import { randomFloats } from './timing.ts';

const usage =
  'usage: npx tsx bench/gemm-ab.ts <git revision> [--rows 1,16,17,32,64] [--threads 1,2] [--dtype f32|bf16|f16|bf16-dot] [--multi]';
const dtypes: Readonly<Record<string, Dtype16 | 0>> = {
  f32: 0,
  bf16: Dtype16.bf16,
  f16: Dtype16.f16,
  'bf16-dot': Dtype16.bf16Dot,
};

const { rev, values, list, flag, fail } = abCommand(
  'gemm-ab',
  usage,
  ['rows', 'threads', 'dtype'],
  ['multi'],
);
const multi = flag('multi');
const rows = list('rows', '1,16,17,32,64');
const threads = list('threads', '1,2');
const dtypeName = values.dtype ?? 'f32';
const dtype = dtypes[dtypeName];
if (dtype === undefined) fail(`unknown --dtype "${dtypeName}"`, 2);
const builds = abBuilds(rev, fail);

const c = benchModel;
// [k, n] of every projection of a layer, as the lowering calls them (q, k, v, o, gate, up, down),
// the input each reads (q, k and v one, gate and up another), and the groups a layer calls at once.
const input = [0, 0, 0, 3, 4, 4, 6];
const groups = [[0, 1, 2], [3], [4, 5], [6]];
const shapes: [number, number][] = [
  ...Array.from({ length: 4 }, (): [number, number] => [c.dModel, c.dModel]),
  [c.dModel, c.dFF],
  [c.dModel, c.dFF],
  [c.dFF, c.dModel],
];
const [first, second] = builds;
// 16-bit weights: the top halves of random floats (bf16 of them; as f16, finite values near 1).
const pack = (p: Primitives, n: number, k: number, w: Float32Array): Float32Array | Uint16Array =>
  dtype
    ? p.packWeight16(
        n,
        k,
        new Uint16Array(w.buffer, w.byteOffset, 2 * w.length).filter((_, h) => h % 2 === 1),
        dtype,
      )
    : p.packWeight(n, k, w);
const weights = Array.from({ length: c.layers }, (_, l) =>
  shapes.map(([k, n], i) => pack(second.p, n, k, randomFloats(n * k, 100 * l + i))),
);
// Both builds read the working tree's packing: the revision must pack the same bytes.
shapes.forEach(([k, n], i) => {
  const theirs = pack(first.p, n, k, randomFloats(n * k, i));
  const ours = weights[0]?.[i] as Float32Array | Uint16Array;
  const bytes = (x: Float32Array | Uint16Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  if (!bytes(theirs).equals(bytes(ours)))
    fail(`the two builds pack a ${n}x${k} weight differently: their GEMMs cannot share it`, 1);
});

const out: string[][] = [];
for (const t of threads) {
  for (const b of builds) b.p.setThreads(t);
  for (const m of rows) {
    const a = shapes.map(([k]) => randomFloats(m * k, 1));
    const cs = shapes.map(([, n]) => new Float32Array(m * n));
    const layerPass = (p: Primitives, build: number) => {
      const start = performance.now();
      for (const w of weights)
        for (const group of groups) {
          const ai = a[input[group[0] as number] as number] as Float32Array;
          const k = (shapes[group[0] as number] as [number, number])[0];
          if (multi && build === 1 && group.length > 1) {
            const gemms = group.map((i) => ({
              n: (shapes[i] as [number, number])[1],
              packed: w[i] as Float32Array | Uint16Array,
              bias: null,
              c: cs[i] as Float32Array,
            }));
            p.gemmMulti(m, k, ai, k, null, gemms, dtype || undefined);
            continue;
          }
          for (const i of group) {
            const n = (shapes[i] as [number, number])[1];
            const [wi, ci] = [w[i] as Float32Array | Uint16Array, cs[i] as Float32Array];
            if (dtype) p.gemm16(m, n, k, ai, k, null, wi as Uint16Array, dtype, null, ci, n, false);
            else p.gemm(m, n, k, ai, k, null, wi as Float32Array, null, ci, n, false);
          }
        }
      return (performance.now() - start) / c.layers;
    };
    const [ta, tb] = alternate(builds, 16, layerPass) as [number, number];
    out.push([String(t), String(m), fmt(ta), fmt(tb), fmt(ta / tb)]);
    console.error(`threads ${t}, ${m} rows: ${rev} ${fmt(ta)} ms, working tree ${fmt(tb)} ms a layer`);
  }
}
console.log(
  `${dtypeName} GEMM${multi ? ` (working tree: q/k/v and gate/up in one call each)` : ''}, ms per layer of ${c.name} (median of 16 alternating passes over ${c.layers} layers)\n`,
);
console.log(table(['threads', 'rows', rev, 'working tree', 'speedup'], out));
