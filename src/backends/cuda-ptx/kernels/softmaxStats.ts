/**
 * The softmax statistics of rows of logits (src/model/golden.ts softmaxStats), next to them on the
 * device: the PTX runner launches it after the head stage and reads back 16 bytes a row instead of
 * computing them over rows × vocab on the host.
 */
import { type Arch, f32, type GeneratedKernel, type KernelParam, LN2, LOG2E, NEG_INF, Ptx } from './ptx.ts';

export const STATS_THREADS = 256;
const WARPS = STATS_THREADS / 32;
/** No index: above every token, so that a real index wins a tie against it. */
const NONE = '0xFFFFFFFF';
/** Shared memory: per warp its top two, index and flag (16 bytes), then its two sums (8 bytes). */
const TOP_AT = 0;
const SUM_AT = WARPS * 16;

/** The four values a thread keeps of the logits it has seen: the two largest, where the first is, any non-finite. */
interface Top {
  readonly m1: string;
  readonly m2: string;
  readonly at: string;
  readonly bad: string;
}

/**
 * Joins another thread's top two into `t`: the larger first (the lower index of equals), the
 * second the largest of the rest.
 */
function joinTop(x: Ptx, t: Top, o: Top): void {
  const first = x.p();
  const eq = x.p();
  const lower = x.p();
  x.i(`setp.gt.f32 ${first}, ${o.m1}, ${t.m1}`);
  x.i(`setp.eq.f32 ${eq}, ${o.m1}, ${t.m1}`);
  x.i(`setp.lt.u32 ${lower}, ${o.at}, ${t.at}`);
  x.i(`and.pred ${eq}, ${eq}, ${lower}`);
  x.i(`or.pred ${first}, ${first}, ${eq}`);
  const low = x.f();
  x.i(`selp.f32 ${low}, ${t.m1}, ${o.m1}, ${first}`);
  x.i(`max.f32 ${t.m2}, ${t.m2}, ${o.m2}`);
  x.i(`max.f32 ${t.m2}, ${t.m2}, ${low}`);
  x.at(first, `mov.f32 ${t.m1}, ${o.m1}`);
  x.at(first, `mov.u32 ${t.at}, ${o.at}`);
  x.i(`or.b32 ${t.bad}, ${t.bad}, ${o.bad}`);
}

/**
 * A loop over a row's logits in chunks of 256, uniform across the CTA (its bound is the chunk's,
 * not the thread's): `body` gets the thread's index, whether it is in the row and the logit
 * (0 past the row's end, where nothing reads it).
 */
function chunks(
  x: Ptx,
  v: string,
  row: string,
  t: string,
  stem: string,
  body: (i: string, inRow: string, l: string) => void,
): void {
  const base = x.r();
  const done = x.p();
  const top = x.label(stem);
  const end = x.label(`${stem}_end`);
  x.i(`mov.u32 ${base}, 0`);
  x.place(top);
  x.i(`setp.ge.u32 ${done}, ${base}, ${v}`);
  x.at(done, `bra.uni ${end}`);
  const i = x.r();
  x.i(`add.s32 ${i}, ${base}, ${t}`);
  const inRow = x.p();
  x.i(`setp.lt.u32 ${inRow}, ${i}, ${v}`);
  const l = x.f();
  x.i(`mov.f32 ${l}, 0f00000000`);
  x.at(inRow, `ld.global.nc.f32 ${l}, [${x.addr(row, i, 4)}]`);
  body(i, inRow, l);
  x.i(`add.s32 ${base}, ${base}, ${STATS_THREADS}`);
  x.i(`bra.uni ${top}`);
  x.place(end);
}

/**
 * stats[3r..3r+2] = confidence, margin and entropy of softmax(logits[r]) without the logit
 * `exclude` (at least v: none), stats[3 rows + r] its most likely token (the lowest index of
 * equals) as a float (exact below 2^24), or -1 where the row holds a logit that is not finite (the
 * excluded one too) or none but the excluded one: 16 bytes a row, read back in one copy
 * (src/backends/deviceStats.ts). One CTA of 256 threads per row: each thread keeps the top two of its share, a warp
 * joins them by butterfly shuffles and every thread joins the warps' from shared memory (so each
 * holds the row's), then the sums of exp(l - max) and exp(l - max) (l - max) the same way.
 */
