// chevrotain 13 calls Object.groupBy, which Node 20 lacks (it arrived in Node 21).
type GroupBy = <T, K extends PropertyKey>(
  items: Iterable<T>,
  key: (item: T, i: number) => K,
) => Record<K, T[]>;

const objectWithGroupBy = Object as unknown as { groupBy?: GroupBy };
if (typeof objectWithGroupBy.groupBy !== 'function') {
  objectWithGroupBy.groupBy = <T, K extends PropertyKey>(
    items: Iterable<T>,
    key: (item: T, i: number) => K,
  ) => {
    const out = Object.create(null) as Record<K, T[]>;
    let i = 0;
    for (const item of items) {
      const k = key(item, i++);
      const bucket = out[k];
      if (bucket) bucket.push(item);
      else out[k] = [item];
    }
    return out;
  };
}
