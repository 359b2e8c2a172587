/**
 * The IR verifier: checks a step program (or the programs of a plan) against the op catalogue and
 * the structural rules of docs/ir.md ("Verifier"). Returns every problem found; never throws.
 */
import { resourceType, rowType, signatureErrors } from './builder.ts';
import { ops } from './ops.ts';
import {
  type Dim,
  type IRType,
  printType,
  type Resource,
  type StepProgram,
  sameType,
  type Value,
} from './types.ts';

export interface VerifyError {
  readonly program: string;
  /** Absent for program-level problems (resources, plan-level rules). */
  readonly stage?: string;
  /** Index into the stage body; absent for problems with inputs, outputs or the stage itself. */
  readonly instr?: number;
  readonly op?: string;
  readonly message: string;
}

/** `program p, stage s, instr 4 (attention): message` */
export function formatVerifyError(e: VerifyError): string {
  const where = [`program ${e.program}`];
  if (e.stage !== undefined) where.push(`stage ${e.stage}`);
  if (e.instr !== undefined) where.push(`instr ${e.instr}${e.op !== undefined ? ` (${e.op})` : ''}`);
  return `${where.join(', ')}: ${e.message}`;
}

const dtypes = ['f32', 'f16', 'bf16', 'i32'];
const resourceKinds = ['kv', 'attn', 'ffn', 'hidden', 'partial'];
const symbolicDim = /^(?:#[A-Za-z0-9_.]+|[A-Za-z_][A-Za-z0-9_.]*)$/;

function dimError(d: Dim): string | undefined {
  if (typeof d === 'number')
    return Number.isSafeInteger(d) && d >= 0 ? undefined : `dimension ${d} is not a non-negative integer`;
  return symbolicDim.test(d) ? undefined : `dimension ${JSON.stringify(d)} is not a number, L or #name`;
}

function typeErrors(t: IRType): string[] {
  if (t.kind === 'index') return [dimError(t.size)].filter((m): m is string => m !== undefined);
  const out = t.shape.map(dimError).filter((m): m is string => m !== undefined);
  if (!dtypes.includes(t.dtype)) out.unshift(`unknown dtype '${t.dtype}'`);
  return out;
}

/** The type an input of each role must have, where the role fixes it. */
function roleTypeError(role: string, t: IRType): string | undefined {
  const i32L = (what: string) =>
    t.kind === 'tensor' && t.dtype === 'i32' && t.shape.length === 1 && t.shape[0] === 'L'
      ? undefined
      : `${what} input must be i32[L], got ${printType(t)}`;
  switch (role) {
    case 'tokens':
      return i32L('a tokens');
    case 'blocks':
      return i32L('a blocks');
    case 'seqs':
      return i32L('a seqs');
    case 'index':
    case 'positions':
      return t.kind === 'index'
        ? undefined
        : `${role === 'index' ? 'an index' : 'a positions'} input must be an index list, got ${printType(t)}`;
    case 'weight':
      return t.kind === 'tensor' ? undefined : `a weight input must be a tensor, got ${printType(t)}`;
    case 'carried':
      return undefined;
    default:
      return `unknown input role '${role}'`;
  }
}

export function verifyProgram(p: StepProgram): VerifyError[] {
  const errors: VerifyError[] = [];
  const prog = p.name;
  const resources = new Map<string, Resource>();
  for (const r of p.resources) {
    const at = (message: string) => errors.push({ program: prog, message: `resource ${r.name}: ${message}` });
    if (resources.has(r.name)) at('declared twice');
    else resources.set(r.name, r);
    if (!resourceKinds.includes(r.kind)) at(`unknown kind '${r.kind}'`);
    for (const m of typeErrors(resourceType(r))) at(m);
    if (r.shape[0] !== 'L')
      at(`the first dimension must be the canvas (L), got ${printType(resourceType(r))}`);
  }

  const definedAnywhere = new Set<number>();
  const stageNames = new Set<string>();
  // The latest output of each name over the stages so far: what a later `carried` input receives.
  const carried = new Map<string, { stage: string; value: Value }>();

  for (const s of p.stages) {
    const stage = s.name;
    const at = (message: string, instr?: number, op?: string) => {
      const e: VerifyError =
        instr === undefined
          ? { program: prog, stage, message }
          : { program: prog, stage, instr, op: op ?? '?', message };
      errors.push(e);
    };
    if (stageNames.has(stage)) at('duplicate stage name');
    stageNames.add(stage);
    const inScope = new Set<number>();
    const define = (v: Value, what: string, instr?: number, op?: string) => {
      if (!Number.isSafeInteger(v.id) || v.id < 0)
        at(`${what}: value id ${v.id} is not a non-negative integer`, instr, op);
      if (definedAnywhere.has(v.id)) at(`${what}: %${v.id} is defined more than once`, instr, op);
      definedAnywhere.add(v.id);
      inScope.add(v.id);
      for (const m of typeErrors(v.type)) at(`${what} %${v.id}: ${m}`, instr, op);
    };

    const inputNames = new Set<string>();
    for (const input of s.inputs) {
      const what = `input '${input.name}'`;
      if (inputNames.has(input.name)) at(`duplicate input name '${input.name}'`);
      inputNames.add(input.name);
      define(input.value, what);
      const bad = roleTypeError(input.role, input.value.type);
      if (bad) at(`${what}: ${bad}`);
      if (input.role === 'carried') {
        const from = carried.get(input.name);
        if (!from) at(`carried ${what} is not an output of an earlier stage`);
        else if (!sameType(from.value.type, input.value.type)) {
          at(
            `carried ${what} is ${printType(input.value.type)}, but stage ${from.stage} outputs ${printType(from.value.type)}`,
          );
        }
      }
    }

    s.body.forEach((ins, idx) => {
      const op = ins.op;
      const err = (m: string) => at(m, idx, op);
      // SSA: every operand is an input or an earlier result of this stage.
      ins.args.forEach((a, i) => {
        if (typeof a?.id !== 'number' || a.type === undefined) err(`operand ${i + 1} is not a value`);
        else if (!inScope.has(a.id)) {
          err(
            definedAnywhere.has(a.id)
              ? `operand ${i + 1} %${a.id} is not defined in this stage before its use`
              : `operand ${i + 1} %${a.id} is used before its definition`,
          );
        }
      });
      const spec = ops[op];
      const sig = signatureErrors(op, ins.args.length, ins.attrs);
      for (const m of sig) err(m);
      let expected: IRType[] | string | undefined;
      const wellFormed =
        ins.args.every((a) => a?.type !== undefined) && ins.results.every((r) => r?.type !== undefined);
      if (spec && sig.length === 0 && wellFormed) {
        if (op === 'cache_read' || op === 'cache_write') {
          const name = String(ins.attrs.resource);
          const r = resources.get(name);
          if (!r) err(`resource ${name} is not declared`);
          else if (op === 'cache_read') expected = [resourceType(r)];
          else {
            const values = ins.args[1];
            if (values && rowType(values.type) !== rowType(resourceType(r))) {
              err(
                `values ${printType(values.type)} have rows of ${rowType(values.type)}, resource ${name} holds ${rowType(resourceType(r))}`,
              );
            }
          }
        }
        if (op !== 'cache_read') {
          try {
            expected = spec.results(
              ins.args.map((a) => a.type),
              ins.attrs,
            );
          } catch (e) {
            expected = `the result rule failed: ${e instanceof Error ? e.message : String(e)}`;
          }
        }
      }
      if (typeof expected === 'string') err(expected);
      else if (expected) {
        if (expected.length !== ins.results.length) {
          err(
            `has ${ins.results.length} result${ins.results.length === 1 ? '' : 's'}, the op gives ${expected.length}`,
          );
        } else {
          expected.forEach((t, i) => {
            const got = ins.results[i] as Value;
            if (!sameType(t, got.type))
              err(`result ${i + 1} %${got.id} is ${printType(got.type)}, the op gives ${printType(t)}`);
          });
        }
      }
      ins.results.forEach((r, i) => {
        if (r?.type === undefined) err(`result ${i + 1} is not a value`);
        else define(r, `result ${i + 1}`, idx, op);
      });
    });

    const outputNames = new Set<string>();
    for (const o of s.outputs) {
      if (outputNames.has(o.name)) at(`duplicate output name '${o.name}'`);
      outputNames.add(o.name);
      if (!inScope.has(o.value.id))
        at(`output '${o.name}' refers to %${o.value.id}, which is not defined in this stage`);
      else carried.set(o.name, { stage, value: o.value });
    }
  }
  return errors;
}

/**
 * Verifies the programs of a plan (its phases, e.g. refresh then cached): each program, the
 * agreement of resources declared by several programs, and that every resource some program
 * reads is written by some stage of some program of the plan.
 */
export function verifyPlan(programs: readonly StepProgram[]): VerifyError[] {
  const errors = programs.flatMap(verifyProgram);
  const declared = new Map<string, { program: string; r: Resource }>();
  const written = new Set<string>();
  for (const p of programs) {
    for (const r of p.resources) {
      const have = declared.get(r.name);
      if (!have) declared.set(r.name, { program: p.name, r });
      else if (have.r.kind !== r.kind || !sameType(resourceType(have.r), resourceType(r))) {
        errors.push({
          program: p.name,
          message: `resource ${r.name} is ${printType(resourceType(r))} ${r.kind} here but ${printType(resourceType(have.r))} ${have.r.kind} in program ${have.program}`,
        });
      }
    }
    for (const s of p.stages) {
      for (const i of s.body) if (i.op === 'cache_write') written.add(String(i.attrs.resource));
    }
  }
  for (const p of programs) {
    for (const s of p.stages) {
      s.body.forEach((i, instr) => {
        if (i.op !== 'cache_read') return;
        const name = String(i.attrs.resource);
        if (!written.has(name)) {
          errors.push({
            program: p.name,
            stage: s.name,
            instr,
            op: i.op,
            message: `resource ${name} is read but no program of the plan writes it`,
          });
        }
      });
    }
  }
  return errors;
}
