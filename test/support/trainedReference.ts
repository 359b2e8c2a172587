/** examples/train/train.py's reference.json: the PyTorch logits a shipped model is checked against. */
export interface TrainedReference {
  /** The block length of a block-diffusion model (the canvases' layout). */
  block_size?: number;
  cases: {
    task: string;
    prompt: string;
    tokens: number[];
    prompt_len: number;
    rows: number[];
    logits: number[][];
  }[];
  hashes: { prompt: string; fnv1a32: number; held_out: boolean }[];
  held_out: Record<string, { task: string; prompt: string; answer: string }[]>;
  training_sample: { task: string; prompt: string; answer: string }[];
}
