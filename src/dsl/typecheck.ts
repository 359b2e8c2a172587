import type { Call, DecodeStmt, Expr, LayerScope, NameRef, Param, Plan, SelectStmt, Stmt } from './ast.ts';
import {
  type ArgRange,
  type ArgSpec,
  builtins,
  cacheKinds,
  decodeRules,
  masks,
  perScopes,
} from './builtins.ts';
import { type Diagnostic, error } from './diagnostics.ts';
import { isKeyword } from './lexer.ts';
import { formatNumber, printExpr } from './printer.ts';
import type { Span } from './source.ts';
import { didYouMean } from './suggest.ts';
import { assignable, type Type, typeWords } from './types.ts';

export type Value = number | boolean;

/** What a name in a plan stands for, after resolution. */
export type Binding =
  | { readonly kind: 'param'; readonly type: Type; readonly value: Value; readonly param: Param }
  | { readonly kind: 'let'; readonly type: Type; readonly expr: Expr; readonly span: Span }
  | { readonly kind: 'select'; readonly type: 'set'; readonly stmt: SelectStmt };

/** A plan that passed name, type and range checks, ready for the semantic simulation. */
export interface TypedPlan {
  readonly plan: Plan;
  readonly bindings: ReadonlyMap<string, Binding>;
  readonly decode: DecodeStmt;
}

const describeRange = (r: ArgRange): string => {
  const lo = r.min === undefined ? '' : `${r.minOpen ? '>' : '>='} ${r.min}`;
  const hi = r.max === undefined ? '' : `<= ${r.max}`;
  return [lo, hi, r.odd ? 'odd' : ''].filter(Boolean).join(' and ');
};

const inRange = (x: number, r: ArgRange): boolean =>
  (r.min === undefined || (r.minOpen ? x > r.min : x >= r.min)) &&
  (r.max === undefined || x <= r.max) &&
  (!r.odd || Math.abs(x % 2) === 1);

const orderDependentSets = new Set(['targets', 'next_targets']);

class PlanTyper {
  readonly diagnostics: Diagnostic[] = [];
  readonly bindings = new Map<string, Binding>();

  constructor(
    private readonly plan: Plan,
    private readonly overrides: ReadonlyMap<string, string>,
    private readonly overrideSpan: Span,
  ) {}

  private err(span: Span, message: string, notes?: readonly string[]): void {
    this.diagnostics.push(error(span, message, notes));
  }

  run(): TypedPlan | undefined {
    for (const p of this.plan.params) this.declareParam(p);
    for (const s of this.plan.body) this.checkStmt(s);
    this.checkContradictions();
    const decodes = this.plan.body.filter((s): s is DecodeStmt => s.kind === 'decode');
    const decode = decodes[0];
    if (!decode) {
      this.err(this.plan.nameSpan, `plan '${this.plan.name}' has no decode rule`, [
        'help: add e.g. `decode threshold(0.9) by confidence in current_block`',
      ]);
    } else if (!isRandomOrder(decode)) {
      this.checkOrderFreeSets(decode);
    }
    if (this.diagnostics.length > 0 || !decode) return undefined;
    return { plan: this.plan, bindings: this.bindings, decode };
  }

  private declareName(name: string, span: Span, what: string): boolean {
    if (builtins[name] || decodeRules[name]) {
      this.err(span, `${what} '${name}' shadows the builtin of that name`, ['help: choose another name']);
      return false;
    }
    const prior = this.bindings.get(name);
    if (prior) {
      const at =
        prior.kind === 'param'
          ? prior.param.nameSpan
          : prior.kind === 'let'
            ? prior.span
            : prior.stmt.nameSpan;
      this.err(span, `'${name}' is already defined at line ${at.start.line}`);
      return false;
    }
    return true;
  }

