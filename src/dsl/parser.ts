import './polyfill.ts';
import {
  EmbeddedActionsParser,
  type IOrAlt,
  type IToken,
  type ParserMethod,
  type TokenType,
} from 'chevrotain';
import type {
  AttendStmt,
  BinaryOp,
  BlocksStmt,
  BoolLit,
  CacheStmt,
  Call,
  Comment,
  ComputeStmt,
  DecodeStmt,
  Expr,
  KeySpec,
  LayerScope,
  LetStmt,
  NameRef,
  NumberLit,
  Param,
  ParamType,
  Plan,
  PlanFile,
  RefreshStmt,
  Segment,
  SelectStmt,
  Stmt,
  UnaryOp,
} from './ast.ts';
import {
  Amp,
  Assign,
  allTokens,
  Colon,
  Comma,
  DotDot,
  EqEq,
  FloatLit,
  Ge,
  Gt,
  Identifier,
  IntLit,
  keywords as K,
  LBrace,
  LBracket,
  Le,
  LParen,
  Lt,
  Minus,
  Ne,
  Pipe,
  Plus,
  RBrace,
  RBracket,
  RParen,
  Slash,
  Star,
} from './lexer.ts';
import { planErrorMessages } from './parseErrors.ts';
import type { Pos, Span } from './source.ts';

const startPos = (t: IToken): Pos => ({
  offset: t.startOffset,
  line: t.startLine ?? 1,
  col: t.startColumn ?? 1,
});
const endPos = (t: IToken): Pos => ({
  offset: (t.endOffset ?? t.startOffset) + 1,
  line: t.endLine ?? 1,
  col: (t.endColumn ?? 0) + 1,
});
export const tokenSpan = (first: IToken, last: IToken = first): Span => ({
  start: startPos(first),
  end: endPos(last),
});
// Error recovery can leave a sub-node undefined; the AST is then discarded, but building it must not throw.
type Spanned = { span: Span } | undefined;
const spanOf = (a: Spanned, b: Spanned): Span => ({
  start: (a ?? b)?.span.start ?? noPos,
  end: (b ?? a)?.span.end ?? noPos,
});
const fromTo = (t: IToken, node: Spanned): Span => ({ start: startPos(t), end: node?.span.end ?? endPos(t) });
const noPos: Pos = { offset: 0, line: 1, col: 1 };
const sp = (node: Spanned): Span => node?.span ?? { start: noPos, end: noPos };

const noComments = { leading: [] as Comment[], trailing: undefined };

const binaryOpOf: Record<string, BinaryOp> = {
  '|': '|',
  '&': '&',
  '-': '-',
  '+': '+',
  '*': '*',
  '/': '/',
  '<': '<',
  '<=': '<=',
  '>': '>',
  '>=': '>=',
  '==': '==',
  '!=': '!=',
};

class PlanParser extends EmbeddedActionsParser {
  constructor() {
    super(allTokens, { recoveryEnabled: true, maxLookahead: 3, errorMessageProvider: planErrorMessages });
    this.performSelfAnalysis();
  }

  // Rules run for every statement and token: their alternatives are built once, not per call.
  private readonly oneOf = (tokens: TokenType[]): IOrAlt<IToken>[] =>
    tokens.map((t) => ({ ALT: () => this.CONSUME(t) }));
  private readonly orOps = this.oneOf([K.or]);
  private readonly andOps = this.oneOf([K.and]);
  private readonly unionOps = this.oneOf([Pipe]);
  private readonly interOps = this.oneOf([Amp]);
  private readonly addOps = this.oneOf([Plus, Minus]);
  private readonly mulOps = this.oneOf([Star, Slash]);
  private readonly cmpOps = this.oneOf([EqEq, Ne, Le, Ge, Lt, Gt]);
  private readonly numbers = this.oneOf([IntLit, FloatLit]);
  private readonly bools = this.oneOf([K.true, K.false]);

