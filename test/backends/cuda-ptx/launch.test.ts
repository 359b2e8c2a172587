/**
 * Launches generated kernels through the CUDA driver API and compares them with plain JS
 * references. Needs an NVIDIA GPU with libcuda; elsewhere every test prints
 * `skipped: no CUDA device` (and asserts nothing else).
 */
import { describe, expect, test } from 'vitest';
import { CudaDriver, cudaAvailable } from '../../../src/backends/cuda-ptx/driver.ts';
import { GEMM_PATHS, generateKernel } from '../../../src/backends/cuda-ptx/kernels/index.ts';

const status = cudaAvailable();
const skip = () => {
  if (status.ok) return false;
  console.log(`skipped: no CUDA device (${status.reason})`);
  return true;
};

let seed = 12345;
const rand = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return (seed / 2 ** 31) * 2 - 1;
};
const randoms = (n: number) => Float32Array.from({ length: n }, rand);
const maxAbs = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, x, i) => Math.max(m, Math.abs(x - (b[i] as number))), 0);

describe('PTX kernels on a GPU', () => {
  test('GEMM, every path, indirect rows and bias, against a JS reference', () => {
    if (skip()) return;
    const cuda = CudaDriver.open();
    try {
      const M = 70;
      const N = 96;
      const K = 72;
      const src = 80;
      const a = randoms(src * K);
      const wt = randoms(K * N); // k-major [K][N]
      const bias = randoms(N);
      const rows = Int32Array.from({ length: M }, (_, i) => (i * 7) % src);
      const want = new Float32Array(M * N);
      for (let m = 0; m < M; m++)
        for (let n = 0; n < N; n++) {
          let s = bias[n] as number;
          for (let k = 0; k < K; k++)
            s += (a[(rows[m] as number) * K + k] as number) * (wt[k * N + n] as number);
          want[m * N + n] = s;
        }
      const dA = cuda.alloc(a.byteLength);
      const dW = cuda.alloc(wt.byteLength);
      const dB = cuda.alloc(bias.byteLength);
      const dR = cuda.alloc(rows.byteLength);
      const dC = cuda.alloc(M * N * 4);
      cuda.upload(dA, a);
      cuda.upload(dW, wt);
      cuda.upload(dB, bias);
      cuda.upload(dR, rows);
      for (const path of GEMM_PATHS) {
        const k = generateKernel({ op: 'gemm', path }, 'sm_80');
        const fn = cuda.getFunction(cuda.loadModule(k.ptx), k.name, k.sharedBytes);
        cuda.fill(dC, 0xff, M * N * 4);
        cuda.launch(fn, [Math.ceil(N / 64), Math.ceil(M / 64), 1], [k.block, 1, 1], k.sharedBytes, [
          { type: 'u64', value: dC },
          { type: 'u64', value: dA },
          { type: 'u64', value: dR },
          { type: 'u64', value: dW },
          { type: 'u64', value: dB },
          { type: 'u32', value: M },
          { type: 'u32', value: N },
          { type: 'u32', value: K },
          { type: 'u32', value: K },
          { type: 'u32', value: N },
        ]);
        cuda.synchronize();
        const got = new Float32Array(M * N);
        cuda.download(got, dC);
        const tol = path === 'fma' ? 1e-4 : path === 'mma-f16' ? 3e-2 : 1.5e-1;
        expect(maxAbs(got, want), path).toBeLessThan(tol);
      }
    } finally {
      cuda.close();
    }
  });

  test('attention over an index list, block-causal, empty rows, with and without the merge epilogue', () => {
    if (skip()) return;
    const cuda = CudaDriver.open();
    try {
      const hd = 16;
      const heads = 4;
      const kvh = 2;
      const group = heads / kvh;
      const L = 40;
      const nq = 9;
      const qpos = Int32Array.from({ length: nq }, (_, i) => i * 4);
      const kpos = Int32Array.from({ length: 23 }, (_, j) => ((j * 3 + 1) % (L - 1)) + 1); // never position 0
      const nk = kpos.length;
      // Position 0 (query 0) is in block -5, before every key: an empty row (o = 0, lse = -inf).
      const blocks = Int32Array.from({ length: L }, (_, p) => (p === 0 ? -5 : Math.floor(p / 8) - 1));
      const q = randoms(nq * heads * hd);
      const kc = randoms(L * kvh * hd);
      const vc = randoms(L * kvh * hd);
      const scale = 1 / Math.sqrt(hd);
      const wantO = new Float32Array(nq * heads * hd);
      const wantL = new Float32Array(nq * heads);
      for (let i = 0; i < nq; i++)
        for (let h = 0; h < heads; h++) {
          const g = Math.floor(h / group);
          const s: number[] = [];
          for (let j = 0; j < nk; j++) {
            const kp = kpos[j] as number;
            if ((blocks[kp] as number) > (blocks[qpos[i] as number] as number)) continue;
            let d = 0;
            for (let e = 0; e < hd; e++)
              d += (q[(i * heads + h) * hd + e] as number) * (kc[(kp * kvh + g) * hd + e] as number);
            s.push(j, d * scale);
          }
          const m = Math.max(-Infinity, ...s.filter((_, x) => x % 2 === 1));
          let l = 0;
          const o = new Float64Array(hd);
          for (let x = 0; x < s.length; x += 2) {
            const p = Math.exp((s[x + 1] as number) - m);
            l += p;
            const kp = kpos[s[x] as number] as number;
            for (let e = 0; e < hd; e++)
              o[e] = (o[e] as number) + p * (vc[(kp * kvh + g) * hd + e] as number);
          }
          for (let e = 0; e < hd; e++) wantO[(i * heads + h) * hd + e] = l > 0 ? (o[e] as number) / l : 0;
          wantL[i * heads + h] = l > 0 ? m + Math.log(l) : -Infinity;
        }
      const up = (x: Float32Array | Int32Array) => {
        const d = cuda.alloc(x.byteLength);
        cuda.upload(d, x);
        return d;
      };
      const [dq, dk, dv, dqp, dkp, db] = [up(q), up(kc), up(vc), up(qpos), up(kpos), up(blocks)];
      const dO = cuda.alloc(wantO.byteLength);
      const dL = cuda.alloc(wantL.byteLength);
      // The merge variant merges with an empty partial (lse = -inf), which must give the same result.
      const dOp = up(randoms(wantO.length));
      const dLp = up(new Float32Array(wantL.length).fill(-Infinity));
      for (const merge of [false, true]) {
        const k = generateKernel({ op: 'attention', headDim: hd, merge }, 'sm_80');
        const fn = cuda.getFunction(cuda.loadModule(k.ptx), k.name, k.sharedBytes);
        cuda.launch(fn, [Math.ceil((nq * group) / 32), kvh, 1], [k.block, 1, 1], k.sharedBytes, [
          { type: 'u64', value: dO },
          { type: 'u64', value: dL },
          { type: 'u64', value: dq },
          { type: 'u64', value: dk },
          { type: 'u64', value: dv },
          { type: 'u64', value: dqp },
          { type: 'u64', value: dkp },
          { type: 'u64', value: db },
          { type: 'u32', value: nq },
          { type: 'u32', value: nk },
          { type: 'u32', value: heads },
          { type: 'u32', value: group },
          { type: 'u32', value: kvh * hd },
          { type: 'u32', value: hd },
          { type: 'u32', value: kvh * hd },
          { type: 'u32', value: hd },
          { type: 'f32', value: scale },
          ...(merge
            ? ([
                { type: 'u64', value: dOp },
                { type: 'u64', value: dLp },
              ] as const)
            : []),
        ]);
        cuda.synchronize();
        const o = new Float32Array(wantO.length);
        const l = new Float32Array(wantL.length);
        cuda.download(o, dO);
        cuda.download(l, dL);
        expect(maxAbs(o, wantO)).toBeLessThan(1e-4);
        for (let x = 0; x < l.length; x++) {
          if (wantL[x] === -Infinity) expect(l[x]).toBe(-Infinity);
          else expect(Math.abs((l[x] as number) - (wantL[x] as number))).toBeLessThan(1e-4);
        }
      }
    } finally {
      cuda.close();
    }
  });
});
