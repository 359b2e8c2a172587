/**
 * An index over an ONNX graph for reading it backwards: which node produces a value, which values
 * are stored tensors or constants, and the attributes the pattern needs. Names in messages are the
 * exporter's node names, which say where in the model a node sits (`/model/layers.1/mlp/...`).
 */
import { dimsOf, type TensorProto, type TensorReader, toNumber } from './tensors.ts';

type Int = number | { toNumber(): number };

export interface AttributeProto {
  name?: string | null;
  i?: Int | null;
  f?: number | null;
  ints?: Int[] | null;
  t?: TensorProto | null;
}

export interface NodeProto {
  name?: string | null;
  opType?: string | null;
  input?: string[] | null;
  output?: string[] | null;
  attribute?: AttributeProto[] | null;
}

export interface GraphProto {
  node?: NodeProto[] | null;
  initializer?: TensorProto[] | null;
  input?: { name?: string | null }[] | null;
  output?: { name?: string | null }[] | null;
}

export class OnnxGraph {
  readonly nodes: readonly NodeProto[];
  /** Graph inputs that are not initializers: what a caller feeds. */
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  private readonly producers = new Map<string, NodeProto>();
  private readonly initializers = new Map<string, TensorProto>();

  constructor(
    graph: GraphProto,
    readonly reader: TensorReader,
  ) {
    this.nodes = graph.node ?? [];
    for (const t of graph.initializer ?? []) this.initializers.set(t.name ?? '', t);
    for (const n of this.nodes) for (const o of n.output ?? []) this.producers.set(o, n);
    this.inputs = (graph.input ?? []).map((i) => i.name ?? '').filter((n) => !this.initializers.has(n));
    this.outputs = (graph.output ?? []).map((o) => o.name ?? '');
  }

  producer(value: string): NodeProto | undefined {
    return this.producers.get(value);
  }

  initializer(value: string): TensorProto | undefined {
    return this.initializers.get(value);
  }

  /** Whether anything defines the value: a node, an initializer or a graph input. */
  defines(value: string): boolean {
    return this.producers.has(value) || this.initializers.has(value) || this.inputs.includes(value);
  }

  /** The tensor of a constant value: an initializer or the `value` of a Constant node. */
  constant(value: string): TensorProto | undefined {
    const init = this.initializers.get(value);
    if (init) return init;
    const n = this.producers.get(value);
    return n?.opType === 'Constant' ? (attribute(n, 'value')?.t ?? undefined) : undefined;
  }

  /** A constant's values as numbers, when it is a small int or float constant. */
  numbers(value: string): number[] | undefined {
    const t = this.constant(value);
    return t && dimsOf(t).reduce((a, b) => a * b, 1) <= 64 ? this.reader.numbers(t) : undefined;
  }

  /** A constant holding one number (any shape of size 1). */
  scalar(value: string): number | undefined {
    const v = this.numbers(value);
    return v?.length === 1 ? v[0] : undefined;
  }
}

const attribute = (n: NodeProto, name: string): AttributeProto | undefined =>
  (n.attribute ?? []).find((a) => a.name === name);

export const attrInt = (n: NodeProto, name: string): number | undefined => {
  const i = attribute(n, name)?.i;
  return i === undefined || i === null ? undefined : toNumber(i);
};

export const attrInts = (n: NodeProto, name: string): number[] | undefined =>
  attribute(n, name)?.ints?.map(toNumber);

/** How a node is named in messages. */
export const describe = (n: NodeProto): string => `node "${n.name || n.output?.[0] || '?'}" (${n.opType})`;
