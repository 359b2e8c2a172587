import { rowSize } from '../tensor.ts';
import { isTensor, need, type OpSpec, rule, sameDim, show } from './spec.ts';

/**
 * Caches: reads and writes of persistent resources. Their resource typing (a read's type, a
 * written row's type) comes from the program's resource declarations, which the builder and the
 * verifier look up.
 */
export const cacheOps: Readonly<Record<string, OpSpec>> = {
  cache_read: {
    args: [],
    attrs: { resource: 'string' },
    results: () => 'cache_read takes its type from the resource; the builder and verifier resolve it',
    doc: 'the whole current content of a resource (all canvas rows)',
    interpret: (c) => {
      const t = c.resource(c.str('resource'));
      return [{ shape: [...t.shape], data: t.data.slice() }];
    },
    fusion: { view: 'load' },
  },
  cache_write: {
    args: ['rows', 'values'],
    attrs: { resource: 'string' },
    effect: true,
    results: rule(([r, v]) => {
      need(
        r?.kind === 'index' && isTensor(v) && sameDim(v.shape[0], r.size),
        `cache_write needs an index list and matching rows, got ${show(r)}, ${show(v)}`,
      );
      return [];
    }),
    doc: 'stores values[i] into row rows[i] of the resource; visible to later steps (and to later reads in this step)',
    interpret: (c) => {
      const name = c.str('resource');
      const t = c.resource(name);
      const rows = c.list(0);
      const values = c.float(1);
      if (values.shape[0] !== rows.length || values.shape.slice(1).join(',') !== t.shape.slice(1).join(',')) {
        c.fail(`cannot write [${values.shape}] at ${rows.length} rows of resource '${name}' [${t.shape}]`);
      }
      c.positions(rows, `rows of '${name}'`);
      const n = rowSize(t.shape);
      rows.forEach((r, i) => {
        t.data.set(values.data.subarray(i * n, (i + 1) * n), r * n);
      });
      return [];
    },
    fusion: { alone: 'copy' },
    listLoads: [1],
  },
};
