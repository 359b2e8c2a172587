"""The parts of harness.py that need no GPU: argument packing against the launches recorded by
prepare.ts, pointer relocation, the comparison, the case files, and the ctypes driver calls against
the stub libcuda of test/backends/cuda-ptx/fake_libcuda.c. Run by test/backends/cuda-ptx/harness.test.ts
with KVPLAN_GPU_CASES (a folder written by prepare.ts) and KVPLAN_FAKE_LIBCUDA (the built stub).

    KVPLAN_GPU_CASES=.gpu/cases KVPLAN_FAKE_LIBCUDA=/path/stub.so python3 bench/gpu/test_harness.py
"""

import ctypes
import math
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CASES = os.environ['KVPLAN_GPU_CASES']
FAKE = os.environ['KVPLAN_FAKE_LIBCUDA']
manifest, blob, ptx = h.load_cases(CASES)


def launches():
    for case in manifest['cases']:
        for op in case['ops']:
            if op['op'] == 'launch':
                yield case, op


class Packing(unittest.TestCase):
    def test_pack_lays_out_every_recorded_launch_as_launch_ts_did(self):
        n = 0
        for _, op in launches():
            decl = manifest['kernels'][op['kernel']]['params']
            params = bytes.fromhex(op['params'])
            packed, offsets = h.pack(decl, h.unpack(decl, params, op['offsets']))
            self.assertEqual(offsets, op['offsets'], op['kernel'])
            self.assertEqual(packed, params, op['kernel'])
            n += 1
        self.assertGreater(n, 100)

    def test_relocate_rewrites_each_recorded_pointer_only(self):
        params = bytes(range(24))
        out = h.relocate(params, [{'at': 8, 'ptr': [3, 16]}], {3: 0x7000_0000_0000})
        self.assertEqual(struct.unpack_from('<Q', out, 8)[0], 0x7000_0000_0010)
        self.assertEqual(out[:8], params[:8])
        self.assertEqual(out[16:], params[16:])


class Comparison(unittest.TestCase):
    def test_error_within_bound_over_finite_entries(self):
        r = h.compare([1.0, 2.5, float('-inf')], [1.0, 2.0, float('-inf')], 0.5)
        self.assertTrue(r['ok'])
        self.assertEqual(r['error'], 0.5)
        self.assertEqual(r['scale'], 2.0)
        self.assertFalse(h.compare([1.0, 2.6], [1.0, 2.0], 0.5)['ok'])

    def test_a_nan_or_a_missed_infinity_fails_whatever_the_bound(self):
        self.assertFalse(h.compare([math.nan], [1.0], 1e9)['ok'])
        r = h.compare([0.0], [float('-inf')], 1e9)
        self.assertFalse(r['ok'])
        self.assertEqual(r['mismatched'], 1)

    def test_without_a_bound_only_reports(self):
        self.assertTrue(h.compare([5.0], [1.0], None)['ok'])


class CaseFiles(unittest.TestCase):
    def test_every_range_lies_in_the_blob_and_every_kernel_has_its_ptx(self):
        for case in manifest['cases']:
            for op in case['ops']:
                for key in ('data', 'ref'):
                    if key in op:
                        at, n = op[key]
                        self.assertLessEqual(at + n, len(blob), case['name'])
                if op['op'] == 'launch':
                    self.assertIn(f".visible .entry {op['kernel']}(", ptx[op['kernel']])

    def test_every_case_has_bounded_checks(self):
        kinds = set()
        for case in manifest['cases']:
            bounded = [op for op in case['ops'] if op['op'] == 'download' and op.get('bound') is not None]
            self.assertGreater(len(bounded), 0, case['name'])
            self.assertTrue(all('ref' in op for op in bounded))
            kinds.add(case['kind'])
        self.assertEqual(kinds, {'primitive', 'plan'})

    def test_benchmark_kernels_are_described(self):
        b = manifest['bench']
        for name in [*b['gemm']['kernels'], b['attention']['kernel']]:
            self.assertIn(name, ptx)
            self.assertIn(name, manifest['kernels'])


class DriverOnStub(unittest.TestCase):
    """The stub keeps "device" memory on the host and records launches instead of running them."""

    @classmethod
    def setUpClass(cls):
        cls.drv = h.Driver(FAKE)
        cls.stub = ctypes.CDLL(FAKE)
        cls.stub.fake_expect_args.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_uint)]
        cls.stub.fake_launch.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint64)]

    def test_a_missing_library_means_no_cuda_device(self):
        with self.assertRaisesRegex(h.CudaError, '^no CUDA device: libcuda-missing.so.1 cannot be loaded'):
            h.Driver('libcuda-missing.so.1')

    def test_compute_capability_and_memory_round_trip(self):
        self.assertEqual(self.drv.cc, (9, 0))
        a, b = self.drv.alloc(64), self.drv.alloc(64)
        self.drv.htod(a, bytes(range(64)))
        self.drv.dtod(b, a, 32)
        self.drv.memset(b + 32, 0x7F, 32)
        self.assertEqual(self.drv.dtoh(b, 64), bytes(range(32)) + b'\x7f' * 32)
        self.drv.free(a)
        self.drv.free(b)

    def test_replay_hands_the_driver_every_argument_with_pointers_relocated(self):
        case = manifest['cases'][0]
        op = next(o for o in case['ops'] if o['op'] == 'launch')
        decl = manifest['kernels'][op['kernel']]['params']
        widths = (ctypes.c_uint * len(decl))(*[h.WIDTH[p['type']] for p in decl])
        self.stub.fake_expect_args(len(decl), widths)
        bases = {}
        alloc = self.drv.alloc

        def recording_alloc(n):
            p = alloc(n)
            bases[len(bases)] = p
            return p

        self.drv.alloc = recording_alloc
        try:
            h.replay({'name': case['name'], 'ops': case['ops']}, blob, self.drv, ptx)
        finally:
            del self.drv.alloc
        dims = (ctypes.c_uint * 7)()
        args = (ctypes.c_uint64 * len(decl))()
        self.stub.fake_launch(dims, args)
        self.assertEqual(list(dims), [*op['grid'], *op['block'], op['shared']])
        want = h.unpack(decl, h.relocate(bytes.fromhex(op['params']), op['relocs'], bases), op['offsets'])
        for p, got in zip(decl, args):
            raw = struct.pack(h.FORMAT[p['type']], want[p['name']])
            self.assertEqual(got, int.from_bytes(raw, 'little'), p['name'])
        self.assertTrue(any(r['ptr'] for r in op['relocs']))


if __name__ == '__main__':
    unittest.main()