export function softmaxStatsKernel(arch: Arch): GeneratedKernel {
  const name = 'kvp_softmax_stats';
  const params: KernelParam[] = [
    { name: 'p_logits', type: 'u64' },
    { name: 'p_stats', type: 'u64' },
    { name: 'p_rows', type: 'u32' },
    { name: 'p_v', type: 'u32' },
    { name: 'p_exclude', type: 'u32' },
  ];
  const x = new Ptx();
  const t = x.special('%tid.x');
  const r = x.special('%ctaid.x');
  const LOGITS = x.gptr('p_logits');
  const STATS = x.gptr('p_stats');
  const rows = x.param('p_rows', 'u32');
  const v = x.param('p_v', 'u32');
  const exclude = x.param('p_exclude', 'u32');
  const past = x.p();
  x.i(`setp.ge.u32 ${past}, ${r}, ${rows}`);
  x.at(past, 'bra.uni $L_exit');
  const rowOff = x.rd();
  x.i(`mul.wide.u32 ${rowOff}, ${r}, ${v}`);
  x.i(`shl.b64 ${rowOff}, ${rowOff}, 2`);
  const row = x.rd();
  x.i(`add.s64 ${row}, ${LOGITS}, ${rowOff}`);

  const top: Top = { m1: x.f(), m2: x.f(), at: x.r(), bad: x.r() };
  x.i(`mov.f32 ${top.m1}, ${NEG_INF}`);
  x.i(`mov.f32 ${top.m2}, ${NEG_INF}`);
  x.i(`mov.u32 ${top.at}, ${NONE}`);
  x.i(`mov.u32 ${top.bad}, 0`);
  const keep = x.p();
  chunks(x, v, row, t, 'top', (i, inRow, l) => {
    const fin = x.p();
    x.i(`testp.finite.f32 ${fin}, ${l}`);
    x.at(`!${fin}`, `mov.u32 ${top.bad}, 1`);
    x.i(`setp.ne.u32 ${keep}, ${i}, ${exclude}`);
    x.i(`and.pred ${keep}, ${keep}, ${inRow}`);
    // A larger logit pushes the largest down to second; one between them becomes the second.
    const gt1 = x.p();
    const gt2 = x.p();
    x.i(`setp.gt.and.f32 ${gt1}, ${l}, ${top.m1}, ${keep}`);
    x.i(`setp.gt.and.f32 ${gt2}, ${l}, ${top.m2}, ${keep}`);
    x.at(gt2, `mov.f32 ${top.m2}, ${l}`);
    x.at(gt1, `mov.f32 ${top.m2}, ${top.m1}`);
    x.at(gt1, `mov.f32 ${top.m1}, ${l}`);
    x.at(gt1, `mov.u32 ${top.at}, ${i}`);
  });
  const other: Top = { m1: x.f(), m2: x.f(), at: x.r(), bad: x.r() };
  for (const lane of [16, 8, 4, 2, 1]) {
    for (const k of ['m1', 'm2', 'at', 'bad'] as const)
      x.i(`shfl.sync.bfly.b32 ${other[k]}, ${top[k]}, ${lane}, 31, -1`);
    joinTop(x, top, other);
  }
  const smem = x.r();
  x.i(`mov.u32 ${smem}, kvp_smem`);
  const laneId = x.r();
  x.i(`and.b32 ${laneId}, ${t}, 31`);
  const warp = x.r();
  x.i(`shr.u32 ${warp}, ${t}, 5`);
  const lead = x.p();
  x.i(`setp.eq.u32 ${lead}, ${laneId}, 0`);
  const slot = x.r();
  x.i(`mad.lo.s32 ${slot}, ${warp}, 16, ${smem}`);
  x.at(lead, `st.shared.v4.b32 [${slot}+${TOP_AT}], {${top.m1}, ${top.m2}, ${top.at}, ${top.bad}}`);
  x.i('bar.sync 0');
  x.i(`ld.shared.v4.b32 {${top.m1}, ${top.m2}, ${top.at}, ${top.bad}}, [${smem}+${TOP_AT}]`);
  for (let w = 1; w < WARPS; w++) {
    x.i(
      `ld.shared.v4.b32 {${other.m1}, ${other.m2}, ${other.at}, ${other.bad}}, [${smem}+${TOP_AT + w * 16}]`,
    );
    joinTop(x, top, other);
  }
  // Every thread holds the row's top two now: a broken row skips the sums, uniformly.
  const broken = x.p();
  const none = x.p();
  x.i(`setp.ne.u32 ${broken}, ${top.bad}, 0`);
  x.i(`setp.eq.u32 ${none}, ${top.at}, ${NONE}`);
  x.i(`or.pred ${broken}, ${broken}, ${none}`);
  const write = x.label('write');
  const [sum, weighted] = x.fs(2);
  x.i(`mov.f32 ${sum}, 0f00000000`);
  x.i(`mov.f32 ${weighted}, 0f00000000`);
  x.at(broken, `bra.uni ${write}`);
  chunks(x, v, row, t, 'sums', (i, inRow, l) => {
    x.i(`setp.ne.u32 ${keep}, ${i}, ${exclude}`);
    x.i(`and.pred ${keep}, ${keep}, ${inRow}`);
    const [z, e] = x.fs(2);
    x.i(`sub.f32 ${z}, ${l}, ${top.m1}`);
    x.i(`mul.f32 ${e}, ${z}, ${LOG2E}`);
    x.i(`ex2.approx.ftz.f32 ${e}, ${e}`);
    x.at(keep, `add.f32 ${sum}, ${sum}, ${e}`);
    x.at(keep, `fma.rn.f32 ${weighted}, ${e}, ${z}, ${weighted}`);
  });
  const tmp = x.f();
  for (const lane of [16, 8, 4, 2, 1])
    for (const s of [sum, weighted]) {
      x.i(`shfl.sync.bfly.b32 ${tmp}, ${s}, ${lane}, 31, -1`);
      x.i(`add.f32 ${s}, ${s}, ${tmp}`);
    }
  const sslot = x.r();
  x.i(`mad.lo.s32 ${sslot}, ${warp}, 8, ${smem}`);
  x.at(lead, `st.shared.v2.f32 [${sslot}+${SUM_AT}], {${sum}, ${weighted}}`);
  x.i('bar.sync 0');
  const [ws, ww] = x.fs(2);
  x.i(`ld.shared.v2.f32 {${sum}, ${weighted}}, [${smem}+${SUM_AT}]`);
  for (let w = 1; w < WARPS; w++) {
    x.i(`ld.shared.v2.f32 {${ws}, ${ww}}, [${smem}+${SUM_AT + w * 8}]`);
    x.i(`add.f32 ${sum}, ${sum}, ${ws}`);
    x.i(`add.f32 ${weighted}, ${weighted}, ${ww}`);
  }
  x.place(write);
  const [conf, d, gap, series, logSum, entropy] = x.fs(6);
  x.i(`rcp.rn.f32 ${conf}, ${sum}`);
  // 1 - exp(d) for the second largest: by its series near 0, where the difference would cancel.
  x.i(`sub.f32 ${d}, ${top.m2}, ${top.m1}`);
  x.i(`mul.f32 ${gap}, ${d}, ${LOG2E}`);
  x.i(`ex2.approx.ftz.f32 ${gap}, ${gap}`);
  x.i(`sub.f32 ${gap}, ${f32(1)}, ${gap}`);
  x.i(`fma.rn.f32 ${series}, ${d}, ${f32(1 / 24)}, ${f32(1 / 6)}`);
  x.i(`fma.rn.f32 ${series}, ${d}, ${series}, ${f32(0.5)}`);
  x.i(`fma.rn.f32 ${series}, ${d}, ${series}, ${f32(1)}`);
  x.i(`mul.f32 ${series}, ${series}, ${d}`);
  x.i(`sub.f32 ${series}, ${f32(0)}, ${series}`);
  const near = x.p();
  x.i(`setp.gt.f32 ${near}, ${d}, ${f32(-1 / 32)}`);
  x.at(near, `mov.f32 ${gap}, ${series}`);
  x.i(`mul.f32 ${gap}, ${gap}, ${conf}`);
  x.i(`lg2.approx.ftz.f32 ${logSum}, ${sum}`);
  x.i(`mul.f32 ${logSum}, ${logSum}, ${LN2}`);
  x.i(`mul.f32 ${entropy}, ${weighted}, ${conf}`);
  x.i(`sub.f32 ${entropy}, ${logSum}, ${entropy}`);
  const zero = x.f();
  x.i(`mov.f32 ${zero}, 0f00000000`);
  const arg = x.f();
  x.i(`cvt.rn.f32.u32 ${arg}, ${top.at}`);
  x.at(broken, `mov.f32 ${conf}, ${zero}`);
  x.at(broken, `mov.f32 ${gap}, ${zero}`);
  x.at(broken, `mov.f32 ${entropy}, ${zero}`);
  x.at(broken, `mov.f32 ${arg}, ${f32(-1)}`);
  const first = x.p();
  x.i(`setp.eq.u32 ${first}, ${t}, 0`);
  const three = x.r();
  x.i(`mul.lo.s32 ${three}, ${r}, 3`);
  const out = x.addr(STATS, three, 4);
  x.at(first, `st.global.f32 [${out}], ${conf}`);
  x.at(first, `st.global.f32 [${out}+4], ${gap}`);
  x.at(first, `st.global.f32 [${out}+8], ${entropy}`);
  const tail = x.r();
  x.i(`mad.lo.s32 ${tail}, ${rows}, 3, ${r}`);
  x.at(first, `st.global.f32 [${x.addr(STATS, tail, 4)}], ${arg}`);
  x.place('$L_exit');
  return {
    name,
    kind: 'stats',
    params,
    block: STATS_THREADS,
    sharedBytes: SUM_AT + WARPS * 8,
    ptx: x.module({
      arch,
      entry: name,
      params,
      maxThreads: STATS_THREADS,
      dynamicShared: true,
      doc: 'Softmax statistics of rows of logits: confidence, margin, entropy and argmax (-1: not finite).',
    }),
  };
}
