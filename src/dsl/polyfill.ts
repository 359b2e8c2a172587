// chevrotain 13 calls Object.groupBy and vitest 5's reporter calls Map.groupBy; Node 20 has
// neither (they arrived in Node 21).
type KeyOf<T, K> = (item: T, i: number) => K;

const objectCtor = Object as unknown as { groupBy?: unknown };
if (typeof objectCtor.groupBy !== 'function') {
  objectCtor.groupBy = <T, K extends PropertyKey>(items: Iterable<T>, key: KeyOf<T, K>) => {
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

const mapCtor = Map as unknown as { groupBy?: unknown };
if (typeof mapCtor.groupBy !== 'function') {
  mapCtor.groupBy = <T, K>(items: Iterable<T>, key: KeyOf<T, K>) => {
    const out = new Map<K, T[]>();
    let i = 0;
    for (const item of items) {
      const k = key(item, i++);
      const bucket = out.get(k);
      if (bucket) bucket.push(item);
      else out.set(k, [item]);
    }
    return out;
  };
}
