/**
 * Flash-style attention over an index list of keys, read straight from canvas-sized K and V.
 *
 * For query row i (of nq) and head h: o[i][h] = softmax_j(scale · q[i][h]·k[kpos[j]][h/group]) · v,
 * over the nk keys of the list, j visible iff no block array is given or
 * blocks[kpos[j]] <= blocks[qpos[i]] (block-causal) and, in the `sequences` variant (a batch of
 * sequences shares the canvas), seqs[kpos[j]] = seqs[qpos[i]]. lse[i][h] is the log-sum-exp of the visible
 * scores in natural log (the one log base of kvplan); a row with no visible key gives o = 0 and
 * lse = -inf.
 *
 * Work split: a CTA (128 threads) owns 32 (query row, head) pairs of one KV head — the heads of a
 * GQA group share every K/V tile — and walks the key list in tiles of 16 keys. Each tile of K and
 * of V is gathered global→shared by `cp.async` (16-byte pieces, zero-filled past the list) in two
 * commit groups, so that V arrives while the scores are computed. Four threads share a pair: each
 * computes 4 of the 16 scores and owns a quarter of the output row (interleaved 4-float chunks).
 * Softmax is online, in base 2: q is prescaled by scale·log2(e) when it is staged, exponentials
 * are `ex2.approx`, the running max starts at -inf and masked scores are -inf (ex2(-inf) = 0).
 *
 * The `merge` variant merges the result with an existing partial (o_prev, lse_prev) by the LSE
 * rule in its epilogue, so that split attention needs no separate merge launch.
 *
 * Layouts: q, o [nq][heads][hd]; lse [nq][heads]; K/V element (row r, kv head g, d) at
 * r·row_stride + g·head_stride + d (row-major canvas: row_stride = kvh·hd, head_stride = hd;
 * head-major cache: row_stride = hd, head_stride = L·hd). Strides multiples of 4.
 */
import {
  type Arch,
  type GeneratedKernel,
  KernelGenError,
  type KernelParam,
  LN2,
  LOG2E,
  NEG_INF,
  Ptx,
} from './ptx.ts';

export const ATT_PAIRS = 32;
export const ATT_KEYS = 16;
export const ATT_THREADS = 128;
/** What a CTA may use without the opt-in attribute. */
export const SHARED_LIMIT = 48 * 1024;

export interface AttentionOptions {
  readonly arch: Arch;
  readonly headDim: number;
  readonly merge: boolean;
  /** Mask by sequence too: the kernel takes a last parameter p_seqs. */
  readonly sequences?: boolean;
}

export function attentionSharedBytes(hd: number, sequences = false): number {
  const row = (hd + 4) * 4;
  return ATT_PAIRS * row + 2 * ATT_KEYS * row + ATT_PAIRS * 20 * 4 + ATT_KEYS * 4 * (sequences ? 2 : 1) + 64;
}

