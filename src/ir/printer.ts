/**
 * The stable text form of step programs (docs/ir.md, "Text format"); textParser.ts reads it back.
 */
import type { AttrValue, Instr, Resource, Stage, StepProgram, Value } from './types.ts';
import { printType, tensor } from './types.ts';

/** Words with a meaning of their own in the text form; an op spelled like one is quoted. */
export const irKeywords: readonly string[] = ['program', 'resource', 'stage', 'in', 'out', 'true', 'false'];

const plainName = /^[A-Za-z_][A-Za-z0-9_.]*$/;

/** A name as written: bare when it is a plain identifier (dots allowed), else a JSON string. */
export const printName = (s: string): string => (plainName.test(s) ? s : JSON.stringify(s));

/** An op name; it starts a line of a stage, so one spelled like a keyword is quoted as well. */
export const printOpName = (s: string): string => (irKeywords.includes(s) ? JSON.stringify(s) : printName(s));

/** Shortest round-trip form; -0 keeps its sign. Non-finite numbers print as themselves and do not parse. */
export const printNumber = (x: number): string => (Object.is(x, -0) ? '-0' : String(x));

export function printAttrValue(v: AttrValue): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') return printNumber(v);
  if (typeof v === 'boolean') return String(v);
  return `[${v.map(printNumber).join(', ')}]`;
}

export function printAttrs(attrs: Readonly<Record<string, AttrValue>>): string {
  const keys = Object.keys(attrs).sort();
  if (keys.length === 0) return '';
  return ` {${keys.map((k) => `${printName(k)} = ${printAttrValue(attrs[k] as AttrValue)}`).join(', ')}}`;
}

export const printValue = (v: Value): string => `%${v.id}`;
const printDef = (v: Value): string => `%${v.id}: ${printType(v.type)}`;

export function printInstr(i: Instr): string {
  const head = i.results.length > 0 ? `${i.results.map(printDef).join(', ')} = ` : '';
  const args = i.args.length > 0 ? ` ${i.args.map(printValue).join(', ')}` : '';
  return `${head}${printOpName(i.op)}${args}${printAttrs(i.attrs)}`;
}

export const printResource = (r: Resource): string =>
  `resource ${printName(r.name)}: ${printType(tensor(r.dtype, r.shape))} ${printName(r.kind)}`;

export function printStage(s: Stage, indent = ''): string {
  const pad = `${indent}  `;
  const lines = [`${indent}stage ${printName(s.name)} {`];
  for (const i of s.inputs)
    lines.push(`${pad}in ${printDef(i.value)} = ${printName(i.role)} ${printName(i.name)}`);
  for (const i of s.body) lines.push(`${pad}${printInstr(i)}`);
  for (const o of s.outputs) lines.push(`${pad}out ${printName(o.name)} = ${printValue(o.value)}`);
  lines.push(`${indent}}`);
  return lines.join('\n');
}

/** One program, ending with a newline. */
export function printProgram(p: StepProgram): string {
  const lines = [`program ${printName(p.name)} {`];
  for (const r of p.resources) lines.push(`  ${printResource(r)}`);
  for (const s of p.stages) lines.push(printStage(s, '  '));
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

/** The programs of a plan (its phases), separated by blank lines. */
export const printPrograms = (ps: readonly StepProgram[]): string => ps.map(printProgram).join('\n');
