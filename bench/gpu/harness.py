#!/usr/bin/env python3
"""The PTX kernels on an NVIDIA GPU without Node.

1. Replays the driver-call traces that bench/gpu/prepare.ts recorded against the JS emulator of the
   kernels (test/backends/cuda-ptx/emulator.ts): the primitive checks (GEMM on every path, attention
   with and without the merge epilogue and the sequence mask) and whole generations driven by the
   PTX runner. Every download that carries a reference must be within its recorded bound, derived
   as in the TypeScript tests (DESIGN.md section 4).
2. With PyTorch: times our GEMM against cuBLAS (torch.matmul) and our attention against
   torch.nn.functional.scaled_dot_product_attention on the same shapes.

Only the standard library is needed for (1): the driver API is reached through ctypes on
libcuda.so.1, in the device's primary context (the one PyTorch uses too).

    python3 bench/gpu/harness.py [--cases .gpu/cases] [--out harness.json] [--no-bench]
"""

import argparse
import ctypes
import json
import math
import os
import struct
import sys
import time
from array import array

WIDTH = {'u64': 8, 'u32': 4, 'f32': 4}
FORMAT = {'u64': '<Q', 'u32': '<I', 'f32': '<f'}


class CudaError(Exception):
    pass


def pack(decl, values):
    """Arguments at their natural alignment, as launch.ts packParams lays them out."""
    offsets = []
    end = 0
    for p in decl:
        w = WIDTH[p['type']]
        at = -(-end // w) * w
        offsets.append(at)
        end = at + w
    buf = bytearray(-(-end // 8) * 8)
    for p, at in zip(decl, offsets):
        struct.pack_into(FORMAT[p['type']], buf, at, values[p['name']])
    return bytes(buf), offsets


def unpack(decl, params, offsets):
    return {p['name']: struct.unpack_from(FORMAT[p['type']], params, at)[0] for p, at in zip(decl, offsets)}


def relocate(params, relocs, bases):
    """Recorded pointers are (allocation id, offset); they become this process's device addresses."""
    out = bytearray(params)
    for r in relocs:
        alloc, off = r['ptr']
        struct.pack_into('<Q', out, r['at'], bases[alloc] + off)
    return bytes(out)


def compare(got, ref, bound):
    """max |got - ref| over finite reference entries; non-finite entries must match; NaN fails."""
    err = 0.0
    mismatched = 0
    nan = False
    scale = 0.0
    for g, r in zip(got, ref):
        if math.isnan(g):
            nan = True
        if math.isfinite(r):
            d = abs(g - r)
            err = max(err, d)
            scale = max(scale, abs(r))
        elif g != r:
            mismatched += 1
    ok = (not nan) and mismatched == 0 and (bound is None or err <= bound)
    return {'error': err, 'bound': bound, 'scale': scale, 'mismatched': mismatched, 'nan': nan, 'ok': ok}


class Driver:
    """The CUDA driver API calls the replay and the benchmarks make, checked."""

    def __init__(self, library='libcuda.so.1', ordinal=0):
        try:
            self.lib = ctypes.CDLL(library)
        except OSError as e:
            raise CudaError(f'no CUDA device: {library} cannot be loaded ({e})') from e
        L = self.lib
        u64, u32, i32, vp = ctypes.c_uint64, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p
        sig = {
            'cuInit': [u32],
            'cuDeviceGet': [ctypes.POINTER(i32), i32],
            'cuDeviceGetAttribute': [ctypes.POINTER(i32), i32, i32],
            'cuDevicePrimaryCtxRetain': [ctypes.POINTER(vp), i32],
            'cuDevicePrimaryCtxRelease_v2': [i32],
            'cuCtxSetCurrent': [vp],
            'cuCtxSynchronize': [],
            'cuModuleLoadData': [ctypes.POINTER(vp), ctypes.c_char_p],
            'cuModuleGetFunction': [ctypes.POINTER(vp), vp, ctypes.c_char_p],
            'cuFuncSetAttribute': [vp, i32, i32],
            'cuMemAlloc_v2': [ctypes.POINTER(u64), ctypes.c_size_t],
            'cuMemFree_v2': [u64],
            'cuMemcpyHtoD_v2': [u64, ctypes.c_char_p, ctypes.c_size_t],
            'cuMemcpyDtoH_v2': [vp, u64, ctypes.c_size_t],
            'cuMemcpyDtoD_v2': [u64, u64, ctypes.c_size_t],
            'cuMemsetD8_v2': [u64, ctypes.c_ubyte, ctypes.c_size_t],
            'cuLaunchKernel': [vp, u32, u32, u32, u32, u32, u32, u32, vp, ctypes.POINTER(vp), vp],
            'cuGetErrorName': [i32, ctypes.POINTER(ctypes.c_char_p)],
        }
        for name, args in sig.items():
            f = getattr(L, name)
            f.argtypes = args
            f.restype = i32
        self.check(L.cuInit(0), 'cuInit')
        dev = ctypes.c_int()
        self.check(L.cuDeviceGet(ctypes.byref(dev), ordinal), 'cuDeviceGet')
        self.dev = dev.value
        self.cc = (self.attribute(75), self.attribute(76))
        ctx = ctypes.c_void_p()
        self.check(L.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), self.dev), 'cuDevicePrimaryCtxRetain')
        self.check(L.cuCtxSetCurrent(ctx), 'cuCtxSetCurrent')
        self.modules = {}

    def check(self, rc, what):
        if rc != 0:
            name = ctypes.c_char_p()
            self.lib.cuGetErrorName(rc, ctypes.byref(name))
            raise CudaError(f'{what} failed: {name.value.decode() if name.value else rc}')

    def attribute(self, a):
        v = ctypes.c_int()
        self.check(self.lib.cuDeviceGetAttribute(ctypes.byref(v), a, self.dev), 'cuDeviceGetAttribute')
        return v.value

    def kernel(self, ptx, name, shared):
        if name in self.modules:
            return self.modules[name]
        mod = ctypes.c_void_p()
        self.check(self.lib.cuModuleLoadData(ctypes.byref(mod), ptx.encode() + b'\0'), f'cuModuleLoadData({name})')
        fn = ctypes.c_void_p()
        self.check(self.lib.cuModuleGetFunction(ctypes.byref(fn), mod, name.encode()), f'cuModuleGetFunction({name})')
        if shared > 48 * 1024:
            self.check(self.lib.cuFuncSetAttribute(fn, 8, shared), 'cuFuncSetAttribute')
        self.modules[name] = fn
        return fn

    def alloc(self, n):
        p = ctypes.c_uint64()
        self.check(self.lib.cuMemAlloc_v2(ctypes.byref(p), max(n, 256)), f'cuMemAlloc({n})')
        return p.value

    def free(self, p):
        self.check(self.lib.cuMemFree_v2(p), 'cuMemFree')

    def htod(self, dst, data):
        if data:
            self.check(self.lib.cuMemcpyHtoD_v2(dst, bytes(data), len(data)), 'cuMemcpyHtoD')

    def dtoh(self, src, n):
        buf = ctypes.create_string_buffer(n)
        if n:
            self.check(self.lib.cuMemcpyDtoH_v2(buf, src, n), 'cuMemcpyDtoH')
        return buf.raw

    def dtod(self, dst, src, n):
        if n:
            self.check(self.lib.cuMemcpyDtoD_v2(dst, src, n), 'cuMemcpyDtoD')

    def memset(self, dst, byte, n):
        if n:
            self.check(self.lib.cuMemsetD8_v2(dst, byte, n), 'cuMemsetD8')

    def launch(self, fn, grid, block, shared, params, offsets, stream=None):
        buf = ctypes.create_string_buffer(params, len(params))
        base = ctypes.addressof(buf)
        ptrs = (ctypes.c_void_p * max(len(offsets), 1))(*[base + o for o in offsets])
        self.check(self.lib.cuLaunchKernel(fn, *grid, *block, shared, stream, ptrs, None), 'cuLaunchKernel')

    def sync(self):
        self.check(self.lib.cuCtxSynchronize(), 'cuCtxSynchronize')


def floats(data, code):
    a = array(code)
    a.frombytes(data)
    if sys.byteorder != 'little':
        a.byteswap()
    return a


def replay(case, blob, drv, ptx):
    """Runs one recorded trace; returns the checked downloads."""
    bases = {}
    checks = []
    addr = lambda p: bases[p[0]] + p[1]  # noqa: E731
    shared = {}
    try:
        for op in case['ops']:
            kind = op['op']
            if kind == 'alloc':
                bases[op['id']] = drv.alloc(op['bytes'])
            elif kind == 'free':
                drv.free(bases.pop(op['id']))
            elif kind == 'load':
                shared[op['kernel']] = op['shared']
            elif kind == 'upload':
                at, n = op['data']
                drv.htod(addr(op['dst']), blob[at : at + n])
            elif kind == 'fill':
                drv.memset(addr(op['dst']), op['byte'], op['bytes'])
            elif kind == 'copy':
                drv.dtod(addr(op['dst']), addr(op['src']), op['bytes'])
            elif kind == 'launch':
                name = op['kernel']
                fn = drv.kernel(ptx[name], name, shared.get(name, op['shared']))
                params = relocate(bytes.fromhex(op['params']), op['relocs'], bases)
                drv.launch(fn, op['grid'], op['block'], op['shared'], params, op['offsets'])
            elif kind == 'download':
                data = drv.dtoh(addr(op['src']), op['bytes'])
                if 'ref' in op:
                    at, n = op['ref']
                    r = compare(floats(data, 'f'), floats(blob[at : at + n], 'd'), op.get('bound'))
                    checks.append({'label': op.get('label', ''), **r})
        drv.sync()
    finally:
        for p in bases.values():
            drv.free(p)
    return checks


def load_cases(folder):
    with open(os.path.join(folder, 'cases.json')) as f:
        manifest = json.load(f)
    with open(os.path.join(folder, 'cases.bin'), 'rb') as f:
        blob = f.read()
    ptx = {}
    for name, k in manifest['kernels'].items():
        with open(os.path.join(folder, k['file'])) as f:
            ptx[name] = f.read()
    return manifest, blob, ptx


def run_replays(manifest, blob, ptx, drv):
    results = []
    for case in manifest['cases']:
        t0 = time.time()
        try:
            checks = replay(case, blob, drv, ptx)
            bounded = [c for c in checks if c['bound'] is not None]
            ok = all(c['ok'] for c in checks) and len(bounded) > 0
            results.append({'case': case['name'], 'kind': case['kind'], 'ok': ok, 'checks': checks})
        except CudaError as e:
            results.append({'case': case['name'], 'kind': case['kind'], 'ok': False, 'error': str(e)})
        worst = max((c['error'] / c['bound'] for c in results[-1].get('checks', []) if c['bound']), default=float('nan'))
        status = 'ok  ' if results[-1]['ok'] else 'FAIL'
        print(f"{status} {case['name']}: worst error/bound {worst:.3g} ({time.time() - t0:.2f} s) {results[-1].get('error', '')}", flush=True)
        if 'error' in results[-1] and 'ILLEGAL' in results[-1]['error']:
            break  # the context is lost after a fault; nothing later can run
    return results


def timed(fn, torch, seconds=0.3, most=50):
    """Mean milliseconds per call on the current stream (CUDA events), after a warm-up."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    once = start.elapsed_time(end)
    n = max(3, min(most, int(seconds * 1000 / max(once, 1e-3))))
    start.record()
    for _ in range(n):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / n


def bench(manifest, ptx, drv, deadline):
    import torch

    torch.manual_seed(0)
    stream = lambda: ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)  # noqa: E731
    decl = manifest['kernels']
    out = {'gemm': [], 'attention': []}
    g = manifest['bench']['gemm']
    for shape in g['shapes']:
        if time.time() > deadline:
            out['skipped'] = 'time budget spent'
            break
        M, N, K = shape['m'], shape['n'], shape['k']
        A = torch.randn(M, K, device='cuda')
        W = torch.randn(K, N, device='cuda')  # k-major, as our GEMM reads weights
        C = torch.empty(M, N, device='cuda')
        ref = (A.double() @ W.double()) if M <= 1024 else None
        flops = 2.0 * M * N * K
        row = {'m': M, 'n': N, 'k': K, 'ours': {}, 'torch': {}}
        for name, k in g['kernels'].items():
            fn = drv.kernel(ptx[name], name, k['shared'])
            params, offsets = pack(decl[name]['params'], {
                'p_c': C.data_ptr(), 'p_a': A.data_ptr(), 'p_arows': 0, 'p_w': W.data_ptr(), 'p_bias': 0,
                'p_m': M, 'p_n': N, 'p_k': K, 'p_lda': K, 'p_ldc': N, 'p_kchunk': K, 'p_zstride': 0,
            })
            grid = (-(-N // g['tile']['n']), -(-M // g['tile']['m']), 1)
            launch = lambda: drv.launch(fn, grid, (k['block'], 1, 1), k['shared'], params, offsets, stream())  # noqa: E731
            ms = timed(launch, torch)
            entry = {'ms': ms, 'tflops': flops / ms / 1e9}
            if ref is not None:
                entry['max_rel_error'] = ((C.double() - ref).abs().max() / ref.abs().max()).item()
            row['ours'][name] = entry
        torch.backends.cuda.matmul.allow_tf32 = False
        for label, dtype, tf32 in [('fp32', torch.float32, False), ('tf32', torch.float32, True),
                                   ('fp16', torch.float16, False), ('bf16', torch.bfloat16, False)]:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            a, w = A.to(dtype), W.to(dtype)
            ms = timed(lambda: torch.matmul(a, w), torch)  # noqa: B023
            row['torch'][label] = {'ms': ms, 'tflops': flops / ms / 1e9}
        torch.backends.cuda.matmul.allow_tf32 = False
        o, t = row['ours'], row['torch']
        row['ratio'] = {
            'fma/fp32': t['fp32']['ms'] / o['kvp_gemm_fma']['ms'],
            'mma_f16/fp16': t['fp16']['ms'] / o['kvp_gemm_mma_f16']['ms'],
            'mma_bf16/bf16': t['bf16']['ms'] / o['kvp_gemm_mma_bf16']['ms'],
            'mma_f16/tf32': t['tf32']['ms'] / o['kvp_gemm_mma_f16']['ms'],
        }
        print(f"gemm {M}x{N}x{K}: " + ', '.join(f'{k} {v:.2f}x' for k, v in row['ratio'].items()), flush=True)
        out['gemm'].append(row)
        del A, W, C, ref
    a = manifest['bench']['attention']
    name = a['kernel']
    fn = drv.kernel(ptx[name], name, a['shared'])
    F = torch.nn.functional
    for s in a['shapes']:
        if time.time() > deadline:
            out['skipped'] = 'time budget spent'
            break
        H, KVH, hd, N = s['heads'], s['kvHeads'], s['headDim'], s['n']
        q = torch.randn(N, H, hd, device='cuda')
        k = torch.randn(N, KVH, hd, device='cuda')
        v = torch.randn(N, KVH, hd, device='cuda')
        nk = int(N * s['keep'])
        kpos = torch.sort(torch.randperm(N, device='cuda')[:nk]).values.to(torch.int32)
        qpos = torch.arange(N, device='cuda', dtype=torch.int32)
        o = torch.empty(N, H, hd, device='cuda')
        lse = torch.empty(N, H, device='cuda')
        group = H // KVH
        params, offsets = pack(decl[name]['params'], {
            'p_o': o.data_ptr(), 'p_lse': lse.data_ptr(), 'p_q': q.data_ptr(), 'p_k': k.data_ptr(),
            'p_v': v.data_ptr(), 'p_qpos': qpos.data_ptr(), 'p_kpos': kpos.data_ptr(), 'p_blocks': 0,
            'p_nq': N, 'p_nk': nk, 'p_heads': H, 'p_group': group, 'p_k_row_stride': KVH * hd,
            'p_k_head_stride': hd, 'p_v_row_stride': KVH * hd, 'p_v_head_stride': hd, 'p_scale': 1 / math.sqrt(hd),
        })
        grid = (-(-N * group // a['pairsPerCta']), KVH, 1)
        launch = lambda: drv.launch(fn, grid, (a['block'], 1, 1), a['shared'], params, offsets, stream())  # noqa: E731
        ms = timed(launch, torch)
        flops = 4.0 * N * nk * hd * H
        # SDPA on the kept keys, gathered beforehand (the gather is not timed).
        Q = q.permute(1, 0, 2)[None].contiguous()
        Ks = k[kpos.long()].permute(1, 0, 2)[None].contiguous()
        Vs = v[kpos.long()].permute(1, 0, 2)[None].contiguous()
        ref = F.scaled_dot_product_attention(Q, Ks, Vs)[0].permute(1, 0, 2)
        err = (o - ref).abs().max().item()
        row = {**s, 'nk': nk, 'ours': {'ms': ms, 'tflops': flops / ms / 1e9, 'max_abs_error_vs_sdpa_fp32': err}, 'torch': {}}
        for label, dtype in [('fp32', torch.float32), ('fp16', torch.float16), ('bf16', torch.bfloat16)]:
            Qd, Kd, Vd = Q.to(dtype), Ks.to(dtype), Vs.to(dtype)
            ms_t = timed(lambda: F.scaled_dot_product_attention(Qd, Kd, Vd), torch)  # noqa: B023
            row['torch'][label] = {'ms': ms_t, 'tflops': flops / ms_t / 1e9}
        row['ratio'] = {f'ours/sdpa_{d}': row['torch'][d]['ms'] / ms for d in row['torch']}
        print(f"attention H{H} hd{hd} N{N} keep {s['keep']}: err {err:.2e}, " + ', '.join(f'{k} {v:.2f}x' for k, v in row['ratio'].items()), flush=True)
        out['attention'].append(row)
        del q, k, v, o, lse, Q, Ks, Vs, ref
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--cases', default='.gpu/cases')
    ap.add_argument('--out', default=None)
    ap.add_argument('--no-bench', action='store_true')
    ap.add_argument('--budget-s', type=float, default=240, help='stop starting benchmarks after this many seconds')
    args = ap.parse_args()
    t0 = time.time()
    manifest, blob, ptx = load_cases(args.cases)
    report = {'started': time.strftime('%Y-%m-%dT%H:%M:%S')}
    try:
        drv = Driver()
    except CudaError as e:
        print(f'skipped: {e}')
        report['skipped'] = str(e)
        drv = None
    if drv:
        report['compute_capability'] = list(drv.cc)
        report['replays'] = run_replays(manifest, blob, ptx, drv)
        failed = [r['case'] for r in report['replays'] if not r['ok']]
        print(f"replays: {len(report['replays']) - len(failed)} ok, {len(failed)} failed {failed if failed else ''}", flush=True)
        if not args.no_bench:
            try:
                import torch

                report['torch'] = torch.__version__
                report['device'] = torch.cuda.get_device_name(0)
                report['bench'] = bench(manifest, ptx, drv, t0 + args.budget_s)
            except ImportError as e:
                report['bench'] = {'skipped': f'no PyTorch ({e})'}
            except Exception as e:  # a benchmark failure must not lose the replay results
                report['bench_error'] = f'{type(e).__name__}: {e}'
                print(f"bench failed: {report['bench_error']}", flush=True)
    report['seconds'] = time.time() - t0
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=1)
    ok = drv is None or all(r['ok'] for r in report.get('replays', []))
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