export function attentionKernel(o: AttentionOptions): GeneratedKernel {
  const hd = o.headDim;
  if (!Number.isInteger(hd) || hd < 4 || hd % 4 !== 0)
    throw new KernelGenError(`attention needs head_dim a multiple of 4 (got ${hd})`);
  const seq = o.sequences === true;
  const shared = attentionSharedBytes(hd, seq);
  if (shared > SHARED_LIMIT)
    throw new KernelGenError(
      `attention with head_dim ${hd} needs ${shared} bytes of shared memory, above the ${SHARED_LIMIT} a launch gets without opting in`,
    );
  const name = `kvp_attention_hd${hd}${o.merge ? '_merge' : ''}${seq ? '_seq' : ''}`;
  const params: KernelParam[] = [
    { name: 'p_o', type: 'u64' },
    { name: 'p_lse', type: 'u64' },
    { name: 'p_q', type: 'u64' },
    { name: 'p_k', type: 'u64' },
    { name: 'p_v', type: 'u64' },
    { name: 'p_qpos', type: 'u64' },
    { name: 'p_kpos', type: 'u64' },
    { name: 'p_blocks', type: 'u64', nullable: true },
    { name: 'p_nq', type: 'u32' },
    { name: 'p_nk', type: 'u32' },
    { name: 'p_heads', type: 'u32' },
    { name: 'p_group', type: 'u32' },
    { name: 'p_k_row_stride', type: 'u32' },
    { name: 'p_k_head_stride', type: 'u32' },
    { name: 'p_v_row_stride', type: 'u32' },
    { name: 'p_v_head_stride', type: 'u32' },
    { name: 'p_scale', type: 'f32' },
    ...(o.merge
      ? ([
          { name: 'p_o_prev', type: 'u64' },
          { name: 'p_lse_prev', type: 'u64' },
        ] as const)
      : []),
    ...(seq ? ([{ name: 'p_seqs', type: 'u64' }] as const) : []),
  ];
  const x = new Ptx();
  const hd4 = hd / 4;
  const ROW = (hd + 4) * 4; // bytes per staged row of Q, K, V
  const QS = ATT_PAIRS * ROW;
  const KS = ATT_KEYS * ROW;
  const PROW = 20 * 4;
  const nch = Math.ceil(hd4 / 4); // output chunks per thread
  const ragged = hd4 % 4 !== 0;

  const t = x.special('%tid.x');
  const cx = x.special('%ctaid.x');
  const g = x.special('%ctaid.y');
  const O = x.gptr('p_o');
  const LSE = x.gptr('p_lse');
  const Q = x.gptr('p_q');
  const K = x.gptr('p_k');
  const V = x.gptr('p_v');
  const QPOS = x.gptr('p_qpos');
  const KPOS = x.gptr('p_kpos');
  const bl = x.isNull('p_blocks');
  const BLK = x.rd();
  x.i(`cvta.to.global.u64 ${BLK}, ${bl.raw}`);
  const hasBlocks = x.p();
  x.i(`not.pred ${hasBlocks}, ${bl.pred}`);
  const nq = x.param('p_nq', 'u32');
  const nk = x.param('p_nk', 'u32');
  const heads = x.param('p_heads', 'u32');
  const group = x.param('p_group', 'u32');
  const ksr = x.param('p_k_row_stride', 'u32');
  const ksh = x.param('p_k_head_stride', 'u32');
  const vsr = x.param('p_v_row_stride', 'u32');
  const vsh = x.param('p_v_head_stride', 'u32');
  const scale = x.param('p_scale', 'f32');
  const sl2 = x.f();
  x.i(`mul.f32 ${sl2}, ${scale}, ${LOG2E}`);
  const sQ = x.r();
  x.i(`mov.u32 ${sQ}, kvp_smem`);
  const sK = x.r();
  x.i(`add.s32 ${sK}, ${sQ}, ${QS}`);
  const sV = x.r();
  x.i(`add.s32 ${sV}, ${sK}, ${KS}`);
  const sP = x.r();
  x.i(`add.s32 ${sP}, ${sV}, ${KS}`);
  const sKB = x.r();
  x.i(`add.s32 ${sKB}, ${sP}, ${ATT_PAIRS * PROW}`);
  const SEQ = seq ? x.gptr('p_seqs') : undefined;

  const npairs = x.r();
  x.i(`mul.lo.s32 ${npairs}, ${nq}, ${group}`);
  const pairBase = x.r();
  x.i(`shl.b32 ${pairBase}, ${cx}, 5`);
  /** (query row i, head h) → row index i·heads + h of q/o/lse, and whether the pair exists. */
  const pairRow = (pair: string) => {
    const ok = x.p();
    x.i(`setp.lt.u32 ${ok}, ${pair}, ${npairs}`);
    const i = x.r();
    x.i(`div.u32 ${i}, ${pair}, ${group}`);
    const hh = x.r();
    x.i(`mul.lo.s32 ${hh}, ${i}, ${group}`);
    x.i(`sub.s32 ${hh}, ${pair}, ${hh}`);
    const row = x.r();
    x.i(`mad.lo.s32 ${row}, ${g}, ${group}, ${hh}`);
    x.i(`mad.lo.s32 ${row}, ${i}, ${heads}, ${row}`);
    return { ok, i, row };
  };

  x.comment('this thread: pair qr (4 threads each), part pt');
  const qr = x.r();
  x.i(`shr.u32 ${qr}, ${t}, 2`);
  const pt = x.r();
  x.i(`and.b32 ${pt}, ${t}, 3`);
  const myPair = x.r();
  x.i(`add.s32 ${myPair}, ${pairBase}, ${qr}`);
  const me = pairRow(myPair);
  const qb = x.r();
  x.i(`mov.u32 ${qb}, 0`);
  {
    const lq = x.p();
    x.i(`and.pred ${lq}, ${hasBlocks}, ${me.ok}`);
    const qp = x.r();
    x.i(`mov.u32 ${qp}, 0`);
    x.at(lq, `ld.global.nc.u32 ${qp}, [${x.addr(QPOS, me.i, 4)}]`);
    x.at(lq, `ld.global.nc.u32 ${qb}, [${x.addr(BLK, qp, 4)}]`);
  }
  let qs: string | undefined;
  if (SEQ) {
    qs = x.r();
    x.i(`mov.u32 ${qs}, 0`);
    const qp = x.r();
    x.i(`mov.u32 ${qp}, 0`);
    x.at(me.ok, `ld.global.nc.u32 ${qp}, [${x.addr(QPOS, me.i, 4)}]`);
    x.at(me.ok, `ld.global.nc.u32 ${qs}, [${x.addr(SEQ, qp, 4)}]`);
  }

  x.comment('stage the CTA’s 32 query vectors, prescaled by scale*log2(e)');
  {
    const total = ATT_PAIRS * hd4;
    const v = x.fs(4);
    for (let pass = 0; pass < Math.ceil(total / ATT_THREADS); pass++) {
      const idx = x.r();
      x.i(`add.s32 ${idx}, ${t}, ${pass * ATT_THREADS}`);
      const pr = x.r();
      x.i(`div.u32 ${pr}, ${idx}, ${hd4}`);
      const c = x.r();
      x.i(`rem.u32 ${c}, ${idx}, ${hd4}`);
      const pair = x.r();
      x.i(`add.s32 ${pair}, ${pairBase}, ${pr}`);
      const q = pairRow(pair);
      for (const r of v) x.i(`mov.f32 ${r}, 0f00000000`);
      const src = x.rd();
      x.i(`mul.wide.u32 ${src}, ${q.row}, ${hd * 4}`);
      const cw = x.rd();
      x.i(`mul.wide.u32 ${cw}, ${c}, 16`);
      x.i(`add.s64 ${src}, ${src}, ${cw}`);
      x.i(`add.s64 ${src}, ${src}, ${Q}`);
      x.at(q.ok, `ld.global.nc.v4.f32 {${v.join(', ')}}, [${src}]`);
      for (const r of v) x.i(`mul.f32 ${r}, ${r}, ${sl2}`);
      const dst = x.r();
      x.i(`mul.lo.s32 ${dst}, ${pr}, ${ROW}`);
      x.i(`mad.lo.s32 ${dst}, ${c}, 16, ${dst}`);
      x.i(`add.s32 ${dst}, ${dst}, ${sQ}`);
      const inRange = x.p();
      x.i(`setp.lt.u32 ${inRange}, ${idx}, ${total}`);
      x.at(inRange, `st.shared.v4.f32 [${dst}], {${v.join(', ')}}`);
    }
  }

  const m = x.f();
  const l = x.f();
  x.i(`mov.f32 ${m}, ${NEG_INF}`);
  x.i(`mov.f32 ${l}, 0f00000000`);
  const acc = x.fs(nch * 4);
  for (const a of acc) x.i(`mov.f32 ${a}, 0f00000000`);
  const gk = x.r();
  x.i(`mul.lo.s32 ${gk}, ${g}, ${ksh}`);
  const gv = x.r();
  x.i(`mul.lo.s32 ${gv}, ${g}, ${vsh}`);
  const qAddr = x.r();
  x.i(`mad.lo.s32 ${qAddr}, ${qr}, ${ROW}, ${sQ}`);
  const kAddr = x.r();
  x.i(`mad.lo.s32 ${kAddr}, ${pt}, ${ROW}, ${sK}`);
  const pAddr = x.r();
  x.i(`mad.lo.s32 ${pAddr}, ${qr}, ${PROW}, ${sP}`);
  const vAddr = x.r();
  x.i(`mad.lo.s32 ${vAddr}, ${pt}, 16, ${sV}`);

  const k0 = x.r();
  x.i(`mov.u32 ${k0}, 0`);
  const done = x.label('done');
  const loop = x.label('tile');
  const none = x.p();
  x.i(`setp.eq.u32 ${none}, ${nk}, 0`);
  x.at(none, `bra.uni ${done}`);
  x.i('bar.sync 0');
  x.place(loop);
  x.comment('gather the tile’s keys and values: cp.async, K then V in two groups');
  const passes = Math.ceil((ATT_KEYS * hd4) / ATT_THREADS);
  const info: { ok: string; idxOk: string; kp: string; c: string; dst: string }[] = [];
  for (let pass = 0; pass < passes; pass++) {
    const idx = x.r();
    x.i(`add.s32 ${idx}, ${t}, ${pass * ATT_THREADS}`);
    const idxOk = x.p();
    x.i(`setp.lt.u32 ${idxOk}, ${idx}, ${ATT_KEYS * hd4}`);
    const j = x.r();
    x.i(`div.u32 ${j}, ${idx}, ${hd4}`);
    const c = x.r();
    x.i(`rem.u32 ${c}, ${idx}, ${hd4}`);
    const key = x.r();
    x.i(`add.s32 ${key}, ${k0}, ${j}`);
    const ok = x.p();
    x.i(`setp.lt.and.u32 ${ok}, ${key}, ${nk}, ${idxOk}`);
    const kp = x.r();
    x.i(`mov.u32 ${kp}, 0`);
    x.at(ok, `ld.global.nc.u32 ${kp}, [${x.addr(KPOS, key, 4)}]`);
    const dst = x.r();
    x.i(`mul.lo.s32 ${dst}, ${j}, ${ROW}`);
    x.i(`mad.lo.s32 ${dst}, ${c}, 16, ${dst}`);
    info.push({ ok, idxOk, kp, c, dst });
  }
  for (const [base, sr, gh, sbase] of [
    [K, ksr, gk, sK],
    [V, vsr, gv, sV],
  ] as const) {
    for (const p of info) {
      const e = x.rd();
      x.i(`mul.wide.u32 ${e}, ${p.kp}, ${sr}`);
      const off = x.r();
      x.i(`mad.lo.s32 ${off}, ${p.c}, 4, ${gh}`);
      const offw = x.rd();
      x.i(`cvt.u64.u32 ${offw}, ${off}`);
      x.i(`add.s64 ${e}, ${e}, ${offw}`);
      x.i(`shl.b64 ${e}, ${e}, 2`);
      x.i(`add.s64 ${e}, ${e}, ${base}`);
      const src = x.rd();
      x.i(`selp.b64 ${src}, ${e}, ${base}, ${p.ok}`);
      const size = x.r();
      x.i(`selp.u32 ${size}, 16, 0, ${p.ok}`);
      const dst = x.r();
      x.i(`add.s32 ${dst}, ${p.dst}, ${sbase}`);
      x.at(p.idxOk, `cp.async.cg.shared.global [${dst}], [${src}], 16, ${size}`);
    }
    x.i('cp.async.commit_group');
  }
  {
    x.comment('block ids of the tile’s keys');
    const lt = x.p();
    x.i(`setp.lt.u32 ${lt}, ${t}, ${ATT_KEYS}`);
    const key = x.r();
    x.i(`add.s32 ${key}, ${k0}, ${t}`);
    const ld = x.p();
    x.i(`setp.lt.and.u32 ${ld}, ${key}, ${nk}, ${lt}`);
    const inList = SEQ ? x.p() : undefined;
    if (inList) x.i(`mov.pred ${inList}, ${ld}`);
    x.i(`and.pred ${ld}, ${ld}, ${hasBlocks}`);
    const kp = x.r();
    const kb = x.r();
    x.i(`mov.u32 ${kb}, 0`);
    x.at(ld, `ld.global.nc.u32 ${kp}, [${x.addr(KPOS, key, 4)}]`);
    x.at(ld, `ld.global.nc.u32 ${kb}, [${x.addr(BLK, kp, 4)}]`);
    const dst = x.r();
    x.i(`mad.lo.s32 ${dst}, ${t}, 4, ${sKB}`);
    x.at(lt, `st.shared.u32 [${dst}], ${kb}`);
    if (SEQ && inList) {
      x.comment('and their sequence ids, after the block ids');
      const ks = x.r();
      x.i(`mov.u32 ${ks}, 0`);
      x.at(inList, `ld.global.nc.u32 ${kp}, [${x.addr(KPOS, key, 4)}]`);
      x.at(inList, `ld.global.nc.u32 ${ks}, [${x.addr(SEQ, kp, 4)}]`);
      x.at(lt, `st.shared.u32 [${dst}+${ATT_KEYS * 4}], ${ks}`);
    }
  }
  x.i('cp.async.wait_group 1');
  x.i('bar.sync 0');
  x.comment('scores of keys pt, pt+4, pt+8, pt+12 (already in log2 units)');
  const s = x.fs(4);
  for (const r of s) x.i(`mov.f32 ${r}, 0f00000000`);
  const qv = x.fs(4);
  const kv = x.fs(16);
  for (let d4 = 0; d4 < hd4; d4++) {
    x.i(`ld.shared.v4.f32 {${qv.join(', ')}}, [${qAddr}+${d4 * 16}]`);
    for (let i = 0; i < 4; i++)
      x.i(`ld.shared.v4.f32 {${kv.slice(i * 4, i * 4 + 4).join(', ')}}, [${kAddr}+${i * 4 * ROW + d4 * 16}]`);
    for (let i = 0; i < 4; i++)
      for (let e = 0; e < 4; e++) x.i(`fma.rn.f32 ${s[i]}, ${qv[e]}, ${kv[i * 4 + e]}, ${s[i]}`);
  }
  for (let i = 0; i < 4; i++) {
    const key = x.r();
    x.i(`add.s32 ${key}, ${k0}, ${pt}`);
    x.i(`add.s32 ${key}, ${key}, ${4 * i}`);
    const vis = x.p();
    x.i(`setp.lt.u32 ${vis}, ${key}, ${nk}`);
    const kb = x.r();
    x.i(`mad.lo.s32 ${kb}, ${pt}, 4, ${sKB}`);
    x.i(`ld.shared.u32 ${kb}, [${kb}+${16 * i}]`);
    const later = x.p();
    x.i(`setp.gt.s32 ${later}, ${kb}, ${qb}`);
    x.i(`and.pred ${later}, ${later}, ${hasBlocks}`);
    const hide = x.p();
    x.i(`not.pred ${hide}, ${vis}`);
    x.i(`or.pred ${hide}, ${hide}, ${later}`);
    if (qs) {
      const ks = x.r();
      x.i(`mad.lo.s32 ${ks}, ${pt}, 4, ${sKB}`);
      x.i(`ld.shared.u32 ${ks}, [${ks}+${16 * i + ATT_KEYS * 4}]`);
      const other = x.p();
      x.i(`setp.ne.s32 ${other}, ${ks}, ${qs}`);
      x.i(`or.pred ${hide}, ${hide}, ${other}`);
    }
    x.i(`selp.f32 ${s[i]}, ${NEG_INF}, ${s[i]}, ${hide}`);
  }
  x.comment('online softmax across the 4 threads of the pair');
  const mx = x.f();
  const tmp = x.f();
  x.i(`max.f32 ${mx}, ${s[0]}, ${s[1]}`);
  x.i(`max.f32 ${mx}, ${mx}, ${s[2]}`);
  x.i(`max.f32 ${mx}, ${mx}, ${s[3]}`);
  for (const lane of [1, 2]) {
    x.i(`shfl.sync.bfly.b32 ${tmp}, ${mx}, ${lane}, 31, -1`);
    x.i(`max.f32 ${mx}, ${mx}, ${tmp}`);
  }
  const mNew = x.f();
  x.i(`max.f32 ${mNew}, ${m}, ${mx}`);
  const empty = x.p();
  x.i(`setp.eq.f32 ${empty}, ${mNew}, ${NEG_INF}`);
  const mUse = x.f();
  x.i(`selp.f32 ${mUse}, 0f00000000, ${mNew}, ${empty}`);
  const alpha = x.f();
  x.i(`sub.f32 ${alpha}, ${m}, ${mUse}`);
  x.i(`ex2.approx.ftz.f32 ${alpha}, ${alpha}`);
  const rs = x.f();
  x.i(`mov.f32 ${rs}, 0f00000000`);
  const pSt = x.r(); // &P[qr][pt]
  x.i(`mad.lo.s32 ${pSt}, ${pt}, 4, ${pAddr}`);
  for (let i = 0; i < 4; i++) {
    x.i(`sub.f32 ${s[i]}, ${s[i]}, ${mUse}`);
    x.i(`ex2.approx.ftz.f32 ${s[i]}, ${s[i]}`);
    x.i(`add.f32 ${rs}, ${rs}, ${s[i]}`);
    x.i(`st.shared.f32 [${pSt}+${16 * i}], ${s[i]}`);
  }
  for (const lane of [1, 2]) {
    x.i(`shfl.sync.bfly.b32 ${tmp}, ${rs}, ${lane}, 31, -1`);
    x.i(`add.f32 ${rs}, ${rs}, ${tmp}`);
  }
  x.i(`fma.rn.f32 ${l}, ${l}, ${alpha}, ${rs}`);
  x.i(`mov.f32 ${m}, ${mNew}`);
  for (const a of acc) x.i(`mul.f32 ${a}, ${a}, ${alpha}`);
  x.i('cp.async.wait_group 0');
  x.i('bar.sync 0');
  x.comment('o += P V over the tile; this thread owns chunks pt, pt+4, ...');
  const pv = x.fs(4);
  const vv = x.fs(4);
  for (let jj = 0; jj < ATT_KEYS / 4; jj++) {
    x.i(`ld.shared.v4.f32 {${pv.join(', ')}}, [${pAddr}+${jj * 16}]`);
    for (let js = 0; js < 4; js++) {
      const j = jj * 4 + js;
      for (let mc = 0; mc < nch; mc++) {
        x.i(`ld.shared.v4.f32 {${vv.join(', ')}}, [${vAddr}+${j * ROW + mc * 64}]`);
        for (let e = 0; e < 4; e++) {
          const a = acc[mc * 4 + e] as string;
          x.i(`fma.rn.f32 ${a}, ${pv[js]}, ${vv[e]}, ${a}`);
        }
      }
    }
  }
  x.i('bar.sync 0');
  x.i(`add.s32 ${k0}, ${k0}, ${ATT_KEYS}`);
  const more = x.p();
  x.i(`setp.lt.u32 ${more}, ${k0}, ${nk}`);
  x.at(more, `bra.uni ${loop}`);
  x.place(done);

  x.comment('normalise; empty rows give o = 0, lse = -inf; lse in natural log');
  const has = x.p();
  x.i(`setp.gt.f32 ${has}, ${l}, 0f00000000`);
  const inv = x.f();
  x.i(`rcp.rn.f32 ${inv}, ${l}`);
  x.i(`selp.f32 ${inv}, ${inv}, 0f00000000, ${has}`);
  for (const a of acc) x.i(`mul.f32 ${a}, ${a}, ${inv}`);
  const lse = x.f();
  x.i(`lg2.approx.f32 ${lse}, ${l}`);
  x.i(`add.f32 ${lse}, ${lse}, ${m}`);
  x.i(`mul.f32 ${lse}, ${lse}, ${LN2}`);
  x.i(`selp.f32 ${lse}, ${lse}, ${NEG_INF}, ${has}`);

  const rowOff = x.rd();
  x.i(`mul.wide.u32 ${rowOff}, ${me.row}, ${hd * 4}`);
  const chunkOk = (mc: number): string | undefined => {
    if (!ragged || mc < nch - 1) return undefined;
    const ok = x.p();
    x.i(`setp.lt.u32 ${ok}, ${pt}, ${hd4 - 4 * mc}`);
    return ok;
  };
  let wa: string | undefined;
  let wb: string | undefined;
  if (o.merge) {
    x.comment('epilogue: merge with the existing partial (o_prev, lse_prev) by the LSE rule');
    const OP = x.gptr('p_o_prev');
    const LP = x.gptr('p_lse_prev');
    const lp = x.f();
    x.i(`mov.f32 ${lp}, ${NEG_INF}`);
    x.at(me.ok, `ld.global.f32 ${lp}, [${x.addr(LP, me.row, 4)}]`);
    const mm = x.f();
    x.i(`max.f32 ${mm}, ${lp}, ${lse}`);
    const valid = x.p();
    x.i(`setp.ne.f32 ${valid}, ${mm}, ${NEG_INF}`);
    const w1 = x.f();
    const w2 = x.f();
    x.i(`sub.f32 ${w1}, ${lp}, ${mm}`);
    x.i(`mul.f32 ${w1}, ${w1}, ${LOG2E}`);
    x.i(`ex2.approx.ftz.f32 ${w1}, ${w1}`);
    x.i(`sub.f32 ${w2}, ${lse}, ${mm}`);
    x.i(`mul.f32 ${w2}, ${w2}, ${LOG2E}`);
    x.i(`ex2.approx.ftz.f32 ${w2}, ${w2}`);
    const tot = x.f();
    x.i(`add.f32 ${tot}, ${w1}, ${w2}`);
    wa = x.f();
    wb = x.f();
    x.i(`div.rn.f32 ${wa}, ${w1}, ${tot}`);
    x.i(`div.rn.f32 ${wb}, ${w2}, ${tot}`);
    x.i(`selp.f32 ${wa}, ${wa}, 0f00000000, ${valid}`);
    x.i(`selp.f32 ${wb}, ${wb}, 0f00000000, ${valid}`);
    x.i(`lg2.approx.f32 ${tot}, ${tot}`);
    x.i(`fma.rn.f32 ${tot}, ${tot}, ${LN2}, ${mm}`);
    x.i(`selp.f32 ${lse}, ${tot}, ${NEG_INF}, ${valid}`);
    const za = x.p();
    x.i(`setp.eq.f32 ${za}, ${wa}, 0f00000000`);
    const zb = x.p();
    x.i(`setp.eq.f32 ${zb}, ${wb}, 0f00000000`);
    const prev = x.fs(4);
    for (let mc = 0; mc < nch; mc++) {
      const ok = chunkOk(mc);
      const ld = x.p();
      if (ok) x.i(`and.pred ${ld}, ${ok}, ${me.ok}`);
      else x.i(`mov.pred ${ld}, ${me.ok}`);
      for (const r of prev) x.i(`mov.f32 ${r}, 0f00000000`);
      const c = x.r();
      x.i(`add.s32 ${c}, ${pt}, ${4 * mc}`);
      const a = x.rd();
      x.i(`mul.wide.u32 ${a}, ${c}, 16`);
      x.i(`add.s64 ${a}, ${a}, ${rowOff}`);
      x.i(`add.s64 ${a}, ${a}, ${OP}`);
      x.at(ld, `ld.global.v4.f32 {${prev.join(', ')}}, [${a}]`);
      for (let e = 0; e < 4; e++) {
        const r = acc[mc * 4 + e] as string;
        x.i(`mul.f32 ${r}, ${r}, ${wb}`);
        x.i(`selp.f32 ${r}, 0f00000000, ${r}, ${zb}`);
        x.i(`mul.f32 ${tmp}, ${prev[e]}, ${wa}`);
        x.i(`selp.f32 ${tmp}, 0f00000000, ${tmp}, ${za}`);
        x.i(`add.f32 ${r}, ${r}, ${tmp}`);
      }
    }
  }
  x.comment('store o (16-byte chunks) and lse');
  for (let mc = 0; mc < nch; mc++) {
    const ok = chunkOk(mc);
    const st = x.p();
    if (ok) x.i(`and.pred ${st}, ${ok}, ${me.ok}`);
    else x.i(`mov.pred ${st}, ${me.ok}`);
    const c = x.r();
    x.i(`add.s32 ${c}, ${pt}, ${4 * mc}`);
    const a = x.rd();
    x.i(`mul.wide.u32 ${a}, ${c}, 16`);
    x.i(`add.s64 ${a}, ${a}, ${rowOff}`);
    x.i(`add.s64 ${a}, ${a}, ${O}`);
    x.at(st, `st.global.v4.f32 [${a}], {${acc.slice(mc * 4, mc * 4 + 4).join(', ')}}`);
  }
  const first = x.p();
  x.i(`setp.eq.and.u32 ${first}, ${pt}, 0, ${me.ok}`);
  x.at(first, `st.global.f32 [${x.addr(LSE, me.row, 4)}], ${lse}`);
  return {
    name,
    kind: 'attention',
    params,
    block: ATT_THREADS,
    sharedBytes: shared,
    ptx: x.module({
      arch: o.arch,
      entry: name,
      params,
      maxThreads: ATT_THREADS,
      dynamicShared: true,
      doc: `flash attention over an index list of keys, head_dim ${hd}${o.merge ? ', LSE merge epilogue' : ''}${seq ? ', masked by sequence' : ''}; 32 pairs x 16-key tiles per CTA.`,
    }),
  };
}
