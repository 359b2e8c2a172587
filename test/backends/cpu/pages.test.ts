/**
 * The packed GEMM weights of a plan's library lie in small pages (slots.ts, `kvp_map`): a cached
 * step streams them from memory once, and from huge pages that stream ran 10-25% slower on the
 * machines measured. A control region advised the other way shows whether this kernel grants huge
 * pages at all; where it does, the packed copies must hold none.
 */
import { readFileSync } from 'node:fs';
import koffi from 'koffi';
import { expect, test } from 'vitest';
import { buildCpu, CpuRunner } from '../../../src/backends/cpu/runner.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { randomWeights } from '../../../src/model/weights.ts';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import { backendConfigs, examplePlan } from '../../runtime/support.ts';

/** Bytes of /proc/self/smaps's `field` for the mapping that holds `address`. */
function mappingField(address: bigint, field: string): number {
  let inside = false;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (range) inside = BigInt(`0x${range[1]}`) <= address && address < BigInt(`0x${range[2]}`);
    else if (inside && line.startsWith(`${field}:`)) return 1024 * Number(/(\d+) kB/.exec(line)?.[1]);
  }
  throw new Error(`no mapping holds 0x${address.toString(16)}`);
}

const MiB = 1 << 20;

test('packed GEMM weights are mapped in small pages, where other large regions get huge ones', () => {
  // gate and up are 2048 x 512 floats: 4 MiB each, room for a whole aligned huge page.
  const plan = examplePlan('baseline');
  const config = modelFor(plan, { ...(backendConfigs[0] as ModelConfig), dModel: 512, dFF: 2048 });
  const build = buildCpu(plan, config, 8);
  const runner = new CpuRunner(build, randomWeights(config, 3), 8);
  const packed = build.manifest.slots.filter((s) => s.packed);
  expect(packed.length).toBeGreaterThan(0);

  // The control: an anonymous region advised huge, as the library's other large slots are.
  const libc = koffi.load('libc.so.6');
  const mmap = libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)');
  const madvise = libc.func('int madvise(void *addr, size_t len, int advice)');
  const munmap = libc.func('int munmap(void *addr, size_t len)');
  const PROT_RW = 3;
  const MAP_PRIVATE_ANONYMOUS = 0x22;
  const MADV_HUGEPAGE = 14;
  const control = mmap(null, 8 * MiB, PROT_RW, MAP_PRIVATE_ANONYMOUS, -1, 0);
  madvise(control, 8 * MiB, MADV_HUGEPAGE);
  new Uint8Array(koffi.view(control, 8 * MiB)).fill(1);
  const grants = mappingField(BigInt(koffi.address(control)), 'AnonHugePages') > 0;
  munmap(control, 8 * MiB);
  if (!grants) console.log('note: this kernel grants no huge pages here; the check below cannot fail');

  let large = 0;
  for (const s of packed) {
    const at = BigInt(koffi.address(runner['packed'](s.index)));
    expect(mappingField(at, 'AnonHugePages'), s.name).toBe(0);
    if (mappingField(at, 'Size') >= 4 * MiB) large++;
  }
  // Large enough that a huge page would have been granted had it been asked for.
  expect(large).toBeGreaterThanOrEqual(2 * config.layers);
});
