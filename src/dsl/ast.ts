import type { Span } from './source.ts';

/** Operators of the expression language; the checker gives them meaning by operand type. */
export type BinaryOp =
  | '|'
  | '&'
  | '-'
  | '+'
  | '*'
  | '/'
  | '<'
  | '<='
  | '>'
  | '>='
  | '=='
  | '!='
  | 'and'
  | 'or';
export type UnaryOp = 'not' | 'neg';

export type Expr = NumberLit | BoolLit | NameRef | Call | Binary | Unary | Filter;

export interface NumberLit {
  readonly kind: 'number';
  readonly value: number;
  readonly isInt: boolean;
  readonly span: Span;
}
export interface BoolLit {
  readonly kind: 'bool';
  readonly value: boolean;
  readonly span: Span;
}
export interface NameRef {
  readonly kind: 'name';
  readonly name: string;
  readonly span: Span;
}
export interface Call {
  readonly kind: 'call';
  readonly callee: NameRef;
  readonly args: readonly Expr[];
  readonly span: Span;
}
export interface Binary {
  readonly kind: 'binary';
  readonly op: BinaryOp;
  readonly left: Expr;
  readonly right: Expr;
  readonly span: Span;
}
export interface Unary {
  readonly kind: 'unary';
  readonly op: UnaryOp;
  readonly operand: Expr;
  readonly span: Span;
}
/** `set[predicate]`: the members of a set for which a per-token predicate holds. */
export interface Filter {
  readonly kind: 'filter';
  readonly set: Expr;
  readonly predicate: Expr;
  readonly span: Span;
}

export type ParamType = 'int' | 'float' | 'bool';

export interface Param {
  readonly kind: 'param';
  readonly name: string;
  readonly nameSpan: Span;
  /** The type written after `:`, if any; otherwise it is inferred from the default. */
  readonly declaredType: ParamType | undefined;
  readonly defaultValue: NumberLit | BoolLit;
  readonly range: { readonly lo: NumberLit; readonly hi: NumberLit; readonly span: Span } | undefined;
  readonly span: Span;
}

/** Which layers a rule applies to: `on layer 0`, `on layers >= l`, `on layers 2..5` (inclusive). */
export type LayerScope =
  | {
      readonly kind: 'cmp';
      readonly op: '==' | '!=' | '<' | '<=' | '>' | '>=';
      readonly bound: Expr;
      readonly span: Span;
    }
  | { readonly kind: 'range'; readonly lo: Expr; readonly hi: Expr; readonly span: Span };

export interface Comment {
  readonly text: string;
  readonly span: Span;
}

interface StmtBase {
  readonly span: Span;
  /** Own-line comments directly above the statement. */
  readonly leading: readonly Comment[];
  /** A comment on the statement's last line, after it. */
  readonly trailing: Comment | undefined;
}

export interface BlocksStmt extends StmtBase {
  readonly kind: 'blocks';
  readonly length: Expr;
}
export interface ComputeStmt extends StmtBase {
  readonly kind: 'compute';
  readonly set: Expr;
  readonly layers: LayerScope | undefined;
}
export interface Segment {
  readonly name: string;
  readonly nameSpan: Span;
  readonly keys: Expr;
  /** A reused segment keeps its partial (O, LSE) from an earlier step until this event fires. */
  readonly reusedUntil: Expr | undefined;
  readonly span: Span;
}
export type KeySpec =
  | { readonly kind: 'keys'; readonly set: Expr }
  | { readonly kind: 'split'; readonly segments: readonly Segment[]; readonly span: Span };
export interface AttendStmt extends StmtBase {
  readonly kind: 'attend';
  readonly keys: KeySpec;
  /** A structural mask such as `block_causal`, applied on top of the key set. */
  readonly mask: NameRef | undefined;
  readonly layers: LayerScope | undefined;
}
export interface CacheStmt extends StmtBase {
  readonly kind: 'cache';
  readonly kinds: readonly NameRef[];
  readonly set: Expr;
  readonly delay: Expr | undefined;
  readonly layers: LayerScope | undefined;
}
export interface RefreshStmt extends StmtBase {
  readonly kind: 'refresh';
  readonly set: Expr;
  readonly when: Expr;
  readonly layers: LayerScope | undefined;
}
export interface SelectStmt extends StmtBase {
  readonly kind: 'select';
  readonly name: string;
  readonly nameSpan: Span;
  readonly set: Expr;
  readonly at: Expr;
  /** `per kv_head`: one index set per KV head (MAGE). */
  readonly per: NameRef | undefined;
}
export interface DecodeStmt extends StmtBase {
  readonly kind: 'decode';
  readonly rule: Call;
  readonly by: Expr | undefined;
  readonly within: Expr | undefined;
  readonly arShift: boolean;
}
export interface LetStmt extends StmtBase {
  readonly kind: 'let';
  readonly name: string;
  readonly nameSpan: Span;
  readonly value: Expr;
}

export type Stmt =
  | BlocksStmt
  | ComputeStmt
  | AttendStmt
  | CacheStmt
  | RefreshStmt
  | SelectStmt
  | DecodeStmt
  | LetStmt;

export interface Plan {
  readonly kind: 'plan';
  readonly name: string;
  readonly nameSpan: Span;
  readonly params: readonly Param[];
  readonly body: readonly Stmt[];
  readonly leading: readonly Comment[];
  /** Comments after the last statement, before the closing brace. */
  readonly inner: readonly Comment[];
  readonly span: Span;
}

export interface PlanFile {
  readonly plans: readonly Plan[];
  /** Comments after the last plan. */
  readonly trailing: readonly Comment[];
}
