import type { Expr, LayerScope, Param, Plan } from '../ast.ts';
import { builtins } from '../builtins.ts';
import { forEachChild, forEachStmtExpr, planTerms, type TypedPlan } from '../typecheck.ts';
import { constantOf } from './constant.ts';
import { deepestNamedLayer } from './layerRules.ts';
import { type Scenario, scenarios, stepLimit } from './simulate.ts';

/**
 * The row-steps (canvas rows × simulated layers × steps, summed over the scenarios, with every
 * scenario taken at its step limit, and weighted by `rowStepCost`) one plan's semantic simulation
 * may take. A row-step costs about half a microsecond, and a generation that does not stall takes
 * a quarter of its step limit, so a plan within the budget is simulated in a few tenths of a
 * second. The examples at their defaults (blocks of 32, 4 layers) take up to 1.4 million, so
 * they run at their own values.
 */
export const simulationBudget = 2_000_000;

/** Enough layers to tell every layer scope of the plan apart, with layers above each probe. */
export const layersToSimulate = (typed: TypedPlan): number => Math.max(4, deepestNamedLayer(typed) + 3);

/** The sample generations the checker simulates for the plan at its parameter values. */
export function simulationScenarios(typed: TypedPlan): Scenario[] {
  const blocks = typed.plan.body.find((s) => s.kind === 'blocks');
  const blockLen = blocks ? constantOf(typed, blocks.length) : undefined;
  return scenarios(typed, blockLen, layersToSimulate(typed));
}

/** Whether an expression has one value for the whole generation: literals and parameters, combined. */
function constancy(typed: TypedPlan): (e: Expr) => boolean {
  // Lets may read each other many times: each is asked about once.
  const lets = new Map<string, boolean>();
  const isConstant = (e: Expr): boolean => {
    if (e.kind === 'number' || e.kind === 'bool') return true;
    if (e.kind === 'name') {
      const b = typed.bindings.get(e.name);
      if (b?.kind !== 'let') return b?.kind === 'param';
      let known = lets.get(e.name);
      if (known === undefined) {
        known = isConstant(b.expr);
        lets.set(e.name, known);
      }
      return known;
    }
    if (e.kind === 'unary') return isConstant(e.operand);
    return e.kind === 'binary' && isConstant(e.left) && isConstant(e.right);
  };
  return isConstant;
}

/** A window-width argument of a plan, and the width it makes from its value. */
interface WidthArg {
  readonly arg: Expr;
  readonly width: (value: number) => number;
}

/** The width arguments of each plan, found once: scaling asks for them at many values. */
const widthArgsOf = new WeakMap<Plan, readonly WidthArg[]>();

/**
 * The window-width arguments of a plan, one for each place that evaluates one (a `let` once in
 * each expression that reads it, as evaluation does): a `certainty` score, a `maxpool` or a
 * `window` visits that many neighbours of each row.
 */
function widthArgs(typed: TypedPlan): readonly WidthArg[] {
  const known = widthArgsOf.get(typed.plan);
  if (known) return known;
  const args: WidthArg[] = [];
  const visit = (e: Expr, seen: Set<string>): void => {
    const [first, second] = e.kind === 'call' ? e.args : [];
    if (e.kind === 'call' && e.callee.name === 'certainty' && first)
      args.push({ arg: first, width: (sigma) => 2 * Math.ceil(3 * sigma) + 1 });
    if (e.kind === 'call' && e.callee.name === 'maxpool' && second)
      args.push({ arg: second, width: (k) => k });
    if (e.kind === 'call' && e.callee.name === 'window' && second)
      args.push({ arg: second, width: (radius) => 2 * radius + 1 });
    if (e.kind === 'name' && !seen.has(e.name)) {
      seen.add(e.name);
      const b = typed.bindings.get(e.name);
      if (b?.kind === 'let') visit(b.expr, seen);
    }
    forEachChild(e, (c) => visit(c, seen));
  };
  for (const s of typed.plan.body) if (s.kind !== 'let') forEachStmtExpr(s, (root) => visit(root, new Set()));
  widthArgsOf.set(typed.plan, args);
  return args;
}

/** The widths of the plan's windows at its parameter values, Infinity (the whole canvas) where not constant. */
function windowWidths(typed: TypedPlan): number[] {
  const isConstant = constancy(typed);
  return widthArgs(typed).map(({ arg, width }) =>
    isConstant(arg) ? width(constantOf(typed, arg)) : Number.POSITIVE_INFINITY,
  );
}

