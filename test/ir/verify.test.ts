import { describe, expect, it } from 'vitest';
import { ProgramBuilder } from '../../src/ir/builder.ts';
import { parseProgram } from '../../src/ir/textParser.ts';
import {
  type Instr,
  type IRType,
  index,
  type Stage,
  type StepProgram,
  tensor,
  type Value,
} from '../../src/ir/types.ts';
import { formatVerifyError, verifyPlan, verifyProgram } from '../../src/ir/verify.ts';
import { smallProgram } from './fixtures.ts';

const msgs = (p: StepProgram) => verifyProgram(p).map(formatVerifyError);

/** Parses a program from text (the verifier's inputs are easiest to write broken this way). */
function prog(text: string): StepProgram {
  const r = parseProgram(text);
  if (!r.program) throw new Error(r.errors.map((e) => `${e.line}:${e.col}: ${e.message}`).join('\n'));
  return r.program;
}

const withStage = (p: StepProgram, i: number, f: (s: Stage) => Stage): StepProgram => ({
  ...p,
  stages: p.stages.map((s, j) => (j === i ? f(s) : s)),
});
const withInstr = (p: StepProgram, stage: number, instr: number, f: (i: Instr) => Instr): StepProgram =>
  withStage(p, stage, (s) => ({ ...s, body: s.body.map((x, j) => (j === instr ? f(x) : x)) }));

