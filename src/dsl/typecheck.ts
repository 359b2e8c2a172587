import type {
  BinaryOp,
  Call,
  DecodeStmt,
  Expr,
  LayerScope,
  NameRef,
  Param,
  Plan,
  RefreshStmt,
  SelectStmt,
  Stmt,
} from './ast.ts';
import {
  type ArgRange,
  type ArgSpec,
  builtins,
  cacheKinds,
  decodeRules,
  masks,
  maxPositionCount,
  perScopes,
  revokingRules,
} from './builtins.ts';
import { type Diagnostic, error, hasErrors, warning } from './diagnostics.ts';
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
  /** The type of every expression of the plan (those of `let`s once, where they are defined). */
  readonly types: ReadonlyMap<Expr, Type | undefined>;
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

const numeric = (t: Type): boolean => t === 'int' || t === 'float';
const scalarOrScore = (t: Type): boolean => numeric(t) || t === 'score';

/**
 * The result type of a binary operator on operands of the given types, or undefined when the
 * operator does not apply to them. This is the operator table of docs/language.md section 3.
 */
function operatorType(op: BinaryOp, l: Type, r: Type): Type | undefined {
  // A score with a score or a number is per position; two numbers stay a per-step number.
  const perPosition = (l === 'score' && scalarOrScore(r)) || (r === 'score' && scalarOrScore(l));
  switch (op) {
    case '|':
    case '&':
      return l === 'set' && r === 'set' ? 'set' : undefined;
    case '-':
    case '+':
    case '*':
    case '/':
      if (op === '-' && l === 'set' && r === 'set') return 'set';
      if (numeric(l) && numeric(r)) return l === 'int' && r === 'int' ? 'int' : 'float';
      return perPosition ? 'score' : undefined;
    case 'and':
    case 'or':
      return (l === 'bool' || l === 'pred') && r === l ? l : undefined;
    case '==':
    case '!=':
      if (l === 'bool' && r === 'bool') return 'bool';
      return numeric(l) && numeric(r) ? 'bool' : perPosition ? 'pred' : undefined;
    case '<':
    case '<=':
    case '>':
    case '>=':
      return numeric(l) && numeric(r) ? 'bool' : perPosition ? 'pred' : undefined;
  }
}

const operandWords: Readonly<Record<BinaryOp, string>> = {
  '|': 'two token sets',
  '&': 'two token sets',
  '-': 'two token sets, two numbers, or a per-token score and a score or number',
  '+': 'two numbers, or a per-token score and a score or number',
  '*': 'two numbers, or a per-token score and a score or number',
  '/': 'two numbers, or a per-token score and a score or number',
  and: 'two step conditions or two per-token predicates',
  or: 'two step conditions or two per-token predicates',
  '==': 'two numbers, two step conditions, or a per-token score and a score or number',
  '!=': 'two numbers, two step conditions, or a per-token score and a score or number',
  '<': 'two numbers, or a per-token score and a score or number',
  '<=': 'two numbers, or a per-token score and a score or number',
  '>': 'two numbers, or a per-token score and a score or number',
  '>=': 'two numbers, or a per-token score and a score or number',
};

// Builtin sets that never hold a masked position: blocks before the current one are finished.
const neverMasked = new Set(['none', 'prompt', 'decoded', 'newly_decoded', 'before_block']);
const allMaskedSets = new Set(['all', 'generated', 'masked']);
const subsetFunctions = new Set(['topk', 'topp', 'keep', 'leftmost']);

const orderDependentSets = new Set(['targets', 'next_targets']);
/** Scores (and score functions) measured on the model; `age`, `position` and `random` are not. */
const modelScores = new Set([
  'confidence',
  'margin',
  'entropy',
  'rollout',
  'value_drift',
  'hidden_drift',
  'key_drift',
  'certainty',
  'attention_mass',
  'query_key',
]);