/** Neighbours of a row one plain row-step stands for: a windowed score visits them much faster. */
const neighboursPerRowStep = 64;

/**
 * Expression terms a plain row-step includes: the examples, which set what a row-step costs,
 * count at most 56 (28 terms and 7 statements), so their budgets are what they were.
 */
const termsInRowStep = 128;
/** Expression terms beyond those that cost one plain row-step more: each visits every row. */
const termsPerRowStep = 12;
/** A statement costs as much as this many terms besides its expressions: it visits every row too. */
const termsPerStatement = 4;

/** The terms one layer of a step evaluates at most (see `planTerms`), and its statements. */
const termsOf = new WeakMap<Plan, number>();

function evaluatedTerms(plan: Plan): number {
  let terms = termsOf.get(plan);
  if (terms === undefined) {
    terms = planTerms(plan).terms + termsPerStatement * plan.body.length;
    termsOf.set(plan, terms);
  }
  return terms;
}

/**
 * What one row-step of the plan costs on a canvas of L rows, in plain row-steps: more when a layer
 * evaluates many expression terms, and when it evaluates windowed scores or sets, whose cost per
 * row grows with their width.
 */
export function rowStepCost(typed: TypedPlan): (L: number) => number {
  const widths = windowWidths(typed);
  const terms = 1 + Math.max(0, evaluatedTerms(typed.plan) - termsInRowStep) / termsPerRowStep;
  return (L) => terms + widths.reduce((sum, w) => sum + Math.min(w, L), 0) / neighboursPerRowStep;
}

/** The most row-steps the simulation of these scenarios can take: each ends by its step limit. */
export function simulationWork(typed: TypedPlan, scs: readonly Scenario[]): number {
  const cost = rowStepCost(typed);
  return scs.reduce((sum, sc) => {
    const L = sc.promptLen + sc.genLen;
    return sum + (stepLimit(sc) + 1) * L * sc.numLayers * cost(L);
  }, 0);
}

/**
 * Int parameters the simulation may take at smaller values, in two groups scaled apart: sizes
 * (block lengths, steps, periods, windows, counts), which set the canvas and the steps, and layer
 * indices, which set the simulated depth. Below its floor a value is kept; above, it never goes
 * below the floor. The floor of sizes is above every int literal of the plan's comparisons and
 * `every`s (`block_step < 2`), that of layer indices above every literal layer bound and probe
 * (`on layers 8..9`), so that every comparison with a literal comes out as at the declared values;
 * sizes also keep at least 2 (1, every step or every position, is another schedule).
 */
interface Scalable {
  readonly sizes: readonly Param[];
  readonly layers: readonly Param[];
  readonly sizeFloor: number;
  readonly layerFloor: number;
}

const comparisons = new Set(['<', '<=', '>', '>=', '==', '!=']);

function scalableParams(typed: TypedPlan): Scalable {
  const { bindings } = typed;
  /** Names `e` reads, through `let`s; `f` sees every expression reached. */
  const reach = (e: Expr, f: (x: Expr) => void, seen = new Set<string>()): void => {
    f(e);
    if (e.kind === 'name' && !seen.has(e.name)) {
      seen.add(e.name);
      const b = bindings.get(e.name);
      if (b?.kind === 'let') reach(b.expr, f, seen);
    }
    forEachChild(e, (c) => reach(c, f, seen));
  };
  const layerNames = new Set<string>();
  const fixedNames = new Set<string>();
  const layerLiterals: number[] = [0];
  const sizeLiterals: number[] = [2];
  const intLiteral = (x: Expr) => (x.kind === 'number' && x.isInt ? x.value : undefined);
  const layerIndex = (e: Expr) =>
    reach(e, (x) => {
      if (x.kind === 'name') layerNames.add(x.name);
      const v = intLiteral(x);
      if (v !== undefined) layerLiterals.push(v + 1);
    });
  const scope = (l: LayerScope | undefined) => {
    if (l?.kind === 'cmp') layerIndex(l.bound);
    else if (l) for (const b of [l.lo, l.hi]) layerIndex(b);
  };
  const visit = (e: Expr): void => {
    if (e.kind === 'call') {
      const b = builtins[e.callee.name];
      e.args.forEach((a, i) => {
        if (e.callee.name === 'attn_similarity') layerIndex(a);
        // An odd kernel scaled down may be even, which the plan may not say.
        if (b?.kind === 'function' && b.args[i]?.range?.odd)
          reach(a, (x) => x.kind === 'name' && fixedNames.add(x.name));
      });
    }
    if ((e.kind === 'binary' && comparisons.has(e.op)) || (e.kind === 'call' && e.callee.name === 'every'))
      reach(e, (x) => {
        const v = intLiteral(x);
        if (v !== undefined) sizeLiterals.push(v + 1);
      });
    forEachChild(e, visit);
  };
  for (const s of typed.plan.body) {
    if ('layers' in s) scope(s.layers);
    forEachStmtExpr(s, visit);
  }
  const ints = typed.plan.params.filter((p) => {
    const b = bindings.get(p.name);
    return b?.kind === 'param' && b.type === 'int' && !fixedNames.has(p.name);
  });
  return {
    sizes: ints.filter((p) => !layerNames.has(p.name)),
    layers: ints.filter((p) => layerNames.has(p.name)),
    sizeFloor: Math.max(...sizeLiterals),
    layerFloor: Math.max(...layerLiterals),
  };
}