  private declareParam(p: Param): void {
    if (!this.declareName(p.name, p.nameSpan, 'parameter')) return;
    const lit = p.defaultValue;
    const inferred: Type = lit.kind === 'bool' ? 'bool' : lit.isInt ? 'int' : 'float';
    const type: Type = p.declaredType ?? inferred;
    if (!assignable(inferred, type)) {
      this.err(
        lit.span,
        `default of '${p.name}' is ${typeWords[inferred]}, but the parameter is declared ${type}`,
      );
      return;
    }
    if (p.range && type === 'bool')
      this.err(p.range.span, `a range makes no sense for the bool parameter '${p.name}'`);
    if (p.range && p.range.lo.value > p.range.hi.value) {
      this.err(
        p.range.span,
        `empty range for '${p.name}': ${formatNumber(p.range.lo)} > ${formatNumber(p.range.hi)}`,
      );
    }
    let value: Value = lit.value;
    const within = (x: number) => !p.range || (x >= p.range.lo.value && x <= p.range.hi.value);
    const rangeText = p.range ? `[${formatNumber(p.range.lo)}, ${formatNumber(p.range.hi)}]` : '';
    if (typeof value === 'number' && !within(value)) {
      this.err(lit.span, `default ${printExpr(lit)} of '${p.name}' is outside its range ${rangeText}`);
    }
    const override = this.overrides.get(p.name);
    if (override !== undefined) {
      const parsed = parseOverride(override, type);
      if (parsed === undefined) {
        this.err(this.overrideSpan, `--set ${p.name}=${override}: '${override}' is not ${typeWords[type]}`);
      } else if (typeof parsed === 'number' && !within(parsed)) {
        this.err(
          this.overrideSpan,
          `--set ${p.name}=${override} is outside the range ${rangeText} of '${p.name}'`,
        );
      } else value = parsed;
    }
    this.bindings.set(p.name, { kind: 'param', type, value, param: p });
  }

  private checkStmt(s: Stmt): void {
    switch (s.kind) {
      case 'blocks':
        this.expectConst(s.length, 'int', { min: 1 }, 'block length');
        return;
      case 'compute':
        this.expect(s.set, 'set', 'the compute set');
        this.checkLayers(s.layers);
        return;
      case 'attend':
        if (s.keys.kind === 'keys') this.expect(s.keys.set, 'set', 'the key set');
        else {
          const seen = new Set<string>();
          for (const g of s.keys.segments) {
            if (seen.has(g.name)) this.err(g.nameSpan, `segment '${g.name}' is defined twice in this split`);
            seen.add(g.name);
            this.expect(g.keys, 'set', `segment '${g.name}'`);
            if (g.reusedUntil) this.expect(g.reusedUntil, 'bool', 'a reuse condition');
          }
        }
        if (s.mask) this.checkChoice(s.mask, masks, 'mask');
        this.checkLayers(s.layers);
        return;
      case 'cache':
        for (const k of s.kinds) this.checkChoice(k, cacheKinds, 'cache kind');
        this.expect(s.set, 'set', 'the cached set');
        if (s.delay) this.expectConst(s.delay, 'int', { min: 0 }, 'delay');
        this.checkLayers(s.layers);
        return;
      case 'refresh':
        this.expect(s.set, 'set', 'the refreshed set');
        this.expect(s.when, 'bool', 'a refresh condition');
        this.checkLayers(s.layers);
        return;
      case 'select':
        this.expect(s.set, 'set', 'a selection');
        this.expect(s.at, 'bool', 'the moment of a selection');
        if (s.per) this.checkChoice(s.per, perScopes, 'selection scope');
        if (this.declareName(s.name, s.nameSpan, 'selection'))
          this.bindings.set(s.name, { kind: 'select', type: 'set', stmt: s });
        return;
      case 'decode':
        this.checkDecode(s);
        return;
      case 'let': {
        const type = this.typeOf(s.value);
        if (type && this.declareName(s.name, s.nameSpan, 'name')) {
          this.bindings.set(s.name, { kind: 'let', type, expr: s.value, span: s.nameSpan });
        }
        return;
      }
    }
  }