  /**
   * `token operand` as a unary `op`, the operand parsed by `self`; or whatever `next` parses. The
   * rules come as thunks: they are fields set after this one.
   */
  private readonly prefixed = (
    token: TokenType,
    op: UnaryOp,
    self: () => ParserMethod<[], Expr>,
    next: () => ParserMethod<[], Expr>,
  ): IOrAlt<Expr>[] => [
    {
      ALT: () => {
        const t = this.CONSUME(token);
        const operand = this.SUBRULE(self());
        return this.ACTION(() => ({ kind: 'unary' as const, op, operand, span: fromTo(t, operand) }));
      },
    },
    { ALT: () => this.SUBRULE(next()) },
  ];

  private readonly leftAssoc = (operand: ParserMethod<[], Expr>, ops: IOrAlt<IToken>[]): Expr => {
    let left = this.SUBRULE(operand);
    this.MANY(() => {
      const op = this.OR(ops);
      const right = this.SUBRULE2(operand);
      left = this.ACTION(() => ({
        kind: 'binary' as const,
        op: binaryOpOf[op.image] ?? (op.image as BinaryOp),
        left,
        right,
        span: spanOf(left, right),
      }));
    });
    return left;
  };

  public file = this.RULE('file', (): PlanFile => {
    const plans: Plan[] = [];
    this.MANY(() => {
      plans.push(this.SUBRULE(this.plan));
    });
    return { plans, trailing: [] };
  });

  private plan = this.RULE('plan', (): Plan => {
    const kw = this.CONSUME(K.plan);
    const name = this.CONSUME(Identifier);
    const params: Param[] = [];
    this.CONSUME(LParen);
    this.MANY_SEP({ SEP: Comma, DEF: () => params.push(this.SUBRULE(this.param)) });
    this.CONSUME(RParen);
    this.CONSUME(LBrace);
    const body: Stmt[] = [];
    this.MANY(() => {
      body.push(this.SUBRULE(this.statement));
    });
    const close = this.CONSUME(RBrace);
    return this.ACTION(() => ({
      kind: 'plan' as const,
      name: name.image,
      nameSpan: tokenSpan(name),
      params,
      body,
      leading: [],
      inner: [],
      span: tokenSpan(kw, close),
    }));
  });

  private param = this.RULE('param', (): Param => {
    const name = this.CONSUME(Identifier);
    let declaredType: ParamType | undefined;
    this.OPTION(() => {
      this.CONSUME(Colon);
      const t = this.OR([
        { ALT: () => this.CONSUME(K.int) },
        { ALT: () => this.CONSUME(K.float) },
        { ALT: () => this.CONSUME(K.bool) },
      ]);
      declaredType = t.image as ParamType;
    });
    this.CONSUME(Assign);
    const defaultValue = this.SUBRULE(this.literal);
    let range: Param['range'];
    this.OPTION2(() => {
      this.CONSUME(K.in);
      const open = this.CONSUME(LBracket);
      const lo = this.SUBRULE(this.signedNumber);
      this.CONSUME2(Comma);
      const hi = this.SUBRULE2(this.signedNumber);
      const close = this.CONSUME(RBracket);
      range = this.ACTION(() => ({ lo, hi, span: tokenSpan(open, close) }));
    });
    return this.ACTION(() => ({
      kind: 'param' as const,
      name: name.image,
      nameSpan: tokenSpan(name),
      declaredType,
      defaultValue,
      range,
      span: { start: startPos(name), end: sp(range ?? defaultValue).end },
    }));
  });

  private literal = this.RULE(
    'literal',
    (): NumberLit | BoolLit =>
      this.OR([{ ALT: () => this.SUBRULE(this.signedNumber) }, { ALT: () => this.SUBRULE(this.boolLit) }]) as
        | NumberLit
        | BoolLit,
  );

  private signedNumber = this.RULE('signedNumber', (): NumberLit => {
    const minus = this.OPTION(() => this.CONSUME(Minus));
    const n = this.SUBRULE(this.number);
    return this.ACTION(() =>
      minus && n ? { ...n, value: -n.value, span: { start: startPos(minus), end: n.span.end } } : n,
    );
  });

  private number = this.RULE('number', (): NumberLit => {
    const t = this.OR(this.numbers);
    return this.ACTION(() => ({
      kind: 'number' as const,
      value: Number(t.image),
      isInt: t.tokenType === IntLit,
      span: tokenSpan(t),
    }));
  });

