/**
 * Builds step programs: every instruction is type-checked as it is added (the result types come
 * from the op's rule in ops.ts), so a lowering bug fails where it happens, with the op, the stage
 * and the operand types in the message.
 */
import { type AttrKind, ops } from './ops.ts';
import {
  type AttrValue,
  type Input,
  type InputRole,
  type Instr,
  type IRType,
  type Output,
  printType,
  type Resource,
  type Stage,
  type StepProgram,
  sameType,
  tensor,
  type Value,
} from './types.ts';

export class IRBuildError extends Error {
  override readonly name = 'IRBuildError';
}

/** Hands out value ids; one source per program keeps ids unique across all its stages. */
export class IdSource {
  private n: number;
  constructor(start = 0) {
    this.n = start;
  }
  next(): number {
    return this.n++;
  }
  /** The id the next call will return. */
  peek(): number {
    return this.n;
  }
}

/** Checks one attribute value against its declared kind; returns a message or undefined. */
export function attrKindError(kind: AttrKind, v: AttrValue | undefined): string | undefined {
  const finite = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
  switch (kind) {
    case 'number':
      return finite(v) ? undefined : 'must be a finite number';
    case 'string':
      return typeof v === 'string' ? undefined : 'must be a string';
    case 'boolean':
      return typeof v === 'boolean' ? undefined : 'must be a boolean';
    case 'numbers':
      return Array.isArray(v) && v.every(finite) ? undefined : 'must be a list of finite numbers';
  }
}

export const showAttr = (v: AttrValue | undefined): string =>
  v === undefined
    ? 'nothing'
    : typeof v === 'string'
      ? JSON.stringify(v)
      : Array.isArray(v)
        ? `[${v.join(', ')}]`
        : String(v);

/**
 * Checks an instruction's shape against the catalogue: known op, operand count, attributes
 * (required present, kinds right, none unknown). Returns the problems, empty when fine.
 */
export function signatureErrors(
  op: string,
  nargs: number,
  attrs: Readonly<Record<string, AttrValue>>,
): string[] {
  const spec = ops[op];
  if (!spec) return [`unknown op '${op}'`];
  const out: string[] = [];
  const max = spec.args.length;
  const min = spec.args.filter((a) => !a.endsWith('?')).length;
  if (nargs < min || nargs > max) {
    const want = min === max ? `${min}` : `${min} to ${max}`;
    const names = spec.args.join(', ');
    out.push(`takes ${want} operand${max === 1 ? '' : 's'} (${names}), got ${nargs}`);
  }
  const optional = spec.optionalAttrs ?? {};
  for (const [key, kind] of Object.entries(spec.attrs)) {
    const v = attrs[key];
    if (v === undefined) out.push(`missing attribute '${key}' (${kind})`);
    else {
      const bad = attrKindError(kind, v);
      if (bad) out.push(`attribute '${key}' ${bad}, got ${showAttr(v)}`);
    }
  }
  for (const [key, v] of Object.entries(attrs)) {
    if (key in spec.attrs) continue;
    const kind = optional[key];
    if (kind === undefined) {
      out.push(`unknown attribute '${key}'`);
      continue;
    }
    const bad = attrKindError(kind, v);
    if (bad) out.push(`attribute '${key}' ${bad}, got ${showAttr(v)}`);
  }
  return out;
}

/** The row type of a resource (its shape without the leading canvas dimension). */
export const resourceType = (r: Resource): IRType => tensor(r.dtype, r.shape);
export const rowType = (t: IRType): string =>
  t.kind === 'index' ? 'index' : printType(tensor(t.dtype, t.shape.slice(1)));

export class StageBuilder {
  private readonly inputs: Input[] = [];
  private readonly body: Instr[] = [];
  private readonly outputs: Output[] = [];
  private readonly defined = new Set<number>();
  private finished: Stage | undefined;

  /**
   * @param onResource called for every resource a cache op touches; a ProgramBuilder passes its
   * `resource` method so that reads and writes declare what they use.
   */
  constructor(
    readonly name: string,
    private readonly ids: IdSource,
    private readonly onResource?: (r: Resource) => Resource,
  ) {}

  private fail(msg: string): never {
    throw new IRBuildError(`stage ${this.name}: ${msg}`);
  }

  private open(): void {
    if (this.finished) this.fail('the stage is finished');
  }

  private fresh(type: IRType): Value {
    const v: Value = { id: this.ids.next(), type };
    this.defined.add(v.id);
    return v;
  }

  private own(v: Value, what: string): void {
    if (!this.defined.has(v.id)) {
      this.fail(`${what} %${v.id} is not defined in this stage (values cross stages only as carried inputs)`);
    }
  }