const paramValue = (typed: TypedPlan, p: Param): number => {
  const b = typed.bindings.get(p.name);
  return b?.kind === 'param' ? Number(b.value) : 0;
};

/** `v` divided by `factor`, rounded up, but kept at or above `floor` and the declared range. */
function scaledValue(v: number, factor: number, floor: number, p: Param): number {
  if (factor === 1 || v <= floor) return v;
  return Math.max(floor, p.range?.lo.value ?? 0, Math.ceil(v / factor));
}

/** The plan with some parameters at other values, as the simulation reads them. */
export function withValues(typed: TypedPlan, values: ReadonlyMap<string, number>): TypedPlan {
  const bindings = new Map(typed.bindings);
  for (const [name, value] of values) {
    const b = bindings.get(name);
    if (b?.kind === 'param') bindings.set(name, { ...b, value });
  }
  return { ...typed, bindings };
}

/** 1, 2, 3, 4, 6, 8, 12, …: factors up to the first that takes every value of `ps` to its floor. */
function factors(typed: TypedPlan, ps: readonly Param[]): number[] {
  const top = Math.max(1, ...ps.map((p) => paramValue(typed, p)));
  const out = [1];
  for (let f = 2; (out.at(-1) as number) < top; f *= 2) out.push(f, f + f / 2);
  return out;
}

/** The widest gap between two layer values that compression keeps: probes look 3 layers on. */
const layerGap = 3;

/**
 * Layer indices above the floor moved down in order, each gap between neighbouring values kept
 * up to `layerGap`, and none below its declared range: order and adjacency are what a layer scope
 * or probe compares, so they come out as at the declared values, while the simulated depth falls
 * from the deepest index to a few layers per distinct one.
 */
function compressedLayers(typed: TypedPlan, ps: readonly Param[], floor: number): Map<string, number> {
  const above = ps.filter((p) => paramValue(typed, p) > floor);
  const values = [...new Set(above.map((p) => paramValue(typed, p)))].sort((a, b) => a - b);
  const to = new Map<number, number>();
  let [prev, at] = [floor, floor];
  for (const v of values) {
    const lo = Math.max(
      ...above.filter((p) => paramValue(typed, p) === v).map((p) => p.range?.lo.value ?? 0),
    );
    at = Math.max(at + Math.min(v - prev, layerGap), lo);
    to.set(v, at);
    prev = v;
  }
  const out = new Map<string, number>();
  for (const p of above) {
    const w = to.get(paramValue(typed, p)) as number;
    if (w !== paramValue(typed, p)) out.set(p.name, w);
  }
  return out;
}

/**
 * Parameter values to simulate at, in the order to try them: sizes divided by 1, 2, 3, 4, 6, …,
 * each first with layer indices as declared and then compressed.
 */
export function* scalings(typed: TypedPlan): Generator<ReadonlyMap<string, number>> {
  const s = scalableParams(typed);
  const compressed = compressedLayers(typed, s.layers, s.layerFloor);
  for (const f of factors(typed, s.sizes)) {
    const sizes = new Map<string, number>();
    for (const p of s.sizes) {
      const v = paramValue(typed, p);
      const w = scaledValue(v, f, s.sizeFloor, p);
      if (w !== v) sizes.set(p.name, w);
    }
    yield sizes;
    if (compressed.size > 0) yield new Map([...sizes, ...compressed]);
  }
}