describe('verifyProgram', () => {
  it('accepts well-formed programs', () => {
    expect(msgs(smallProgram())).toEqual([]);
  });

  it('rejects a use before the definition', () => {
    const p = prog(`program p {
  stage s {
    in %0: f32[L,4] = carried h
    %1: f32[L,4] = add %2, %0
    %2: f32[L,4] = add %0, %0
  }
}`);
    expect(msgs(p)).toEqual([
      "program p, stage s: carried input 'h' is not an output of an earlier stage",
      'program p, stage s, instr 0 (add): operand 1 %2 is used before its definition',
    ]);
  });

  it('rejects a value defined twice, within a stage or across stages', () => {
    const p = prog(`program p {
  stage a {
    in %0: f32[L,4] = weight x
    %1: f32[L,4] = add %0, %0
    %1: f32[L,4] = add %0, %0
    out h = %1
  }
  stage b {
    in %0: f32[L,4] = carried h
  }
}`);
    expect(msgs(p)).toEqual([
      'program p, stage a, instr 1 (add): result 1: %1 is defined more than once',
      "program p, stage b: input 'h': %0 is defined more than once",
    ]);
  });

  it('rejects operands that belong to another stage', () => {
    const p = prog(`program p {
  stage a {
    in %0: f32[L,4] = weight x
    out h = %0
  }
  stage b {
    in %1: f32[L,4] = carried h
    %2: f32[L,4] = add %0, %1
  }
}`);
    expect(msgs(p)).toEqual([
      'program p, stage b, instr 0 (add): operand 1 %0 is not defined in this stage before its use',
    ]);
  });

  it('rejects a wrong operand type, naming the stage, the instruction and the op', () => {
    const p = withInstr(smallProgram(), 1, 16, (i) => ({
      ...i,
      args: [i.args[0], i.args[1], i.args[2], i.args[3], i.args[3]] as Value[],
    }));
    expect(msgs(p)).toEqual([
      'program fast_dllm_dual.cached, stage layer.0, instr 16 (attention): kpos must be index[#keys.0], got index[#rows.0]',
    ]);
  });

  it('rejects a result type the op does not give, and a wrong number of results', () => {
    const p = withInstr(smallProgram(), 1, 0, (i) => ({
      ...i,
      results: [{ id: (i.results[0] as Value).id, type: tensor('f32', ['L', 32]) }],
    }));
    expect(msgs(p)).toEqual([
      'program fast_dllm_dual.cached, stage layer.0, instr 0 (gather): result 1 %6 is f32[L,32], the op gives f32[#rows.0,32]',
    ]);
    const q = withInstr(smallProgram(), 1, 16, (i) => ({ ...i, results: i.results.slice(0, 1) }));
    expect(msgs(q)).toEqual([
      'program fast_dllm_dual.cached, stage layer.0, instr 16 (attention): has 1 result, the op gives 2',
    ]);
  });

  it('rejects a missing attribute, an unknown one and one of the wrong kind', () => {
    const missing = withInstr(smallProgram(), 1, 1, (i) => ({ ...i, attrs: {} }));
    expect(msgs(missing)).toEqual([
      "program fast_dllm_dual.cached, stage layer.0, instr 1 (rmsnorm): missing attribute 'eps' (number)",
    ]);
    const extra = withInstr(smallProgram(), 1, 1, (i) => ({ ...i, attrs: { ...i.attrs, bias: 1 } }));
    expect(msgs(extra)).toEqual([
      "program fast_dllm_dual.cached, stage layer.0, instr 1 (rmsnorm): unknown attribute 'bias'",
    ]);
    const kind = withInstr(smallProgram(), 1, 3, (i) => ({ ...i, attrs: { inner: 4 } }));
    expect(msgs(kind)).toEqual([
      "program fast_dllm_dual.cached, stage layer.0, instr 3 (reshape): attribute 'inner' must be a list of finite numbers, got 4",
    ]);
  });

  it('rejects an unknown op and a wrong operand count', () => {
    const unknown = withInstr(smallProgram(), 1, 9, (i) => ({ ...i, op: 'frobnicate' }));
    expect(msgs(unknown)).toEqual([
      "program fast_dllm_dual.cached, stage layer.0, instr 9 (frobnicate): unknown op 'frobnicate'",
    ]);
    const count = withInstr(smallProgram(), 1, 8, (i) => ({ ...i, args: i.args.slice(0, 1) }));
    expect(msgs(count)).toEqual([
      'program fast_dllm_dual.cached, stage layer.0, instr 8 (linear): takes 2 to 3 operands (x, weight, bias?), got 1',
    ]);
  });

  it('rejects cache ops on undeclared resources, and writes of the wrong row type', () => {
    const undeclared = { ...smallProgram(), resources: smallProgram().resources.slice(0, 1) };
    expect(msgs(undeclared)).toEqual([
      'program fast_dllm_dual.cached, stage layer.0, instr 11 (cache_write): resource kv.v.0 is not declared',
      'program fast_dllm_dual.cached, stage layer.0, instr 14 (cache_read): resource kv.v.0 is not declared',
    ]);
    const p = prog(`program p {
  resource kv.k.0: f32[L,2,8] kv
  stage s {
    in %0: index[#r] = index rows
    in %1: f32[#r,4,8] = weight x
    cache_write %0, %1 {resource = "kv.k.0"}
    %2: f32[L,4,8] = cache_read {resource = "kv.k.0"}
  }
}`);
    expect(msgs(p)).toEqual([
      'program p, stage s, instr 0 (cache_write): values f32[#r,4,8] have rows of f32[4,8], resource kv.k.0 holds f32[2,8]',
      'program p, stage s, instr 1 (cache_read): result 1 %2 is f32[L,4,8], the op gives f32[L,2,8]',
    ]);
  });

  it('rejects a carried input that no earlier stage outputs, or of another type', () => {
    const p = prog(`program p {
  stage a {
    in %0: f32[L,4] = weight x
    out h = %0
  }
  stage b {
    in %1: f32[L,8] = carried h
    in %2: f32[L,4] = carried g
    out g = %2
  }
}`);
    expect(msgs(p)).toEqual([
      "program p, stage b: carried input 'h' is f32[L,8], but stage a outputs f32[L,4]",
      "program p, stage b: carried input 'g' is not an output of an earlier stage",
    ]);
  });

  it('rejects duplicate input, output and stage names, undefined outputs and inputs of the wrong role type', () => {
    const p = prog(`program p {
  resource r: f32[4] kv
  stage a {
    in %0: f32[L] = tokens t
    in %1: f32[L,4] = weight x
    in %2: f32[L,4] = index x
    out y = %1
    out y = %1
  }
  stage a {
    in %3: f32[L] = weight w
    out z = %1
  }
}`);
    expect(msgs(p)).toEqual([
      'program p: resource r: the first dimension must be the canvas (L), got f32[4]',
      "program p, stage a: input 't': a tokens input must be i32[L], got f32[L]",
      "program p, stage a: duplicate input name 'x'",
      "program p, stage a: input 'x': an index input must be an index list, got f32[L,4]",
      "program p, stage a: duplicate output name 'y'",
      'program p, stage a: duplicate stage name',
      "program p, stage a: output 'z' refers to %1, which is not defined in this stage",
    ]);
  });

  it('rejects malformed dimensions and ids in hand-made programs', () => {
    const bad: IRType = tensor('f32', ['L', 'not a dim', -1]);
    const p: StepProgram = {
      name: 'p',
      resources: [],
      stages: [
        {
          name: 's',
          inputs: [{ name: 'x', role: 'weight', value: { id: 1.5, type: bad } }],
          body: [],
          outputs: [],
        },
      ],
    };
    expect(msgs(p)).toEqual([
      "program p, stage s: input 'x': value id 1.5 is not a non-negative integer",
      'program p, stage s: input \'x\' %1.5: dimension "not a dim" is not a number, L or #name',
      "program p, stage s: input 'x' %1.5: dimension -1 is not a non-negative integer",
    ]);
  });

  it('never throws, whatever an instruction holds', () => {
    const p = withInstr(smallProgram(), 1, 16, (i) => ({ ...i, args: [], attrs: { mask: 3, scale: 'x' } }));
    expect(msgs(p).length).toBeGreaterThan(0);
    const holes = withInstr(smallProgram(), 1, 2, (i) => ({
      ...i,
      args: [undefined as unknown as Value, ...i.args],
    }));
    expect(msgs(holes)).toContain(
      'program fast_dllm_dual.cached, stage layer.0, instr 2 (linear): operand 1 is not a value',
    );
  });
});