  input(name: string, role: InputRole, type: IRType): Value {
    this.open();
    if (this.inputs.some((i) => i.name === name)) this.fail(`duplicate input '${name}'`);
    const v = this.fresh(type);
    this.inputs.push({ name, role, value: v });
    return v;
  }

  op(op: string, args: Value[], attrs: Record<string, AttrValue> = {}): Value[] {
    this.open();
    const where = () => `${op}(${args.map((a) => printType(a.type)).join(', ')})`;
    const sig = signatureErrors(op, args.length, attrs);
    if (sig.length > 0) this.fail(`${where()}: ${sig.join('; ')}`);
    if (op === 'cache_read') this.fail('cache_read takes its type from a resource; use cacheRead(resource)');
    args.forEach((a, i) => {
      this.own(a, `operand ${i + 1} of ${op}`);
    });
    const spec = ops[op];
    const types = spec?.results(
      args.map((a) => a.type),
      attrs,
    );
    if (types === undefined || typeof types === 'string') this.fail(`${where()}: ${types ?? 'unknown op'}`);
    const results = types.map((t) => this.fresh(t));
    this.body.push({ op, results, args: [...args], attrs: copyAttrs(attrs) });
    return results;
  }

  op1(op: string, args: Value[], attrs: Record<string, AttrValue> = {}): Value {
    const rs = this.op(op, args, attrs);
    const [r] = rs;
    if (rs.length !== 1 || r === undefined) this.fail(`${op} has ${rs.length} results, not one`);
    return r;
  }

  cacheRead(resource: Resource): Value {
    this.open();
    const r = this.onResource ? this.onResource(resource) : resource;
    const v = this.fresh(resourceType(r));
    this.body.push({ op: 'cache_read', results: [v], args: [], attrs: { resource: r.name } });
    return v;
  }

  cacheWrite(resource: Resource, rows: Value, values: Value): void {
    this.open();
    const r = this.onResource ? this.onResource(resource) : resource;
    const want = rowType(resourceType(r));
    const got = rowType(values.type);
    if (want !== got) {
      this.fail(
        `cache_write to ${r.name}: rows of ${printType(values.type)} are ${got}, the resource holds ${want}`,
      );
    }
    this.op('cache_write', [rows, values], { resource: r.name });
  }

  output(name: string, v: Value): void {
    this.open();
    if (this.outputs.some((o) => o.name === name)) this.fail(`duplicate output '${name}'`);
    this.own(v, `output '${name}'`);
    this.outputs.push({ name, value: v });
  }

  finish(): Stage {
    this.finished ??= { name: this.name, inputs: this.inputs, body: this.body, outputs: this.outputs };
    return this.finished;
  }
}

const copyAttrs = (attrs: Readonly<Record<string, AttrValue>>): Record<string, AttrValue> =>
  Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, Array.isArray(v) ? [...v] : v]));

const sameResource = (a: Resource, b: Resource): boolean =>
  a.kind === b.kind && sameType(resourceType(a), resourceType(b));
const showResource = (r: Resource): string => `${r.name}: ${printType(resourceType(r))} ${r.kind}`;

export class ProgramBuilder {
  readonly ids = new IdSource();
  private readonly resources = new Map<string, Resource>();
  private readonly stages: StageBuilder[] = [];

  constructor(readonly name: string) {}

  /** Declares a resource; declaring the same one again returns the first declaration. */
  resource(r: Resource): Resource {
    const have = this.resources.get(r.name);
    if (have) {
      if (!sameResource(have, r)) {
        throw new IRBuildError(
          `program ${this.name}: resource ${r.name} redeclared as ${showResource(r)}, was ${showResource(have)}`,
        );
      }
      return have;
    }
    if (r.shape[0] !== 'L') {
      throw new IRBuildError(
        `program ${this.name}: resource ${showResource(r)} must have the canvas (L) as first dimension`,
      );
    }
    const copy: Resource = { name: r.name, kind: r.kind, dtype: r.dtype, shape: [...r.shape] };
    this.resources.set(r.name, copy);
    return copy;
  }

  stage(name: string): StageBuilder {
    if (this.stages.some((s) => s.name === name))
      throw new IRBuildError(`program ${this.name}: duplicate stage '${name}'`);
    const sb = new StageBuilder(name, this.ids, (r) => this.resource(r));
    this.stages.push(sb);
    return sb;
  }

  finish(): StepProgram {
    return {
      name: this.name,
      resources: [...this.resources.values()],
      stages: this.stages.map((s) => s.finish()),
    };
  }
}