  private boolLit = this.RULE('boolLit', (): BoolLit => {
    const t = this.OR(this.bools);
    return this.ACTION(() => ({ kind: 'bool' as const, value: t.image === 'true', span: tokenSpan(t) }));
  });

  private readonly statements: IOrAlt<Stmt>[] = [
    { ALT: () => this.SUBRULE(this.blocksStmt) },
    { ALT: () => this.SUBRULE(this.computeStmt) },
    { ALT: () => this.SUBRULE(this.attendStmt) },
    { ALT: () => this.SUBRULE(this.cacheStmt) },
    { ALT: () => this.SUBRULE(this.refreshStmt) },
    { ALT: () => this.SUBRULE(this.selectStmt) },
    { ALT: () => this.SUBRULE(this.decodeStmt) },
    { ALT: () => this.SUBRULE(this.letStmt) },
  ];
  private statement = this.RULE('statement', (): Stmt => this.OR(this.statements));

  private blocksStmt = this.RULE('blocksStmt', (): BlocksStmt => {
    const kw = this.CONSUME(K.blocks);
    const length = this.SUBRULE(this.expr);
    return this.ACTION(() => ({ kind: 'blocks' as const, length, span: fromTo(kw, length), ...noComments }));
  });

  private computeStmt = this.RULE('computeStmt', (): ComputeStmt => {
    const kw = this.CONSUME(K.compute);
    const set = this.SUBRULE(this.expr);
    const layers = this.OPTION(() => this.SUBRULE(this.layerScope));
    return this.ACTION(() => ({
      kind: 'compute' as const,
      set,
      layers,
      span: fromTo(kw, layers ?? set),
      ...noComments,
    }));
  });

  private attendStmt = this.RULE('attendStmt', (): AttendStmt => {
    const kw = this.CONSUME(K.attend);
    const keys = this.OR([
      { ALT: () => this.SUBRULE(this.split) },
      {
        ALT: () => {
          const set = this.SUBRULE(this.expr);
          return this.ACTION((): KeySpec => ({ kind: 'keys', set }));
        },
      },
    ]);
    let mask: NameRef | undefined;
    this.OPTION(() => {
      this.CONSUME(K.mask);
      mask = this.SUBRULE(this.nameRef);
    });
    const layers = this.OPTION2(() => this.SUBRULE(this.layerScope));
    return this.ACTION(() => {
      const last = layers ?? mask ?? (keys.kind === 'split' ? keys : keys.set);
      return { kind: 'attend' as const, keys, mask, layers, span: fromTo(kw, last), ...noComments };
    });
  });

  private split = this.RULE('split', (): KeySpec => {
    const kw = this.CONSUME(K.split);
    this.CONSUME(LBrace);
    const segments: Segment[] = [];
    this.AT_LEAST_ONE_SEP({ SEP: Comma, DEF: () => segments.push(this.SUBRULE(this.segment)) });
    this.CONSUME(RBrace);
    this.CONSUME(K.merge);
    const lse = this.CONSUME(K.lse);
    return this.ACTION(() => ({ kind: 'split' as const, segments, span: tokenSpan(kw, lse) }));
  });

  private segment = this.RULE('segment', (): Segment => {
    const name = this.CONSUME(Identifier);
    this.CONSUME(Assign);
    const keys = this.SUBRULE(this.expr);
    let reusedUntil: Expr | undefined;
    this.OPTION(() => {
      this.CONSUME(K.reused);
      this.CONSUME(K.until);
      reusedUntil = this.SUBRULE2(this.expr);
    });
    return this.ACTION(() => ({
      name: name.image,
      nameSpan: tokenSpan(name),
      keys,
      reusedUntil,
      span: fromTo(name, reusedUntil ?? keys),
    }));
  });

