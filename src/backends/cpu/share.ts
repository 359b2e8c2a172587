/**
 * Stage bodies that differ only in their numbers share one C function. The layers of a model run
 * the same kernels on their own weights, caches, index lists and arena offsets: rendered one by
 * one, the unit (and gcc's time) grew with the layer count, and a 512-layer model did not compile
 * in five minutes. So every slot index (`S[i]`, `P[i]`, `D[i]`), size index (`N[i]`) and arena
 * offset (`A + o`) of a body is lifted into a row of numbers; bodies whose text is then the same
 * are emitted once, as a function reading its numbers from a table, and each stage becomes a
 * one-line call with its row. Substituting a row back gives the stage's original text exactly.
 */

export interface StageCode {
  /** The stage's name, e.g. `layer.3`; kernel comments name kernels after it. */
  readonly stage: string;
  /** The exported C function, e.g. `kvp_cached_layer_3`. */
  readonly fn: string;
  /** The comment line that heads the function. */
  readonly title: string;
  /** The body, without the arena pointer line that every stage starts with. */
  readonly lines: readonly string[];
}

interface Lifted {
  readonly text: string;
  readonly row: readonly number[];
}

/** Numbers a body is parameterised by: slots (S, P, D share an index), sizes (N), arena offsets. */
const NUMBER = /\b([SPDN])\[(\d+)\]|\(A \+ (\d+)\)|\b(overlay|saved|mark)_(\d+)\b/g;

/** The body with its numbers replaced by `I[k]`, and the numbers; locals are renumbered in order. */
function lift(s: StageCode): Lifted {
  const holes = new Map<string, number>();
  const locals = new Map<string, number>();
  const row: number[] = [];
  const hole = (key: string, value: string) => {
    let k = holes.get(key);
    if (k === undefined) {
      k = row.push(Number(value)) - 1;
      holes.set(key, k);
    }
    return `I[${k}]`;
  };
  const prefix = `/* kernel ${s.stage}/`;
  const text = s.lines
    .map((line) =>
      line
        .replace(prefix, '/* kernel ')
        .replace(
          NUMBER,
          (_m, array?: string, index?: string, offset?: string, local?: string, id?: string) => {
            if (array && index) return `${array}[${hole(`${array === 'N' ? 'N' : 'S'}${index}`, index)}]`;
            if (offset) return `(A + ${hole(`A${offset}`, offset)})`;
            if (!locals.has(id as string)) locals.set(id as string, locals.size);
            return `${local}_${locals.get(id as string)}`;
          },
        ),
    )
    .join('\n');
  return { text, row };
}

/**
 * The C of a list of stages: a body shared by two or more stages is one static function over a
 * table of their numbers (one row a stage) and each of them a one-line call; any other stage is
 * rendered as it is.
 */
export function shareStages(stages: readonly StageCode[]): string[] {
  const lifted = stages.map(lift);
  const groups = new Map<string, number[]>();
  lifted.forEach((l, i) => {
    const members = groups.get(l.text);
    if (members) members.push(i);
    else groups.set(l.text, [i]);
  });
  const shared = [...groups.entries()].filter(([, members]) => members.length > 1);
  const call = new Map<number, string>();
  const out: string[] = [];
  shared.forEach(([text, members], t) => {
    const rows = members.map((i) => (lifted[i] as Lifted).row);
    const names = members.map((i) => (stages[i] as StageCode).fn);
    const first = JSON.stringify(rows[0]);
    // Stages with the same numbers too (the embedding of every phase) need no table; neither
    // does a body without numbers, which C could not declare (it has no empty arrays).
    const table = rows.some((r) => JSON.stringify(r) !== first);
    const row = rows[0] ?? [];
    const body = table ? text : text.replace(/I\[(\d+)\]/g, (_m, k: string) => String(row[Number(k)]));
    out.push(
      `/* The body of ${names.length > 3 ? `${names.length} stages, ${names[0]} … ${names.at(-1)}` : names.join(', ')}${table ? '; their numbers, a row each' : ''}. */`,
      ...(table
        ? [
            `static const int64_t T${t}[${rows.length}][${row.length}] = {`,
            ...rows.map((r) => `  {${r.join(', ')}},`),
            '};',
          ]
        : []),
      `static void kvp_shared_${t}(const int32_t *N${table ? ', const int64_t *I' : ''}) {`,
      '  float *A = (float *)S[ARENA];',
      ...body.split('\n').map((l) => `  ${l}`),
      '}',
      '',
    );
    members.forEach((i, r) => {
      const args = table ? `N, T${t}[${r}]` : 'N';
      call.set(i, `void ${(stages[i] as StageCode).fn}(const int32_t *N) { kvp_shared_${t}(${args}); }`);
    });
  });
  stages.forEach((s, i) => {
    const one = call.get(i);
    if (one) out.push(one);
    else
      out.push(
        s.title,
        `void ${s.fn}(const int32_t *N) {`,
        '  float *A = (float *)S[ARENA];',
        ...s.lines.map((l) => `  ${l}`),
        '}',
        '',
      );
  });
  return out;
}