  private checkDecode(s: DecodeStmt): void {
    const rule = decodeRules[s.rule.callee.name];
    if (!rule) {
      this.err(s.rule.callee.span, `unknown decode rule '${s.rule.callee.name}'`, [
        ...didYouMean(s.rule.callee.name, Object.keys(decodeRules)),
        `note: decode rules are ${Object.keys(decodeRules).join(', ')}`,
      ]);
    } else this.checkArgs(s.rule, rule.args, `decode rule '${s.rule.callee.name}'`);
    if (s.by) this.expect(s.by, 'score', 'the decode score');
    if (s.within) this.expect(s.within, 'set', 'the decode window');
  }

  private checkChoice(ref: NameRef, table: Readonly<Record<string, string>>, what: string): void {
    if (table[ref.name] !== undefined) return;
    this.err(ref.span, `unknown ${what} '${ref.name}'`, [
      ...didYouMean(ref.name, Object.keys(table)),
      `note: known: ${Object.keys(table).join(', ')}`,
    ]);
  }

  private checkLayers(l: LayerScope | undefined): void {
    if (!l) return;
    if (l.kind === 'cmp') this.expectConst(l.bound, 'int', { min: 0 }, 'layer index');
    else {
      const lo = this.expectConst(l.lo, 'int', { min: 0 }, 'layer index');
      const hi = this.expectConst(l.hi, 'int', { min: 0 }, 'layer index');
      if (typeof lo === 'number' && typeof hi === 'number' && lo > hi)
        this.err(l.span, `empty layer range ${lo}..${hi}`);
    }
  }

  /** Checks that `e` has type `want`; returns its type when it is well-typed. */
  private expect(e: Expr, want: Type, what: string): Type | undefined {
    const t = this.typeOf(e);
    if (t && !assignable(t, want)) {
      this.err(e.span, `${what} must be ${typeWords[want]}, but \`${printExpr(e)}\` is ${typeWords[t]}`);
      return undefined;
    }
    return t;
  }

  private expectConst(e: Expr, want: Type, range: ArgRange, what: string): Value | undefined {
    if (!this.expect(e, want, `the ${what}`)) return undefined;
    const v = this.constValue(e);
    if (v === undefined) {
      this.err(e.span, `the ${what} must be a constant (parameters and numbers), not \`${printExpr(e)}\``);
      return undefined;
    }
    if (typeof v === 'number' && !inRange(v, range)) {
      this.err(e.span, `the ${what} is ${v}, but must be ${describeRange(range)}`);
    }
    return v;
  }

  private checkArgs(call: Call, specs: readonly ArgSpec[], what: string): void {
    if (call.args.length !== specs.length) {
      const sig = specs.map((a) => `${a.name}: ${a.type}`).join(', ');
      this.err(
        call.span,
        `${what} takes ${specs.length} argument${specs.length === 1 ? '' : 's'}, but ${call.args.length} ${call.args.length === 1 ? 'was' : 'were'} given`,
        [`note: ${call.callee.name}(${sig})`],
      );
      return;
    }
    specs.forEach((spec, i) => {
      const arg = call.args[i] as Expr;
      const t = this.expect(arg, spec.type, `argument '${spec.name}' of ${call.callee.name}`);
      if (!t || !spec.range) return;
      const v = this.constValue(arg);
      if (typeof v === 'number' && !inRange(v, spec.range)) {
        this.err(
          arg.span,
          `argument '${spec.name}' of ${call.callee.name} is ${v}, but must be ${describeRange(spec.range)}`,
        );
      }
    });
  }

  private readonly types = new Map<Expr, Type | undefined>();

  /** The type of `e`, reporting its errors once however often it is asked. */
  typeOf(e: Expr): Type | undefined {
    if (this.types.has(e)) return this.types.get(e);
    const t = this.computeType(e);
    this.types.set(e, t);
    return t;
  }

