/**
 * Reads the text form of step programs (printer.ts) back into StepPrograms. Never throws: bad
 * input gives located errors (`line:col: message`) and no program.
 */
import '../dsl/polyfill.ts';
import {
  createToken,
  EmbeddedActionsParser,
  type IParserErrorMessageProvider,
  type IToken,
  Lexer,
  type TokenType,
  tokenLabel,
} from 'chevrotain';
import type {
  AttrValue,
  Dim,
  DType,
  Input,
  InputRole,
  Instr,
  IRType,
  Output,
  Resource,
  Stage,
  StepProgram,
  Value,
} from './types.ts';

export interface IRParseError {
  readonly line: number;
  readonly col: number;
  readonly message: string;
}

export interface IRParseResult<T> {
  readonly program?: T;
  readonly errors: IRParseError[];
}

export const formatParseError = (e: IRParseError): string => `${e.line}:${e.col}: ${e.message}`;

// ---------------------------------------------------------------------------------------------
// Tokens

const Name = createToken({ name: 'Name', pattern: /[A-Za-z_][A-Za-z0-9_.]*/, label: 'a name' });
const kw = (word: string) =>
  createToken({ name: `Kw_${word}`, pattern: word, longer_alt: Name, label: `'${word}'` });
const KwProgram = kw('program');
const KwResource = kw('resource');
const KwStage = kw('stage');
const KwIn = kw('in');
const KwOut = kw('out');
const KwTrue = kw('true');
const KwFalse = kw('false');
const keywordTokens = [KwProgram, KwResource, KwStage, KwOut, KwTrue, KwFalse, KwIn];

