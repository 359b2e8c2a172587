import { type HostInts, type HostTensor, isHostInts, isIndexList, rowSize, sizeOf } from '../tensor.ts';
import { type Dim, index, printType, tensor } from '../types.ts';
import { f32, isTensor, need, type OpSpec, rank, rule, sameDim, show } from './spec.ts';

/** Rows and data movement. */
export const rowOps: Readonly<Record<string, OpSpec>> = {
  embed: {
    args: ['table', 'ids'],
    attrs: {},
    results: rule(([table, ids]) => {
      need(isTensor(table) && rank(table, 2), `table must be f32[V,D], got ${show(table)}`);
      need(isTensor(ids) && ids.dtype === 'i32' && rank(ids, 1), `ids must be i32[N], got ${show(ids)}`);
      return [f32([ids.shape[0] as Dim, table.shape[1] as Dim])];
    }),
    doc: 'rows of the embedding table for each token id: out[i] = table[ids[i]]',
    interpret: (c) => {
      const table = c.float(0, 2);
      const ids = c.ints(1, 1);
      const [vocab, d] = table.shape as [number, number];
      c.positions(ids.data, 'token id', vocab);
      const out = new Float64Array(ids.data.length * d);
      ids.data.forEach((id, i) => {
        out.set(table.data.subarray(id * d, (id + 1) * d), i * d);
      });
      return [{ shape: [ids.data.length, d], data: out }];
    },
    fusion: { anchor: 'embed' },
  },
  gather: {
    args: ['x', 'rows'],
    attrs: {},
    results: rule(([x, r]) => {
      need(
        x !== undefined && r?.kind === 'index',
        `gather takes a value and an index list, got ${show(x)}, ${show(r)}`,
      );
      if (x.kind === 'index') return [index(r.size)];
      return [tensor(x.dtype, [r.size, ...x.shape.slice(1)])];
    }),
    doc: 'out[i] = x[rows[i]] (rows of a tensor, or entries of an index list)',
    interpret: (c) => {
      const x = c.arg(0);
      const rows = c.list(1);
      if (isIndexList(x)) {
        c.positions(rows, 'row', x.length);
        return [Int32Array.from(rows, (r) => x[r] as number)];
      }
      c.positions(rows, 'row', x.shape[0] ?? 0);
      const n = rowSize(x.shape);
      const shape = [rows.length, ...x.shape.slice(1)];
      const out = isHostInts(x) ? new Int32Array(rows.length * n) : new Float64Array(rows.length * n);
      rows.forEach((r, i) => {
        out.set(x.data.subarray(r * n, (r + 1) * n), i * n);
      });
      return [{ shape, data: out } as HostTensor | HostInts];
    },
    fusion: { view: 'load' },
  },
  scatter: {
    args: ['base', 'rows', 'values'],
    attrs: {},
    results: rule(([base, r, v]) => {
      need(
        isTensor(base) && r?.kind === 'index' && isTensor(v),
        'scatter takes a tensor, an index list and a tensor',
      );
      need(sameDim(v.shape[0], r.size), `values must have ${r.size} rows, got ${show(v)}`);
      need(
        printType(tensor(base.dtype, base.shape.slice(1))) === printType(tensor(v.dtype, v.shape.slice(1))),
        `row types differ: ${show(base)} vs ${show(v)}`,
      );
      return [base];
    }),
    doc: 'a copy of base with out[rows[i]] = values[i] (functional; base is unchanged)',
    interpret: (c) => {
      const base = c.arg(0);
      const rows = c.list(1);
      const values = c.arg(2);
      if (isIndexList(base) || isIndexList(values)) return c.fail('scatter takes tensors');
      if (isHostInts(base) !== isHostInts(values)) c.fail('base and values differ in dtype');
      if (
        base.shape.slice(1).join(',') !== values.shape.slice(1).join(',') ||
        values.shape[0] !== rows.length
      ) {
        c.fail(`cannot scatter [${values.shape}] into [${base.shape}] at ${rows.length} rows`);
      }
      c.positions(rows, 'row', base.shape[0] ?? 0);
      const n = rowSize(base.shape);
      const out = base.data.slice();
      rows.forEach((r, i) => {
        out.set(values.data.subarray(i * n, (i + 1) * n), r * n);
      });
      return [{ shape: [...base.shape], data: out } as HostTensor | HostInts];
    },
    fusion: { alone: 'copy' },
  },
  place: {
    args: ['values', 'rows'],
    attrs: {},
    results: rule(([v, r]) => {
      need(
        isTensor(v) && r?.kind === 'index' && sameDim(v.shape[0], r.size),
        `place needs values with one row per index, got ${show(v)}, ${show(r)}`,
      );
      return [tensor(v.dtype, ['L', ...v.shape.slice(1)])];
    }),
    doc: 'a canvas-sized tensor (L rows) that is zero except out[rows[i]] = values[i]',
    interpret: (c) => {
      const values = c.arg(0);
      const rows = c.list(1);
      if (isIndexList(values) || isHostInts(values)) return c.fail('place takes a float tensor');
      if (values.shape[0] !== rows.length) c.fail(`cannot place [${values.shape}] at ${rows.length} rows`);
      c.positions(rows, 'row');
      const n = rowSize(values.shape);
      const out = new Float64Array(c.L * n);
      rows.forEach((r, i) => {
        out.set(values.data.subarray(i * n, (i + 1) * n), r * n);
      });
      return [{ shape: [c.L, ...values.shape.slice(1)], data: out }];
    },
    fusion: { view: 'result', epilogue: 'scatter' },
  },
  reshape: {
    args: ['x'],
    attrs: { inner: 'numbers' },
    results: rule(([x], attrs) => {
      need(isTensor(x), `reshape needs a tensor, got ${show(x)}`);
      const inner = attrs.inner as readonly number[];
      const have = x.shape.slice(1);
      need(
        have.every((d) => typeof d === 'number'),
        'reshape needs concrete inner dimensions',
      );
      const size = (ds: readonly Dim[]) => ds.reduce<number>((a, d) => a * Number(d), 1);
      need(size(have) === size(inner), `cannot reshape ${show(x)} rows to [${inner.join(',')}]`);
      return [tensor(x.dtype, [x.shape[0] as Dim, ...inner])];
    }),
    doc: 'keeps the first (row) dimension and reshapes each row to `inner`',
    interpret: (c) => {
      const x = c.arg(0);
      if (isIndexList(x)) return c.fail('reshape needs a tensor');
      const inner = c.attrs.inner as readonly number[];
      if (sizeOf(inner) !== rowSize(x.shape)) c.fail(`cannot reshape rows of [${x.shape}] to [${inner}]`);
      const shape = [x.shape[0] as number, ...inner];
      return [{ shape, data: x.data.slice() } as HostTensor | HostInts];
    },
    fusion: { view: 'result' },
  },
};