  private computeType(e: Expr): Type | undefined {
    switch (e.kind) {
      case 'number':
        return e.isInt ? 'int' : 'float';
      case 'bool':
        return 'bool';
      case 'name':
        return this.nameType(e);
      case 'call':
        return this.callType(e);
      case 'filter': {
        const s = this.expect(e.set, 'set', 'a filtered value');
        const p = this.expect(e.predicate, 'pred', 'a filter');
        return s && p ? 'set' : undefined;
      }
      case 'unary': {
        const t = this.typeOf(e.operand);
        if (!t) return undefined;
        if (e.op === 'not') {
          if (t === 'bool' || t === 'pred') return t;
          this.err(e.span, `'not' needs a condition, but \`${printExpr(e.operand)}\` is ${typeWords[t]}`);
          return undefined;
        }
        if (t === 'int' || t === 'float') return t;
        this.err(e.span, `'-' needs a number, but \`${printExpr(e.operand)}\` is ${typeWords[t]}`);
        return undefined;
      }
      case 'binary':
        return this.binaryType(e);
    }
  }

  private nameType(e: NameRef): Type | undefined {
    const bound = this.bindings.get(e.name);
    if (bound) return bound.type;
    const b = builtins[e.name];
    if (b?.kind === 'value') return b.type;
    if (b?.kind === 'function') {
      this.err(e.span, `'${e.name}' is a function and needs arguments`, [
        `note: ${e.name}(${b.args.map((a) => `${a.name}: ${a.type}`).join(', ')})`,
      ]);
      return undefined;
    }
    const later = this.plan.body.find(
      (s) =>
        (s.kind === 'let' || s.kind === 'select') &&
        s.name === e.name &&
        s.span.start.offset > e.span.start.offset,
    );
    if (later) {
      this.err(e.span, `'${e.name}' is used before its definition at line ${later.span.start.line}`);
      return undefined;
    }
    const candidates = [
      ...this.bindings.keys(),
      ...Object.keys(builtins).filter((n) => builtins[n]?.kind === 'value'),
    ];
    this.err(e.span, `unknown name '${e.name}'`, didYouMean(e.name, candidates));
    return undefined;
  }

  private callType(e: Call): Type | undefined {
    const b = builtins[e.callee.name];
    if (b?.kind === 'function') {
      this.checkArgs(e, b.args, `'${e.callee.name}'`);
      return b.type;
    }
    if (b || this.bindings.has(e.callee.name)) {
      this.err(e.callee.span, `'${e.callee.name}' is not a function`);
      return undefined;
    }
    if (decodeRules[e.callee.name]) {
      this.err(e.callee.span, `'${e.callee.name}' is a decode rule; it can only follow \`decode\``);
      return undefined;
    }
    const fns = Object.keys(builtins).filter((n) => builtins[n]?.kind === 'function');
    this.err(e.callee.span, `unknown function '${e.callee.name}'`, didYouMean(e.callee.name, fns));
    return undefined;
  }

  private binaryType(e: Extract<Expr, { kind: 'binary' }>): Type | undefined {
    const l = this.typeOf(e.left);
    const r = this.typeOf(e.right);
    if (!l || !r) return undefined;
    const bad = (need: string) => {
      this.err(
        e.span,
        `'${e.op}' needs ${need}, but got ${typeWords[l]} (\`${printExpr(e.left)}\`) and ${typeWords[r]} (\`${printExpr(e.right)}\`)`,
      );
      return undefined;
    };
    const numeric = (t: Type) => t === 'int' || t === 'float';
    switch (e.op) {
      case '|':
      case '&':
        return l === 'set' && r === 'set' ? 'set' : bad('two token sets');
      case '-':
        if (l === 'set' && r === 'set') return 'set';
        return numeric(l) && numeric(r)
          ? l === 'int' && r === 'int'
            ? 'int'
            : 'float'
          : bad('two token sets or two numbers');
      case '+':
      case '*':
      case '/':
        return numeric(l) && numeric(r) ? (l === 'int' && r === 'int' ? 'int' : 'float') : bad('two numbers');
      case 'and':
      case 'or':
        if (l === 'bool' && r === 'bool') return 'bool';
        return l === 'pred' && r === 'pred' ? 'pred' : bad('two step conditions or two per-token predicates');
      default: {
        if (numeric(l) && numeric(r)) return 'bool';
        if ((l === 'score' && numeric(r)) || (numeric(l) && r === 'score')) return 'pred';
        return bad('numbers or a per-token score and a number');
      }
    }
  }