describe('verifyPlan', () => {
  function phase(name: string, write: boolean, read: boolean): StepProgram {
    const pb = new ProgramBuilder(name);
    const r = pb.resource({ name: 'kv.k.0', kind: 'kv', dtype: 'f32', shape: ['L', 2, 8] });
    const s = pb.stage('layer.0');
    const rows = s.input('rows', 'index', index('#rows'));
    const fresh = s.input('k', 'weight', tensor('f32', ['#rows', 2, 8]));
    if (write) s.cacheWrite(r, rows, fresh);
    if (read) s.output('k', s.op1('gather', [s.cacheRead(r), rows]));
    return pb.finish();
  }

  it('accepts a plan whose reads are written by some phase', () => {
    expect(verifyPlan([phase('refresh', true, false), phase('cached', false, true)])).toEqual([]);
    expect(verifyPlan([phase('both', true, true)])).toEqual([]);
  });

  it('rejects a read of a resource that no phase writes', () => {
    expect(
      verifyPlan([phase('a', false, false), phase('cached', false, true)]).map(formatVerifyError),
    ).toEqual([
      'program cached, stage layer.0, instr 0 (cache_read): resource kv.k.0 is read but no program of the plan writes it',
    ]);
  });

  it('includes the errors of each program and rejects disagreeing resource declarations', () => {
    const other = phase('other', true, false);
    const conflicting: StepProgram = {
      ...other,
      resources: [{ name: 'kv.k.0', kind: 'kv', dtype: 'f32', shape: ['L', 4, 8] }],
    };
    expect(verifyPlan([phase('refresh', true, false), conflicting]).map(formatVerifyError)).toEqual([
      'program other, stage layer.0, instr 0 (cache_write): values f32[#rows,2,8] have rows of f32[2,8], resource kv.k.0 holds f32[4,8]',
      'program other: resource kv.k.0 is f32[L,4,8] kv here but f32[L,2,8] kv in program refresh',
    ]);
  });
});