  private cacheStmt = this.RULE('cacheStmt', (): CacheStmt => {
    const kw = this.CONSUME(K.cache);
    const kinds: NameRef[] = [];
    this.AT_LEAST_ONE_SEP({ SEP: Comma, DEF: () => kinds.push(this.SUBRULE(this.nameRef)) });
    this.CONSUME(K.of);
    const set = this.SUBRULE(this.expr);
    let delay: Expr | undefined;
    this.OPTION(() => {
      this.CONSUME(K.delay);
      delay = this.SUBRULE2(this.expr);
    });
    const layers = this.OPTION2(() => this.SUBRULE(this.layerScope));
    return this.ACTION(() => ({
      kind: 'cache' as const,
      kinds,
      set,
      delay,
      layers,
      span: fromTo(kw, layers ?? delay ?? set),
      ...noComments,
    }));
  });

  private refreshStmt = this.RULE('refreshStmt', (): RefreshStmt => {
    const kw = this.CONSUME(K.refresh);
    const set = this.SUBRULE(this.expr);
    this.CONSUME(K.when);
    const when = this.SUBRULE2(this.expr);
    const layers = this.OPTION(() => this.SUBRULE(this.layerScope));
    return this.ACTION(() => ({
      kind: 'refresh' as const,
      set,
      when,
      layers,
      span: fromTo(kw, layers ?? when),
      ...noComments,
    }));
  });

  private selectStmt = this.RULE('selectStmt', (): SelectStmt => {
    const kw = this.CONSUME(K.select);
    const name = this.CONSUME(Identifier);
    this.CONSUME(Assign);
    const set = this.SUBRULE(this.expr);
    this.CONSUME(K.at);
    const at = this.SUBRULE2(this.expr);
    let per: NameRef | undefined;
    this.OPTION(() => {
      this.CONSUME(K.per);
      per = this.SUBRULE(this.nameRef);
    });
    return this.ACTION(() => ({
      kind: 'select' as const,
      name: name.image,
      nameSpan: tokenSpan(name),
      set,
      at,
      per,
      span: fromTo(kw, per ?? at),
      ...noComments,
    }));
  });

  private decodeStmt = this.RULE('decodeStmt', (): DecodeStmt => {
    const kw = this.CONSUME(K.decode);
    const rule = this.SUBRULE(this.call);
    let by: Expr | undefined;
    let within: Expr | undefined;
    this.OPTION(() => {
      this.CONSUME(K.by);
      by = this.SUBRULE(this.expr);
    });
    this.OPTION2(() => {
      this.CONSUME(K.in);
      within = this.SUBRULE2(this.expr);
    });
    const shift = this.OPTION3(() => this.CONSUME(K.ar_shift));
    return this.ACTION(() => {
      const end = shift ? endPos(shift) : sp(within ?? by ?? rule).end;
      return {
        kind: 'decode' as const,
        rule,
        by,
        within,
        arShift: shift !== undefined,
        span: { start: startPos(kw), end },
        ...noComments,
      };
    });
  });

  private letStmt = this.RULE('letStmt', (): LetStmt => {
    const kw = this.CONSUME(K.let);
    const name = this.CONSUME(Identifier);
    this.CONSUME(Assign);
    const value = this.SUBRULE(this.expr);
    return this.ACTION(() => ({
      kind: 'let' as const,
      name: name.image,
      nameSpan: tokenSpan(name),
      value,
      span: fromTo(kw, value),
      ...noComments,
    }));
  });

  private layerScope = this.RULE('layerScope', (): LayerScope => {
    const on = this.CONSUME(K.on);
    return this.OR([
      {
        ALT: () => {
          this.CONSUME(K.layer);
          const bound = this.SUBRULE(this.expr);
          return this.ACTION(() => ({
            kind: 'cmp' as const,
            op: '==' as const,
            bound,
            span: fromTo(on, bound),
          }));
        },
      },
      {
        ALT: () => {
          this.CONSUME(K.layers);
          return this.OR2([
            {
              ALT: () => {
                const op = this.SUBRULE(this.cmpOp);
                const bound = this.SUBRULE2(this.unionExpr);
                return this.ACTION(() => ({ kind: 'cmp' as const, op, bound, span: fromTo(on, bound) }));
              },
            },
            {
              ALT: () => {
                const lo = this.SUBRULE3(this.unionExpr);
                this.CONSUME(DotDot);
                const hi = this.SUBRULE4(this.unionExpr);
                return this.ACTION(() => ({ kind: 'range' as const, lo, hi, span: fromTo(on, hi) }));
              },
            },
          ]) as LayerScope;
        },
      },
    ]) as LayerScope;
  });