  /** The value of a constant expression (numbers, parameters, arithmetic), else undefined. */
  constValue(e: Expr): Value | undefined {
    switch (e.kind) {
      case 'number':
      case 'bool':
        return e.value;
      case 'name': {
        const b = this.bindings.get(e.name);
        if (b?.kind === 'param') return b.value;
        if (b?.kind === 'let') return this.constValue(b.expr);
        return undefined;
      }
      case 'unary': {
        const v = this.constValue(e.operand);
        if (v === undefined) return undefined;
        return e.op === 'neg' ? -Number(v) : !v;
      }
      case 'binary': {
        const l = this.constValue(e.left);
        const r = this.constValue(e.right);
        if (typeof l !== 'number' || typeof r !== 'number') return undefined;
        return arithmetic(e.op, l, r, this.typeOf(e.left) === 'int' && this.typeOf(e.right) === 'int');
      }
      default:
        return undefined;
    }
  }

  private checkContradictions(): void {
    const singles = ['blocks', 'decode'] as const;
    for (const kind of singles) {
      const all = this.plan.body.filter((s) => s.kind === kind);
      for (const dup of all.slice(1)) {
        this.err(
          dup.span,
          `contradictory rules: a second \`${kind}\` rule (the first is at line ${all[0]?.span.start.line})`,
        );
      }
    }
    for (const kind of ['compute', 'attend'] as const) {
      const rules = this.plan.body.filter((s): s is Extract<Stmt, { kind: typeof kind }> => s.kind === kind);
      for (let i = 0; i < rules.length; i++) {
        for (let j = 0; j < i; j++) {
          const a = rules[j];
          const b = rules[i];
          if (!a || !b) continue;
          const layer = this.overlap(a.layers, b.layers);
          if (layer !== undefined) {
            this.err(
              b.span,
              `contradictory rules: this \`${kind}\` rule and the one at line ${a.span.start.line} both apply to layer ${layer}`,
              ['help: scope one of them with `on layer N` / `on layers >= N`, or merge them with `|`'],
            );
          }
        }
      }
    }
  }

  /** A layer both scopes cover, if any; two unscoped rules overlap everywhere. */
  private overlap(a: LayerScope | undefined, b: LayerScope | undefined): number | undefined {
    if ((a === undefined) !== (b === undefined)) return undefined;
    const bounds = [a, b].flatMap((s) => (s ? (s.kind === 'cmp' ? [s.bound] : [s.lo, s.hi]) : []));
    const values = bounds.map((x) => this.constValue(x));
    if (values.some((v) => typeof v !== 'number')) return undefined;
    const top = Math.max(0, ...(values as number[])) + 2;
    for (let layer = 0; layer <= top; layer++) {
      if (
        layerInScope(a, layer, (x) => this.constValue(x)) &&
        layerInScope(b, layer, (x) => this.constValue(x))
      )
        return layer;
    }
    return undefined;
  }

