/**
 * `npx tsx bench/attention-ab.ts <git revision> [--kernel attention|mass] [--shapes
 * nq:nk:heads:kvh:hd,...] [--threads 1,2] [--cold]`: the attention (or the score probes' attention mass,
 * kv_attention_mass) of the working tree's CPU primitives against the one of another revision, in
 * one process, on the same inputs, calls alternating (bench/ab.ts), the median per call reported
 * for each, and the largest difference between their outputs (O and log-sum-exp, or the mass; 0
 * when a change keeps every bit).
 *
 * The default shapes of attention: the kernel bench's N=1024 and N=4096 (8 and 32 heads, d 64 and
 * 128, GQA) and a cached step of the policies model (32 queries over 160 keys, 16 heads of 64). Of
 * the mass: the probes of the policies model's quick canvas (every row, and the one row of
 * `attn_similarity`, over 160 keys) and the kernel bench's 1024 x 1024.
 *
 * --cold: each call reads its own copy of K and V, from copies that fill 128 MB, so that they come
 * from memory as in a plan's step, where a layer's GEMMs stream their weights between its
 * attentions (with one copy, every call after the first finds them in cache).
 */
import type { Primitives } from '../src/backends/cpu/primitives.ts';
import { fmt, table } from '../src/report/table.ts';
import { abBuilds, abCommand, alternate } from './ab.ts';
import { randomFloats } from './timing.ts';

const usage =
  'usage: npx tsx bench/attention-ab.ts <git revision> [--kernel attention|mass] [--shapes nq:nk:heads:kvh:hd,...] [--threads 1,2] [--cold]';
const { rev, values, list, flag, fail } = abCommand(
  'attention-ab',
  usage,
  ['kernel', 'shapes', 'threads'],
  ['cold'],
);
const threads = list('threads', '1,2');
const kernel = values.kernel ?? 'attention';
if (kernel !== 'attention' && kernel !== 'mass') fail(`unknown --kernel "${kernel}"`, 2);
const defaultShapes =
  kernel === 'mass'
    ? '160:160:16:16:64,1:160:16:16:64,1024:1024:16:16:64'
    : '1024:1024:8:8:64,1024:1024:32:8:128,4096:4096:8:8:128,4096:4096:32:32:64,32:160:16:16:64';
const shapes = (values.shapes ?? defaultShapes).split(',').map((s) => {
  const v = s.split(':').map(Number);
  const [nq, nk, heads, kvh, hd] = v as [number, number, number, number, number];
  if (v.length !== 5 || v.some((n) => !Number.isInteger(n) || n < 1) || heads % kvh !== 0)
    fail(`bad shape "${s}": nq:nk:heads:kvh:hd, positive, heads a multiple of kvh`, 2);
  if (nq * heads * hd > 2 ** 27 || nk * kvh * hd > 2 ** 27) fail(`shape "${s}" is too large`, 2);
  return { nq, nk, heads, kvh, hd };
});
const builds = abBuilds(rev, fail);

const out: string[][] = [];
for (const t of threads) {
  for (const b of builds) b.p.setThreads(t);
  for (const { nq, nk, heads, kvh, hd } of shapes) {
    const q = randomFloats(nq * heads * hd, 1);
    const copies = flag('cold') ? Math.max(2, Math.ceil(128e6 / (8 * nk * kvh * hd))) : 1;
    const kvs = Array.from({ length: copies }, (_, i) => [
      randomFloats(nk * kvh * hd, 2 + 2 * i),
      randomFloats(nk * kvh * hd, 3 + 2 * i),
    ]);
    const next = builds.map(() => 0); // each build reads the copies in the same order
    const qpos = Int32Array.from({ length: nq }, (_, i) => nk - nq + i);
    const kpos = Int32Array.from({ length: nk }, (_, i) => i);
    const outs = builds.map(() => ({
      o: new Float32Array(nq * heads * hd),
      lse: new Float32Array(nq * heads),
      mass: new Float64Array(nk),
    }));
    // The mass scores Q K^T only (no P V).
    const flops = (kernel === 'mass' ? 2 : 4) * nq * nk * heads * hd;
    // Enough calls per sample for about 20 ms at 150 GFLOP/s; at most 100 (a call has fixed costs:
    // the mass of one query row is mostly its transpose of K).
    const calls = Math.min(100, Math.max(1, Math.round(3e9 / flops)));
    const scale = 1 / Math.sqrt(hd);
    const pass = (p: Primitives, build: number) => {
      const r = outs[build] as (typeof outs)[0];
      const start = performance.now();
      for (let c = 0; c < calls; c++) {
        const n = next[build] ?? 0;
        next[build] = n + 1;
        const [kc, vc] = kvs[n % copies] as [Float32Array, Float32Array];
        if (kernel === 'mass')
          p.attentionMass(nq, nk, heads, kvh, hd, scale, q, kc, qpos, kpos, null, r.mass);
        else p.attention(nq, nk, heads, kvh, hd, scale, q, kc, vc, qpos, kpos, null, r.o, r.lse);
      }
      return (performance.now() - start) / calls;
    };
    const [ta, tb] = alternate(builds, 10, pass) as [number, number];
    const [a, b] = outs as [(typeof outs)[0], (typeof outs)[0]];
    const gap = (x: ArrayLike<number>, y: ArrayLike<number>) => {
      let m = 0;
      for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs((x[i] as number) - (y[i] as number)));
      return m;
    };
    const diff = Math.max(gap(a.o, b.o), gap(a.lse, b.lse), gap(a.mass, b.mass));
    const shape = `${nq}x${nk} H=${heads}${kvh === heads ? '' : ` KV=${kvh}`} d=${hd}`;
    out.push([String(t), shape, fmt(ta), fmt(tb), fmt(ta / tb), fmt((flops / tb) * 1e-6), String(diff)]);
    console.error(`threads ${t}, ${shape}: ${rev} ${fmt(ta)} ms, working tree ${fmt(tb)} ms`);
  }
}
console.log(`${kernel}, ms per call (median of 10 alternating samples)\n`);
console.log(table(['threads', 'shape', rev, 'working tree', 'speedup', 'GFLOP/s (tree)', 'max |diff|'], out));