class PlanTyper {
  readonly diagnostics: Diagnostic[] = [];
  readonly bindings = new Map<string, Binding>();
  /**
   * Names whose definition already failed with an error (a `let` whose expression is ill-typed, a
   * parameter with a bad default): their uses stay silent instead of cascading into `unknown name`.
   */
  private readonly failed = new Map<string, Span>();
  /** Parameters whose value is outside their own range: already reported, so not again at each use. */
  private readonly outOfRange = new Set<string>();

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
    this.checkPerHeadReads();
    const decodes = this.plan.body.filter((s): s is DecodeStmt => s.kind === 'decode');
    const decode = decodes[0];
    if (!decode) {
      this.err(this.plan.nameSpan, `plan '${this.plan.name}' has no decode rule`, [
        'help: add e.g. `decode threshold(0.9) by confidence in current_block`',
      ]);
    } else {
      if (!isRandomOrder(decode)) this.checkOrderFreeSets(decode);
      else if (revokingRules.has(decode.rule.callee.name)) this.checkNoLookahead(decode);
      this.checkDecodeCandidates(decode);
    }
    if (hasErrors(this.diagnostics) || !decode) return undefined;
    return { plan: this.plan, bindings: this.bindings, decode, types: this.types };
  }

  private declareName(name: string, span: Span, what: string): boolean {
    if (builtins[name] || decodeRules[name]) {
      this.err(span, `${what} '${name}' shadows the builtin of that name`, ['help: choose another name']);
      return false;
    }
    const failedAt = this.failed.get(name);
    if (failedAt) {
      this.err(span, `'${name}' is already defined at line ${failedAt.start.line}`);
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
      this.failed.set(p.name, p.nameSpan);
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
      this.outOfRange.add(p.name);
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
      } else {
        value = parsed;
        this.outOfRange.delete(p.name);
      }
    }
    this.bindings.set(p.name, { kind: 'param', type, value, param: p });
  }

  private checkStmt(s: Stmt): void {
    switch (s.kind) {
      case 'blocks':
        this.expectConst(s.length, 'int', { min: 1, max: maxPositionCount }, 'block length');
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
        if (s.delay) this.expectConst(s.delay, 'int', { min: 0, max: maxPositionCount }, 'delay');
        this.checkLayers(s.layers);
        return;
      case 'refresh':
        this.expect(s.set, 'set', 'the refreshed set');
        this.expect(s.when, 'bool', 'a refresh condition');
        this.checkLayers(s.layers);
        this.checkDriftScope(s);
        return;
      case 'select':
        this.expect(s.set, 'set', 'a selection');
        this.expect(s.at, 'bool', 'the moment of a selection');
        if (s.per) this.checkPer(s.per);
        if (this.declareName(s.name, s.nameSpan, 'selection'))
          this.bindings.set(s.name, { kind: 'select', type: 'set', stmt: s });
        return;
      case 'decode':
        this.checkDecode(s);
        return;
      case 'let': {
        const type = this.typeOf(s.value);
        if (!this.declareName(s.name, s.nameSpan, 'name')) return;
        if (type) this.bindings.set(s.name, { kind: 'let', type, expr: s.value, span: s.nameSpan });
        else this.failed.set(s.name, s.nameSpan);
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

  private checkPer(per: NameRef): void {
    if (perScopes[per.name] === undefined) this.checkChoice(per, perScopes, 'selection scope');
  }

  /**
   * A selection made `per kv_head` is one key set per KV head: an attend's key set may read it (each
   * head attends to its own), and so may another per-head selection (chosen head by head). Every
   * other place needs one set of rows, which the union over heads would give silently.
   */
  private checkPerHeadReads(): void {
    const perHead = new Map<string, string | undefined>();
    const source = (name: string): string | undefined => {
      if (perHead.has(name)) return perHead.get(name);
      perHead.set(name, undefined);
      const b = this.bindings.get(name);
      let found: string | undefined;
      if (b?.kind === 'select' && b.stmt.per) found = name;
      else if (b?.kind === 'let') found = this.perHeadRead(b.expr, source)?.via;
      perHead.set(name, found);
      return found;
    };
    for (const s of this.plan.body) {
      if (s.kind === 'let' || (s.kind === 'attend' && s.keys.kind === 'keys')) continue;
      const exprs: Expr[] = s.kind === 'select' && s.per ? [s.at] : [];
      if (!(s.kind === 'select' && s.per)) forEachStmtExpr(s, (e) => exprs.push(e));
      for (const e of exprs) {
        const hit = this.perHeadRead(e, source);
        if (!hit) continue;
        const where =
          s.kind === 'attend'
            ? 'a split segment'
            : s.kind === 'select'
              ? `selection '${s.name}', which is one set for every head,`
              : `a ${s.kind} statement`;
        const what = hit.name === hit.via ? `'${hit.via}' is` : `'${hit.name}' reads '${hit.via}', which is`;
        this.err(hit.span, `${what} chosen per KV head, so ${where} cannot read it`, [
          'note: a per-KV-head selection is one key set per head: only an attend key set (without split) or another `per kv_head` selection reads it',
        ]);
        break;
      }
    }
  }

  /** The first name in `e` that reads a per-KV-head selection, and which selection it is. */
  private perHeadRead(
    e: Expr,
    source: (name: string) => string | undefined,
  ): { readonly span: Span; readonly name: string; readonly via: string } | undefined {
    if (e.kind === 'name') {
      const via = source(e.name);
      return via === undefined ? undefined : { span: e.span, name: e.name, via };
    }
    let hit: { readonly span: Span; readonly name: string; readonly via: string } | undefined;
    forEachChild(e, (c) => {
      hit ??= this.perHeadRead(c, source);
    });
    return hit;
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
    if (l.kind === 'cmp') this.expectConst(l.bound, 'int', { min: 0, max: maxPositionCount }, 'layer index');
    else {
      const lo = this.expectConst(l.lo, 'int', { min: 0, max: maxPositionCount }, 'layer index');
      const hi = this.expectConst(l.hi, 'int', { min: 0, max: maxPositionCount }, 'layer index');
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
    if (typeof v === 'number' && !inRange(v, range) && !this.readsOutOfRange(e)) {
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
      if (typeof v === 'number' && !inRange(v, spec.range) && !this.readsOutOfRange(arg)) {
        this.err(
          arg.span,
          `argument '${spec.name}' of ${call.callee.name} is ${v}, but must be ${describeRange(spec.range)}`,
        );
      }
    });
  }

  private readonly types = new Map<Expr, Type | undefined>();

  /**
   * What each walk that follows names found for the expression of a `let` or `select`: lets that
   * read each other twice (`let a2 = a1 | a1`) would otherwise be walked 2^n times. A name's
   * expression only reads names bound before it, so its answer never changes.
   */
  private readonly walked = new Map<string, Map<Expr, unknown>>();

  private once<T>(walk: string, e: Expr, f: (e: Expr) => T, meanwhile?: T): T {
    let memo = this.walked.get(walk);
    if (!memo) {
      memo = new Map();
      this.walked.set(walk, memo);
    }
    if (memo.has(e)) return memo.get(e) as T;
    // A selection that reads itself (an error reported elsewhere) gets this answer inside itself.
    if (meanwhile !== undefined) memo.set(e, meanwhile);
    const v = f(e);
    memo.set(e, v);
    return v;
  }

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
        // A step condition filters the whole set: the set while it holds, none otherwise (phases).
        const p = this.typeOf(e.predicate);
        if (p && p !== 'bool' && !assignable(p, 'pred')) {
          this.err(
            e.predicate.span,
            `a filter must be a per-token predicate or a step condition, but \`${printExpr(e.predicate)}\` is ${typeWords[p]}`,
          );
          return undefined;
        }
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
        if (t === 'int' || t === 'float' || t === 'score') return t;
        this.err(
          e.span,
          `'-' needs a number or a per-token score, but \`${printExpr(e.operand)}\` is ${typeWords[t]}`,
        );
        return undefined;
      }
      case 'binary':
        return this.binaryType(e);
    }
  }

  private nameType(e: NameRef): Type | undefined {
    const bound = this.bindings.get(e.name);
    if (bound) return bound.type;
    if (this.failed.has(e.name)) return undefined;
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
      // The layer a score is pinned to is one layer for the whole generation.
      if (e.callee.name === 'measured_at' && e.args[1] && this.constValue(e.args[1]) === undefined)
        this.err(
          e.args[1].span,
          `the layer of measured_at must be a constant (parameters and numbers), not \`${printExpr(e.args[1])}\``,
        );
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
    const t = operatorType(e.op, l, r);
    if (t) return t;
    this.err(
      e.span,
      `'${e.op}' needs ${operandWords[e.op]}, but got ${typeWords[l]} (\`${printExpr(e.left)}\`) and ${typeWords[r]} (\`${printExpr(e.right)}\`)`,
    );
    return undefined;
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
        if (b?.kind === 'let') return this.once('constValue', b.expr, (x) => this.constValue(x));
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
      for (const { rule, earlier, layer } of this.clashes(rules)) {
        this.err(
          rule.span,
          `contradictory rules: this \`${kind}\` rule and the one at line ${earlier.span.start.line} both apply to layer ${layer}`,
          ['help: scope one of them with `on layer N` / `on layers >= N`, or merge them with `|`'],
        );
      }
    }
  }

  /**
   * Each rule that applies to a layer an earlier rule already applies to: the lowest such layer and
   * the first rule there. Unscoped rules clash with each other only. Each layer is claimed once,
   * so this stays linear where comparing every pair of a long plan's rules would not.
   */
  private clashes<R extends { layers: LayerScope | undefined }>(
    rules: readonly R[],
  ): { rule: R; earlier: R; layer: number }[] {
    const out: { rule: R; earlier: R; layer: number }[] = [];
    const [first, ...unscoped] = rules.filter((r) => r.layers === undefined);
    if (first) for (const rule of unscoped) out.push({ rule, earlier: first, layer: 0 });
    // A bound that is not a layer index was reported where it was checked.
    const index = (e: Expr): number | undefined => {
      const v = this.constValue(e);
      return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= maxPositionCount ? v : undefined;
    };
    const scoped = rules.flatMap((rule) => {
      const s = rule.layers;
      const bounds = s ? (s.kind === 'cmp' ? [s.bound] : [s.lo, s.hi]).map(index) : [];
      return s && bounds.every((b) => b !== undefined)
        ? [{ rule, scope: s, bounds: bounds as number[] }]
        : [];
    });
    // Above its bounds a scope covers every layer or none, so the lowest clash is below the top.
    const top = scoped.reduce((m, r) => Math.max(m, ...r.bounds), 0) + 2;
    const layersOf = (s: LayerScope, [v = 0, hi = 0]: readonly number[]): [number, number][] => {
      if (s.kind === 'range') return [[v, hi]];
      switch (s.op) {
        case '==':
          return [[v, v]];
        case '!=':
          return [
            [0, v - 1],
            [v + 1, top],
          ];
        case '<':
          return [[0, v - 1]];
        case '<=':
          return [[0, v]];
        case '>':
          return [[v + 1, top]];
        case '>=':
          return [[v, top]];
      }
    };
    const owner = new Int32Array(top + 1);
    // The lowest unclaimed layer at or above each layer, kept short by path halving.
    const free = Int32Array.from({ length: top + 2 }, (_, i) => i);
    const unclaimedFrom = (layer: number): number => {
      let at = layer;
      while (free[at] !== at) {
        free[at] = free[free[at] as number] as number;
        at = free[at] as number;
      }
      return at;
    };
    scoped.forEach(({ rule, scope, bounds }, i) => {
      let clash: number | undefined;
      for (const [lo, hi] of layersOf(scope, bounds)) {
        for (let layer = lo; layer <= hi; ) {
          const unclaimed = unclaimedFrom(layer);
          if (unclaimed === layer) {
            owner[layer] = i;
            free[layer] = layer + 1;
            layer++;
          } else {
            clash ??= layer;
            layer = unclaimed;
          }
        }
      }
      const earlier = clash === undefined ? undefined : scoped[owner[clash] as number];
      if (clash !== undefined && earlier) out.push({ rule, earlier: earlier.rule, layer: clash });
    });
    return out;
  }

  /** Whether `e`, or a `let` it reads, has a term for which `test` holds (memoised per `walk`). */
  private readsTerm(walk: string, e: Expr, test: (e: Expr) => boolean): boolean {
    if (test(e)) return true;
    if (e.kind === 'name') {
      const b = this.bindings.get(e.name);
      return b?.kind === 'let' && this.once(walk, b.expr, (x) => this.readsTerm(walk, x, test));
    }
    let hit = false;
    forEachChild(e, (c) => {
      hit ||= this.readsTerm(walk, c, test);
    });
    return hit;
  }

  /** Whether `e` reads a parameter whose value was already reported outside its declared range. */
  private readsOutOfRange(e: Expr): boolean {
    return this.readsTerm(
      'readsOutOfRange',
      e,
      (x) => x.kind === 'name' && this.bindings.get(x.name)?.kind === 'param' && this.outOfRange.has(x.name),
    );
  }

  private checkDecodeCandidates(decode: DecodeStmt): void {
    const within = decode.within;
    if (!within || this.typeOf(within) !== 'set') return;
    const mayHoldMasked = this.mayHoldMasked(within);
    if (mayHoldMasked && this.readsModelScore(within)) {
      this.diagnostics.push(
        warning(
          within.span,
          `the decode candidates \`${printExpr(within)}\` are chosen by model scores: on a model where they hold no masked position, nothing is decoded and the generation stalls`,
          ['note: `kvplan verify` and `kvplan eval` report such a stall as a failure of the plan'],
        ),
      );
      return;
    }
    if (mayHoldMasked) return;
    this.diagnostics.push(
      warning(
        within.span,
        `the decode candidates \`${printExpr(within)}\` can never hold a masked position, so nothing would be decoded`,
        [
          'note: a decode rule commits masked positions of its `in` set',
          'help: decode within a set that holds masked positions, e.g. `in current_block`',
        ],
      ),
    );
  }

  /** Whether `e` reads a score that comes from the model (through `let`s), not from the canvas. */
  private readsModelScore(e: Expr): boolean {
    return this.readsTerm(
      'readsModelScore',
      e,
      (x) =>
        (x.kind === 'name' && modelScores.has(x.name)) ||
        (x.kind === 'call' && modelScores.has(x.callee.name)),
    );
  }

  /**
   * `after_drift` compares the layers below the one deciding, so on layer 0 it is always false: a
   * refresh scoped to layer 0 alone that reads it would never fire.
   */
  private checkDriftScope(s: RefreshStmt): void {
    const l = s.layers;
    if (
      !l ||
      !this.readsTerm('readsAfterDrift', s.when, (x) => x.kind === 'call' && x.callee.name === 'after_drift')
    )
      return;
    const top = Number(this.constValue(l.kind === 'range' ? l.hi : l.bound));
    if (Number.isNaN(top)) return;
    const highest =
      l.kind === 'range' || l.op === '==' || l.op === '<='
        ? top
        : l.op === '<'
          ? top - 1
          : Number.POSITIVE_INFINITY;
    if (highest < 1)
      this.err(
        s.when.span,
        `\`after_drift\` looks at the layers below the one it decides, so on layer 0 it is always false and this refresh never fires`,
        ['help: scope the refresh to deeper layers, e.g. `on layers >= 1`, or leave it unscoped'],
      );
  }

  /**
   * Whether the set may hold a masked position at some step. Only a `false` is a claim (the set
   * certainly never does), so everything not understood counts as `true`.
   */
  private mayHoldMasked(e: Expr): boolean {
    switch (e.kind) {
      case 'name': {
        const b = this.bindings.get(e.name);
        if (b?.kind === 'let') return this.once('mayHoldMasked', b.expr, (x) => this.mayHoldMasked(x));
        // A selection keeps members of its set only, and a position never turns masked again.
        if (b?.kind === 'select')
          return this.once('mayHoldMasked', b.stmt.set, (x) => this.mayHoldMasked(x), true);
        return !neverMasked.has(e.name);
      }
      case 'binary':
        if (e.op === '|') return this.mayHoldMasked(e.left) || this.mayHoldMasked(e.right);
        if (e.op === '&') return this.mayHoldMasked(e.left) && this.mayHoldMasked(e.right);
        if (e.op === '-') return this.mayHoldMasked(e.left) && !this.holdsAllMasked(e.right);
        return true;
      case 'filter':
        return this.mayHoldMasked(e.set) && this.mayHoldOnMasked(e.predicate);
      case 'call':
        // Subsets of their first argument; `window` and `shift` reach other positions.
        return subsetFunctions.has(e.callee.name) && e.args[0] ? this.mayHoldMasked(e.args[0]) : true;
      default:
        return true;
    }
  }

  /** Whether the set certainly holds every masked position (so subtracting it leaves none). */
  private holdsAllMasked(e: Expr): boolean {
    if (e.kind === 'name') {
      const b = this.bindings.get(e.name);
      if (b?.kind === 'let') return this.once('holdsAllMasked', b.expr, (x) => this.holdsAllMasked(x));
      return allMaskedSets.has(e.name);
    }
    if (e.kind !== 'binary') return false;
    if (e.op === '|') return this.holdsAllMasked(e.left) || this.holdsAllMasked(e.right);
    if (e.op === '&') return this.holdsAllMasked(e.left) && this.holdsAllMasked(e.right);
    return false;
  }

  /** Whether the predicate may hold on a masked position; masked positions have age 0. */
  private mayHoldOnMasked(p: Expr): boolean {
    switch (p.kind) {
      case 'name': {
        const b = this.bindings.get(p.name);
        return b?.kind === 'let'
          ? this.once('mayHoldOnMasked', b.expr, (x) => this.mayHoldOnMasked(x))
          : true;
      }
      case 'binary': {
        if (p.op === 'and') return this.mayHoldOnMasked(p.left) && this.mayHoldOnMasked(p.right);
        if (p.op === 'or') return this.mayHoldOnMasked(p.left) || this.mayHoldOnMasked(p.right);
        const isAge = (x: Expr) => x.kind === 'name' && x.name === 'age';
        const ageOnLeft = isAge(p.left);
        if (!ageOnLeft && !isAge(p.right)) return true;
        const bound = this.constValue(ageOnLeft ? p.right : p.left);
        if (typeof bound !== 'number') return true;
        const [l, r] = ageOnLeft ? [0, bound] : [bound, 0];
        return arithmetic(p.op, l, r, false) !== false;
      }
      default:
        return true;
    }
  }

  /** `next_targets` looks one commit ahead, but which masks the next step has depends on what a revoking rule takes back. */
  private checkNoLookahead(decode: DecodeStmt): void {
    const visit = (e: Expr): void => {
      if (e.kind === 'name' && e.name === 'next_targets' && !this.bindings.has(e.name))
        this.err(
          e.span,
          `'next_targets' is not known before the step: decode rule '${decode.rule.callee.name}' (line ${decode.span.start.line}) remasks positions by their predictions, so the next step's candidates are known only after this one`,
          ['help: use `targets` (this step) or a rule that does not revoke'],
        );
      forEachChild(e, visit);
    };
    for (const s of this.plan.body) forEachStmtExpr(s, visit);
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
      // Defined as 0 (docs/language.md section 3) so that no infinity or NaN reaches a ranking.
      if (r === 0) return 0;
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

/** The most statements a plan may have (docs/language.md section 7.21). */
export const maxStatements = 256;
/** The most expression terms a plan may have, counted as `planTerms` does (section 7.21). */
export const maxTerms = 4096;

/**
 * The expression terms (names, numbers, operators, calls, filters) of the plan's statements, the
 * expression of each `let` counted again in each expression that reads it, directly or through
 * other lets, once however often: what one layer of one simulated step evaluates at most, as
 * evaluation reads each `let` once per expression. Counting stops at the first statement that
 * takes the count past `limit`, returned as `over`.
 */
export function planTerms(plan: Plan, limit = Number.POSITIVE_INFINITY): { terms: number; over?: Stmt } {
  const lets = new Map<string, Expr>();
  let terms = 0;
  const count = (e: Expr, reads: (name: string) => void): void => {
    terms++;
    if (e.kind === 'name') reads(e.name);
    forEachChild(e, (c) => count(c, reads));
  };
  for (const s of plan.body) {
    forEachStmtExpr(s, (root) => {
      const seen = new Set<string>();
      const reads = (name: string): void => {
        const value = lets.get(name);
        if (s.kind === 'let' || !value || seen.has(name)) return;
        seen.add(name);
        count(value, reads);
      };
      count(root, reads);
    });
    if (s.kind === 'let' && !lets.has(s.name)) lets.set(s.name, s.value);
    if (terms > limit) return { terms, over: s };
  }
  return { terms };
}

/**
 * A located error for the first statement past the plan-size limits, if any: past them the
 * simulation of even the smallest parameter values would be too slow.
 */
export function planSizeError(plan: Plan): Diagnostic | undefined {
  const extra = plan.body[maxStatements];
  if (extra)
    return error(
      extra.span,
      `plan '${plan.name}' has more than ${maxStatements} statements, the limit of a plan`,
    );
  const { over } = planTerms(plan, maxTerms);
  if (!over) return undefined;
  return error(
    over.span,
    `plan '${plan.name}' has more than ${maxTerms} expression terms up to here, the limit of a plan`,
    ["note: a let's expression counts again in each expression that reads it"],
  );
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