  private checkOrderFreeSets(decode: DecodeStmt): void {
    const visit = (e: Expr): void => {
      if (e.kind === 'name' && orderDependentSets.has(e.name) && !this.bindings.has(e.name)) {
        this.err(
          e.span,
          `'${e.name}' is only known before the step when the decode order is fixed in advance`,
          [
            `help: decode with \`by random\` (line ${decode.span.start.line} decodes by ${decode.by ? printExpr(decode.by) : 'confidence'})`,
          ],
        );
      }
      forEachChild(e, visit);
    };
    for (const s of this.plan.body) forEachStmtExpr(s, visit);
  }
}

export function forEachChild(e: Expr, f: (child: Expr) => void): void {
  switch (e.kind) {
    case 'call':
      e.args.forEach(f);
      return;
    case 'binary':
      f(e.left);
      f(e.right);
      return;
    case 'unary':
      f(e.operand);
      return;
    case 'filter':
      f(e.set);
      f(e.predicate);
      return;
    default:
      return;
  }
}

export function forEachStmtExpr(s: Stmt, f: (e: Expr) => void): void {
  const layers = (l: LayerScope | undefined) => {
    if (l?.kind === 'cmp') f(l.bound);
    else if (l) {
      f(l.lo);
      f(l.hi);
    }
  };
  switch (s.kind) {
    case 'blocks':
      f(s.length);
      return;
    case 'compute':
      f(s.set);
      layers(s.layers);
      return;
    case 'attend':
      if (s.keys.kind === 'keys') f(s.keys.set);
      else
        for (const g of s.keys.segments) {
          f(g.keys);
          if (g.reusedUntil) f(g.reusedUntil);
        }
      layers(s.layers);
      return;
    case 'cache':
      f(s.set);
      if (s.delay) f(s.delay);
      layers(s.layers);
      return;
    case 'refresh':
      f(s.set);
      f(s.when);
      layers(s.layers);
      return;
    case 'select':
      f(s.set);
      f(s.at);
      return;
    case 'decode':
      f(s.rule);
      if (s.by) f(s.by);
      if (s.within) f(s.within);
      return;
    case 'let':
      f(s.value);
      return;
  }
}

export function arithmetic(op: string, l: number, r: number, ints: boolean): Value | undefined {
  switch (op) {
    case '+':
      return l + r;
    case '-':
      return l - r;
    case '*':
      return l * r;
    case '/':
      if (r === 0) return undefined;
      return ints ? Math.floor(l / r) : l / r;
    case '<':
      return l < r;
    case '<=':
      return l <= r;
    case '>':
      return l > r;
    case '>=':
      return l >= r;
    case '==':
      return l === r;
    case '!=':
      return l !== r;
    default:
      return undefined;
  }
}

export function layerInScope(
  s: LayerScope | undefined,
  layer: number,
  value: (e: Expr) => Value | undefined,
): boolean {
  if (!s) return true;
  if (s.kind === 'range') return layer >= Number(value(s.lo)) && layer <= Number(value(s.hi));
  return arithmetic(s.op, layer, Number(value(s.bound)), true) === true;
}

const isRandomOrder = (d: DecodeStmt): boolean => d.by?.kind === 'name' && d.by.name === 'random';

function parseOverride(text: string, type: Type): Value | undefined {
  if (type === 'bool') return text === 'true' ? true : text === 'false' ? false : undefined;
  if (!/^-?(\d+(\.\d+)?([eE][+-]?\d+)?)$/.test(text)) return undefined;
  const n = Number(text);
  if (type === 'int' && !Number.isInteger(n)) return undefined;
  return n;
}

/** Names, types, arities, constant ranges, overrides and contradictions of one plan. */
export function typecheckPlan(
  plan: Plan,
  overrides: ReadonlyMap<string, string>,
): { typed: TypedPlan | undefined; diagnostics: Diagnostic[] } {
  const typer = new PlanTyper(plan, overrides, plan.nameSpan);
  if (isKeyword(plan.name)) typer.diagnostics.push(error(plan.nameSpan, `'${plan.name}' is a keyword`));
  const typed = typer.run();
  return { typed, diagnostics: typer.diagnostics };
}