  private cmpOp = this.RULE('cmpOp', (): '==' | '!=' | '<' | '<=' | '>' | '>=' => {
    const t = this.OR(this.cmpOps);
    return t.image as '==' | '!=' | '<' | '<=' | '>' | '>=';
  });

  public expr = this.RULE('expr', (): Expr => this.leftAssoc(this.andExpr, this.orOps));

  private andExpr = this.RULE('andExpr', (): Expr => this.leftAssoc(this.notExpr, this.andOps));

  private readonly notAlts = this.prefixed(
    K.not,
    'not',
    () => this.notExpr,
    () => this.cmpExpr,
  );
  private notExpr = this.RULE('notExpr', (): Expr => this.OR(this.notAlts));

  private cmpExpr = this.RULE('cmpExpr', (): Expr => {
    const left = this.SUBRULE(this.unionExpr);
    let out: Expr = left;
    this.OPTION(() => {
      const op = this.SUBRULE(this.cmpOp);
      const right = this.SUBRULE2(this.unionExpr);
      out = this.ACTION(() => ({ kind: 'binary' as const, op, left, right, span: spanOf(left, right) }));
    });
    return out;
  });

  private unionExpr = this.RULE('unionExpr', (): Expr => this.leftAssoc(this.interExpr, this.unionOps));

  private interExpr = this.RULE('interExpr', (): Expr => this.leftAssoc(this.addExpr, this.interOps));

  private addExpr = this.RULE('addExpr', (): Expr => this.leftAssoc(this.mulExpr, this.addOps));

  private mulExpr = this.RULE('mulExpr', (): Expr => this.leftAssoc(this.unaryExpr, this.mulOps));

  private readonly unaryAlts = this.prefixed(
    Minus,
    'neg',
    () => this.unaryExpr,
    () => this.postfixExpr,
  );
  private unaryExpr = this.RULE('unaryExpr', (): Expr => this.OR(this.unaryAlts));

  private postfixExpr = this.RULE('postfixExpr', (): Expr => {
    let out = this.SUBRULE(this.primary);
    this.MANY(() => {
      this.CONSUME(LBracket);
      const predicate = this.SUBRULE(this.expr);
      const close = this.CONSUME(RBracket);
      out = this.ACTION(() => ({
        kind: 'filter' as const,
        set: out,
        predicate,
        span: { start: sp(out).start, end: endPos(close) },
      }));
    });
    return out;
  });

  private readonly primaryAlts: IOrAlt<Expr>[] = [
    { ALT: () => this.SUBRULE(this.number) },
    { ALT: () => this.SUBRULE(this.boolLit) },
    { GATE: () => this.LA(2).tokenType === LParen, ALT: () => this.SUBRULE(this.call) },
    { ALT: () => this.SUBRULE(this.nameRef) },
    {
      ALT: () => {
        this.CONSUME(LParen);
        const inner = this.SUBRULE(this.expr);
        this.CONSUME(RParen);
        return inner;
      },
    },
  ];
  private primary = this.RULE('primary', (): Expr => this.OR(this.primaryAlts));

  private call = this.RULE('call', (): Call => {
    const callee = this.SUBRULE(this.nameRef);
    this.CONSUME(LParen);
    const args: Expr[] = [];
    this.MANY_SEP({ SEP: Comma, DEF: () => args.push(this.SUBRULE(this.expr)) });
    const close = this.CONSUME(RParen);
    return this.ACTION(() => ({
      kind: 'call' as const,
      callee,
      args,
      span: { start: sp(callee).start, end: endPos(close) },
    }));
  });

  private nameRef = this.RULE('nameRef', (): NameRef => {
    const t = this.CONSUME(Identifier);
    return this.ACTION(() => ({ kind: 'name' as const, name: t.image, span: tokenSpan(t) }));
  });
}

/** One shared instance: building a chevrotain parser runs its grammar analysis, which is costly. */
export const planParser = new PlanParser();
