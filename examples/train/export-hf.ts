/**
 * Turns what examples/train/train.py wrote (weights.json + weights.bin: Hugging Face names,
 * float32 little-endian) into a Hugging Face checkpoint directory with kvplan's own writer
 * (`writeCheckpoint`, docs/checkpoints.md "Writing checkpoints"): the LLaDA layout for a
 * full-attention model, the SDAR layout (q/k norm, aligned block-causal attention, `block_size`)
 * for a block-diffusion one, and with an AR shift the Dream and Fast-dLLM v2 (`bd_size`) layouts. The character tokenizer travels as a `tokenizer.json` that
 * `@huggingface/tokenizers` runs: a BPE model whose vocabulary is the characters (id = index in
 * the alphabet), no merges, no pre-tokenizer, a Fuse decoder (the characters joined without
 * spaces); `$` is the EOS (tokenizer_config.json `eos_token`, config.json `eos_token_id`), the
 * mask is config.json's `mask_token_id` (the id after the last character, which has no text).
 * Then it checks the directory the way every kvplan command opens it (`openModel`): the config
 * is the trained one, the weights are identical, the tokenizer encodes every task's prompts and
 * answers one id per character, and the golden forward reproduces the PyTorch logits of
 * reference.json.
 *
 *     npx tsx examples/train/export-hf.ts --in <train.py --out dir> --out models/<name>
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { heldOutProblems } from '../../src/eval/tasks.ts';
import { validateConfig } from '../../src/model/config.ts';
import { goldenForward } from '../../src/model/golden.ts';
import type { Family } from '../../src/model/hf/families.ts';
import { asFamilyModel, writeCheckpoint } from '../../src/model/hf/write.ts';
import { floatsOf } from '../../src/model/weights.ts';
import { openModel } from '../../src/runtime/openModel.ts';
import { answerText, tokenizerFromJson } from '../../src/runtime/tokenizer.ts';
import { readTrained } from './trainedWeights.ts';

const { values } = parseArgs({
  options: {
    in: { type: 'string', default: 'examples/train/out' },
    out: { type: 'string' },
  },
});
const inDir = values.in as string;

const { manifest, config, weights } = readTrained(inDir);
const outDir = (values.out as string | undefined) ?? join('models', config.name);
const chars = tokenizerFromJson(manifest.tokenizer, config.maskTokenId); // validates it
const alphabet = [...manifest.tokenizer.chars];

const family: Family =
  config.attention === 'block_causal'
    ? config.arShift
      ? 'fast-dllm-v2'
      : 'sdar'
    : config.arShift
      ? 'dream'
      : 'llada';
const m = asFamilyModel(family, {
  ...config,
  ...(manifest.block_size === undefined ? {} : { blockSize: manifest.block_size }),
});
if (manifest.tokenizer.eos === undefined)
  throw new Error(`${inDir}/weights.json: the tokenizer names no eos`);
const eos = alphabet.indexOf(manifest.tokenizer.eos);
if (existsSync(outDir) && existsSync(join(outDir, 'config.json')))
  throw new Error(
    `${outDir} already holds a checkpoint; remove its config.json, *.safetensors, tokenizer*.json`,
  );
const written = writeCheckpoint(
  outDir,
  family,
  m,
  { weights },
  { dtype: 'F32', tokenIds: { eos, pad: eos } },
);

// The character tokenizer as tokenizer.json + tokenizer_config.json.
const tokenizerJson = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [],
  normalizer: null,
  pre_tokenizer: null,
  post_processor: null,
  decoder: { type: 'Fuse' },
  model: {
    type: 'BPE',
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: false,
    vocab: Object.fromEntries(alphabet.map((c, i) => [c, i])),
    merges: [],
  },
};
const tokenizerConfig = {
  added_tokens_decoder: {},
  clean_up_tokenization_spaces: false,
  eos_token: manifest.tokenizer.eos,
  pad_token: manifest.tokenizer.eos,
  model_max_length: 4096,
  tokenizer_class: 'PreTrainedTokenizerFast',
};
writeFileSync(join(outDir, 'tokenizer.json'), `${JSON.stringify(tokenizerJson, null, 2)}\n`, { flag: 'wx' });
writeFileSync(join(outDir, 'tokenizer_config.json'), `${JSON.stringify(tokenizerConfig, null, 2)}\n`, {
  flag: 'wx',
});
console.log(
  `wrote ${outDir} (${family}): ${written.files.map((f) => `${f.path} ${(f.bytes / 2 ** 20).toFixed(2)} MiB`).join(', ')}`,
);

// Read back as every command reads --model <dir>.
const back = openModel(outDir);
for (const [name, t] of weights) {
  const u = back.weights.get(name);
  if (!u) throw new Error(`weight ${name} missing after openModel`);
  const got = floatsOf(u);
  if (got.some((x, i) => x !== t.data[i])) throw new Error(`weight ${name} differs after openModel`);
}
const want = validateConfig({ ...config }, 'weights.json');
for (const [k, v] of Object.entries(want).filter(([k]) => k !== 'name')) // the name is the directory's
  if ((back.config as unknown as Record<string, unknown>)[k] !== v)
    throw new Error(
      `config ${k}: ${JSON.stringify((back.config as unknown as Record<string, unknown>)[k])} != ${JSON.stringify(v)}`,
    );
if (back.tokenizer.eosTokenId !== eos) throw new Error(`EOS id ${back.tokenizer.eosTokenId} != ${eos}`);
const ref = JSON.parse(readFileSync(join(outDir, 'reference.json'), 'utf8')) as {
  cases: { task: string; tokens: number[]; prompt_len: number; rows: number[]; logits: number[][] }[];
  held_out: Record<string, unknown>;
};
for (const task of Object.keys(ref.held_out)) {
  for (const p of heldOutProblems(task, 50)) {
    for (const text of [p.prompt, p.answer]) {
      const ids = back.tokenizer.encode(text);
      const mine = chars.encode(text);
      if (ids.length !== mine.length || ids.some((x, i) => x !== mine[i]))
        throw new Error(
          `tokenizer.json encodes ${JSON.stringify(text)} as [${[...ids]}], not [${[...mine]}]`,
        );
      if (back.tokenizer.decode(ids) !== text)
        throw new Error(`tokenizer.json decodes ${JSON.stringify(text)} wrong`);
    }
    const canvas = [...chars.encode(p.answer), eos, eos];
    if (answerText(back.tokenizer, canvas) !== p.answer) throw new Error(`answerText differs on ${p.prompt}`);
  }
}
console.log(`tokenizer.json: one id per character on every pinned task's prompts and answers, EOS ${eos}`);
const blockLen = manifest.block_size ?? 32;
for (const c of ref.cases) {
  const { logits } = goldenForward(back.config, back.weights, Int32Array.from(c.tokens), {
    promptLen: c.prompt_len,
    blockLen,
    aligned: back.config.alignedBlocks ?? false,
  });
  let dev = 0;
  let scale = 0;
  c.rows.forEach((r, k) => {
    (c.logits[k] ?? []).forEach((x, v) => {
      dev = Math.max(dev, Math.abs((logits[r * config.vocab + v] ?? Number.NaN) - x));
      scale = Math.max(scale, Math.abs(x));
    });
  });
  console.log(
    `golden (from ${outDir}) vs PyTorch (${c.task}): max |diff| ${dev.toExponential(2)}, scale ${scale.toFixed(2)}`,
  );
  if (!(dev <= 1e-4 * Math.max(1, scale)))
    throw new Error(`the golden forward disagrees with PyTorch on ${c.task}`);
}