const Str = createToken({
  name: 'Str',
  // biome-ignore lint/suspicious/noControlCharactersInRegex: a JSON string has no raw control characters
  pattern: /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/,
  label: 'a string',
});
const ValueId = createToken({ name: 'ValueId', pattern: /%\d+/, label: 'a value (%N)' });
const SymDim = createToken({ name: 'SymDim', pattern: /#[A-Za-z0-9_.]+/, label: 'a dimension (#name)' });
const Num = createToken({ name: 'Num', pattern: /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/, label: 'a number' });
const punct = (name: string, pattern: string, label: string) => createToken({ name, pattern, label });
const LBrace = punct('LBrace', '{', "'{'");
const RBrace = punct('RBrace', '}', "'}'");
const LBracket = punct('LBracket', '[', "'['");
const RBracket = punct('RBracket', ']', "']'");
const Comma = punct('Comma', ',', "','");
const Colon = punct('Colon', ':', "':'");
const Assign = punct('Assign', '=', "'='");
const Comment = createToken({ name: 'Comment', pattern: /\/\/[^\n\r]*/, group: Lexer.SKIPPED });
const WhiteSpace = createToken({ name: 'WhiteSpace', pattern: /[ \t\r\n]+/, group: Lexer.SKIPPED });

const allTokens: TokenType[] = [
  WhiteSpace,
  Comment,
  ...keywordTokens,
  Name,
  Str,
  ValueId,
  SymDim,
  Num,
  LBrace,
  RBrace,
  LBracket,
  RBracket,
  Comma,
  Colon,
  Assign,
];

const irLexer = new Lexer(allTokens, { positionTracking: 'full', ensureOptimizations: false });

// ---------------------------------------------------------------------------------------------
// Raw syntax: tokens kept for locating the errors found while resolving.

interface RawType {
  dtype: IToken;
  dims: IToken[];
  close: IToken;
}
interface RawDef {
  id: IToken;
  type: RawType;
}
interface RawResource {
  kw: IToken;
  name: IToken;
  type: RawType;
  kind: IToken;
}
interface RawAttr {
  key: IToken;
  value: RawAttrValue;
}
type RawAttrValue = { kind: 'scalar'; tok: IToken } | { kind: 'list'; open: IToken; items: IToken[] };
type RawItem =
  | { kind: 'in'; def: RawDef; role: IToken; name: IToken }
  | { kind: 'out'; name: IToken; value: IToken }
  | { kind: 'instr'; defs: RawDef[]; op: IToken; args: IToken[]; attrs: RawAttr[] };
interface RawStage {
  name: IToken;
  items: RawItem[];
}
interface RawProgram {
  kw: IToken;
  name: IToken;
  resources: RawResource[];
  stages: RawStage[];
}

const what = (t: IToken): string => (t.tokenType.name === 'EOF' ? 'end of input' : `'${t.image}'`);

const ruleWords: Record<string, string> = {
  file: "'program'",
  programItem: "'resource', 'stage' or '}'",
  stageItem: "'in', 'out', an instruction or '}'",
  name: 'a name',
  dim: 'a dimension (a number, L or #name)',
  attrValue: 'a number, a string, true, false or a list of numbers',
  opName: 'an op name',
};

const oneOf = (labels: string[]): string => {
  const unique = [...new Set(labels)];
  if (unique.length <= 1) return unique[0] ?? 'something else';
  return `one of ${unique.slice(0, -1).join(', ')} or ${unique.at(-1)}`;
};

const irErrorMessages: IParserErrorMessageProvider = {
  buildMismatchTokenMessage: ({ expected, actual }) =>
    `expected ${tokenLabel(expected)} but found ${what(actual)}`,
  buildNotAllInputParsedMessage: ({ firstRedundant }) =>
    `unexpected ${what(firstRedundant)}: expected 'program' or the end of the input`,
  buildNoViableAltMessage({ expectedPathsPerAlt, actual, ruleName }) {
    const found = actual[0];
    const words = ruleWords[ruleName];
    const firsts = expectedPathsPerAlt.flatMap((alt) => alt.map((p) => p[0])).filter(Boolean) as TokenType[];
    return `expected ${words ?? oneOf(firsts.map(tokenLabel))} but found ${found ? what(found) : 'end of input'}`;
  },
  buildEarlyExitMessage({ expectedIterationPaths, actual, ruleName }) {
    const found = actual[0];
    const words = ruleWords[ruleName];
    const firsts = expectedIterationPaths.map((p) => p[0]).filter(Boolean) as TokenType[];
    return `expected ${words ?? `at least one ${oneOf(firsts.map(tokenLabel))}`} but found ${found ? what(found) : 'end of input'}`;
  },
};

class IRTextParser extends EmbeddedActionsParser {
  constructor() {
    super(allTokens, { recoveryEnabled: true, maxLookahead: 2, errorMessageProvider: irErrorMessages });
    this.performSelfAnalysis();
  }

  public file = this.RULE('file', (): RawProgram[] => {
    const programs: RawProgram[] = [];
    this.MANY(() => {
      programs.push(this.SUBRULE(this.program));
    });
    return programs;
  });

  private program = this.RULE('program', (): RawProgram => {
    const kw = this.CONSUME(KwProgram);
    const name = this.SUBRULE(this.name);
    const resources: RawResource[] = [];
    const stages: RawStage[] = [];
    this.CONSUME(LBrace);
    this.MANY(() => {
      this.OR([
        { ALT: () => resources.push(this.SUBRULE(this.resource)) },
        { ALT: () => stages.push(this.SUBRULE(this.stage)) },
      ]);
    });
    this.CONSUME(RBrace);
    return { kw, name, resources, stages };
  });

  private resource = this.RULE('resource', (): RawResource => {
    const k = this.CONSUME(KwResource);
    const name = this.SUBRULE(this.name);
    this.CONSUME(Colon);
    const type = this.SUBRULE(this.type);
    const kind = this.SUBRULE2(this.name);
    return { kw: k, name, type, kind };
  });

  private stage = this.RULE('stage', (): RawStage => {
    this.CONSUME(KwStage);
    const name = this.SUBRULE(this.name);
    const items: RawItem[] = [];
    this.CONSUME(LBrace);
    this.MANY(() => {
      items.push(this.SUBRULE(this.stageItem));
    });
    this.CONSUME(RBrace);
    return { name, items };
  });

  private stageItem = this.RULE(
    'stageItem',
    (): RawItem =>
      this.OR([
        { ALT: () => this.SUBRULE(this.inputDecl) },
        { ALT: () => this.SUBRULE(this.outputDecl) },
        { ALT: () => this.SUBRULE(this.instr) },
      ]),
  );

  private inputDecl = this.RULE('inputDecl', (): RawItem => {
    this.CONSUME(KwIn);
    const def = this.SUBRULE(this.def);
    this.CONSUME(Assign);
    const role = this.SUBRULE(this.name);
    const name = this.SUBRULE2(this.name);
    return { kind: 'in', def, role, name };
  });

  private outputDecl = this.RULE('outputDecl', (): RawItem => {
    this.CONSUME(KwOut);
    const name = this.SUBRULE(this.name);
    this.CONSUME(Assign);
    const value = this.CONSUME(ValueId);
    return { kind: 'out', name, value };
  });

  private instr = this.RULE('instr', (): RawItem => {
    const defs: RawDef[] = [];
    const args: IToken[] = [];
    const attrs: RawAttr[] = [];
    this.OPTION(() => {
      this.AT_LEAST_ONE_SEP({ SEP: Comma, DEF: () => defs.push(this.SUBRULE(this.def)) });
      this.CONSUME(Assign);
    });
    const op = this.SUBRULE(this.opName);
    // An operand is `%N` not followed by `:` (which starts the next instruction's results).
    this.OPTION2({
      GATE: () => this.LA(2).tokenType !== Colon,
      DEF: () => {
        args.push(this.CONSUME(ValueId));
        this.MANY(() => {
          this.CONSUME(Comma);
          args.push(this.CONSUME2(ValueId));
        });
      },
    });
    this.OPTION3(() => {
      this.CONSUME(LBrace);
      this.MANY_SEP({ SEP: Comma, DEF: () => attrs.push(this.SUBRULE(this.attr)) });
      this.CONSUME(RBrace);
    });
    return { kind: 'instr', defs, op, args, attrs };
  });

  private def = this.RULE('def', (): RawDef => {
    const id = this.CONSUME(ValueId);
    this.CONSUME(Colon);
    const type = this.SUBRULE(this.type);
    return { id, type };
  });

  private opName = this.RULE(
    'opName',
    (): IToken => this.OR([{ ALT: () => this.CONSUME(Name) }, { ALT: () => this.CONSUME(Str) }]),
  );

  private attr = this.RULE('attr', (): RawAttr => {
    const key = this.SUBRULE(this.name);
    this.CONSUME(Assign);
    const value = this.SUBRULE(this.attrValue);
    return { key, value };
  });

  private attrValue = this.RULE('attrValue', (): RawAttrValue => {
    return this.OR([
      { ALT: () => ({ kind: 'scalar' as const, tok: this.CONSUME(Num) }) },
      { ALT: () => ({ kind: 'scalar' as const, tok: this.CONSUME(Str) }) },
      { ALT: () => ({ kind: 'scalar' as const, tok: this.CONSUME(KwTrue) }) },
      { ALT: () => ({ kind: 'scalar' as const, tok: this.CONSUME(KwFalse) }) },
      {
        ALT: () => {
          const open = this.CONSUME(LBracket);
          const items: IToken[] = [];
          this.MANY_SEP({ SEP: Comma, DEF: () => items.push(this.CONSUME2(Num)) });
          this.CONSUME(RBracket);
          return { kind: 'list' as const, open, items };
        },
      },
    ]);
  });

  private type = this.RULE('type', (): RawType => {
    const dtype = this.SUBRULE(this.name);
    const dims: IToken[] = [];
    this.CONSUME(LBracket);
    this.MANY_SEP({ SEP: Comma, DEF: () => dims.push(this.SUBRULE(this.dim)) });
    const close = this.CONSUME(RBracket);
    return { dtype, dims, close };
  });

  private dim = this.RULE(
    'dim',
    (): IToken =>
      this.OR([
        { ALT: () => this.CONSUME(Num) },
        { ALT: () => this.CONSUME(SymDim) },
        { ALT: () => this.SUBRULE(this.name) },
      ]),
  );

  // Keywords are names wherever a name is expected.
  private name = this.RULE(
    'name',
    (): IToken => this.OR([Name, Str, ...keywordTokens].map((t) => ({ ALT: () => this.CONSUME(t) }))),
  );
}

const parser = new IRTextParser();

// ---------------------------------------------------------------------------------------------
// Resolution: raw syntax to StepPrograms.

const dtypes: readonly DType[] = ['f32', 'f16', 'bf16', 'i32'];
const roles: readonly InputRole[] = ['tokens', 'blocks', 'seqs', 'index', 'positions', 'weight', 'carried'];
const resourceKinds: readonly Resource['kind'][] = ['kv', 'attn', 'ffn', 'hidden', 'partial'];

class Resolver {
  readonly errors: IRParseError[] = [];
  private readonly current = new Map<number, Value>();
  private readonly first = new Map<number, Value>();

  private err(t: IToken, message: string): void {
    this.errors.push({ line: t.startLine ?? 1, col: t.startColumn ?? 1, message });
  }

  private nameOf(t: IToken): string {
    if (t.tokenType !== Str) return t.image;
    try {
      return JSON.parse(t.image) as string;
    } catch {
      this.err(t, `bad string ${t.image}`);
      return t.image;
    }
  }

  private idOf(t: IToken): number {
    const id = Number(t.image.slice(1));
    if (!Number.isSafeInteger(id)) this.err(t, `value id ${t.image} is too large`);
    return id;
  }

  private type(t: RawType): IRType {
    const dims: Dim[] = t.dims.map((d) => {
      if (d.tokenType === Num) {
        const n = Number(d.image);
        if (!Number.isSafeInteger(n) || n < 0)
          this.err(d, `dimension ${d.image} is not a non-negative integer`);
        return n;
      }
      return this.nameOf(d);
    });
    const dtype = this.nameOf(t.dtype);
    if (dtype === 'index') {
      if (dims.length !== 1) this.err(t.dtype, `an index list has one dimension, got ${dims.length}`);
      return { kind: 'index', size: dims[0] ?? 0 };
    }
    if (!(dtypes as readonly string[]).includes(dtype)) {
      this.err(t.dtype, `unknown type '${dtype}' (expected ${dtypes.join(', ')} or index)`);
    }
    return { kind: 'tensor', dtype: dtype as DType, shape: dims };
  }

  private define(d: RawDef): Value {
    const v: Value = { id: this.idOf(d.id), type: this.type(d.type) };
    this.current.set(v.id, v);
    if (!this.first.has(v.id)) this.first.set(v.id, v);
    return v;
  }

  /** A use resolves to the latest definition before it, else the first after it (for the verifier to judge). */
  private use(t: IToken, defined: Map<number, Value>): Value {
    const id = this.idOf(t);
    const v = this.current.get(id) ?? defined.get(id);
    if (v) return v;
    this.err(t, `value ${t.image} is never defined`);
    return { id, type: { kind: 'index', size: 0 } };
  }

  private attrValue(v: RawAttrValue): AttrValue {
    const num = (t: IToken): number => {
      const n = Number(t.image);
      if (!Number.isFinite(n))
        this.err(t, `number ${t.image.length > 24 ? `${t.image.slice(0, 24)}…` : t.image} is too large`);
      return n;
    };
    if (v.kind === 'list') return v.items.map(num);
    const t = v.tok;
    if (t.tokenType === Num) return num(t);
    if (t.tokenType === KwTrue) return true;
    if (t.tokenType === KwFalse) return false;
    return this.nameOf(t);
  }

  program(p: RawProgram): StepProgram {
    this.current.clear();
    // Every definition of the program, so that a use before its definition still parses.
    const defined = new Map<number, Value>();
    const resources: Resource[] = p.resources.map((r) => {
      const t = this.type(r.type);
      const kind = this.nameOf(r.kind);
      if (!(resourceKinds as readonly string[]).includes(kind)) {
        this.err(r.kind, `unknown resource kind '${kind}' (expected ${resourceKinds.join(', ')})`);
      }
      if (t.kind !== 'tensor') {
        this.err(r.type.dtype, 'a resource holds a tensor, not an index list');
        return { name: this.nameOf(r.name), kind: kind as Resource['kind'], dtype: 'f32', shape: [] };
      }
      return { name: this.nameOf(r.name), kind: kind as Resource['kind'], dtype: t.dtype, shape: t.shape };
    });
    // First pass: the definitions, in order.
    const defsOf = new Map<RawItem, Value[]>();
    for (const s of p.stages) {
      for (const item of s.items) {
        if (item.kind === 'out') continue;
        const ds = item.kind === 'in' ? [item.def] : item.defs;
        const vs = ds.map((d) => this.define(d));
        defsOf.set(item, vs);
        for (const v of vs) if (!defined.has(v.id)) defined.set(v.id, v);
      }
    }
    this.current.clear();
    const stages: Stage[] = p.stages.map((s) => {
      const inputs: Input[] = [];
      const body: Instr[] = [];
      const outputs: Output[] = [];
      for (const item of s.items) {
        if (item.kind === 'out') {
          outputs.push({ name: this.nameOf(item.name), value: this.use(item.value, defined) });
          continue;
        }
        const vs = defsOf.get(item) ?? [];
        if (item.kind === 'in') {
          const role = this.nameOf(item.role);
          if (!(roles as readonly string[]).includes(role)) {
            this.err(item.role, `unknown input role '${role}' (expected ${roles.join(', ')})`);
          }
          const value = vs[0] as Value;
          inputs.push({ name: this.nameOf(item.name), role: role as InputRole, value });
          this.current.set(value.id, value);
          continue;
        }
        const args = item.args.map((a) => this.use(a, defined));
        const attrs: Record<string, AttrValue> = {};
        for (const a of item.attrs) {
          const key = this.nameOf(a.key);
          if (Object.hasOwn(attrs, key)) this.err(a.key, `duplicate attribute '${key}'`);
          attrs[key] = this.attrValue(a.value);
        }
        body.push({ op: this.nameOf(item.op), results: vs, args, attrs });
        for (const v of vs) this.current.set(v.id, v);
      }
      return { name: this.nameOf(s.name), inputs, body, outputs };
    });
    return { name: this.nameOf(p.name), resources, stages };
  }
}

function locate(t: IToken | undefined, tokens: IToken[]): { line: number; col: number } {
  if (t && (t.startLine ?? 0) > 0 && (t.startColumn ?? 0) > 0) {
    return { line: t.startLine as number, col: t.startColumn as number };
  }
  // End of input: just after the last token.
  const last = tokens.at(-1);
  if (!last) return { line: 1, col: 1 };
  return { line: last.endLine ?? 1, col: (last.endColumn ?? 0) + 1 };
}

const byPosition = (a: IRParseError, b: IRParseError) => a.line - b.line || a.col - b.col;

/** Parses any number of programs (the phases of a plan). */
export function parsePrograms(text: string): IRParseResult<StepProgram[]> {
  const r = parseAll(text);
  return r.programs ? { program: r.programs, errors: [] } : { errors: r.errors };
}

/** Parses exactly one program. */
export function parseProgram(text: string): IRParseResult<StepProgram> {
  const r = parseAll(text);
  if (!r.programs) return { errors: r.errors };
  if (r.programs.length !== 1) {
    const second = r.raw[1]?.kw;
    const at = second ? { line: second.startLine ?? 1, col: second.startColumn ?? 1 } : { line: 1, col: 1 };
    return { errors: [{ ...at, message: `expected one program, found ${r.programs.length}` }] };
  }
  return { program: r.programs[0] as StepProgram, errors: [] };
}

function parseAll(text: string): { programs?: StepProgram[]; raw: RawProgram[]; errors: IRParseError[] } {
  const errors: IRParseError[] = [];
  let raw: RawProgram[] | undefined;
  try {
    const lexed = irLexer.tokenize(text);
    for (const e of lexed.errors) {
      const ch = text.slice(e.offset, e.offset + Math.max(1, e.length));
      errors.push({
        line: e.line ?? 1,
        col: e.column ?? 1,
        message: `unexpected character ${JSON.stringify(ch)}`,
      });
    }
    parser.input = lexed.tokens;
    try {
      raw = parser.file();
    } catch (e) {
      if (parser.errors.length === 0) throw e;
    }
    for (const e of parser.errors) errors.push({ ...locate(e.token, lexed.tokens), message: e.message });
    if (errors.length > 0 || !raw) return { raw: [], errors: errors.sort(byPosition) };
    const resolver = new Resolver();
    const programs = raw.map((p) => resolver.program(p));
    if (resolver.errors.length > 0) return { raw, errors: resolver.errors.sort(byPosition) };
    return { programs, raw, errors: [] };
  } catch (e) {
    // Not expected; reported rather than thrown so that no input text can crash a caller.
    errors.push({
      line: 1,
      col: 1,
      message: `internal error: ${e instanceof Error ? e.message : String(e)}`,
    });
    return { raw: [], errors };
  }
}
