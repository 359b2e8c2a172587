/** Where blocks start and how long they are; see Canvas.origin. */
export interface BlockLayout {
  readonly promptLen: number;
  readonly blockLen: number;
  readonly aligned?: boolean;
}

/** The block of position `i`: negative in the prompt (-1 for all of it unless aligned). */
export function blockIndex(i: number, l: BlockLayout): number {
  if (!l.aligned) return i < l.promptLen ? -1 : Math.floor((i - l.promptLen) / l.blockLen);
  return Math.floor((i - (l.promptLen - (l.promptLen % l.blockLen))) / l.blockLen);
}

/**
 * The token state of one sequence during a generation: which positions are prompt, masked or
 * decoded, when each was decoded, and where the block schedule stands.
 */
export class Canvas {
  /** Step at which each position was decoded; -1 while masked (and for prompt positions). */
  readonly decodedAt: Int32Array;
  /** Step at which each position's token last changed (committed, or remasked by a revoking rule); -1 never. */
  readonly changedAt: Int32Array;
  step = 0;
  block = 0;
  blockStep = 0;
  /**
   * Counts the commits, so that `state` tells states apart; a lookahead's commit counts too, so the
   * state it restores is a new one (its contents are the old state's, which a new name only costs a
   * re-evaluation).
   */
  private commits = 0;

  /**
   * Where block 0 starts. With `aligned` (a model trained with blocks counted from position 0:
   * SDAR, Fast-dLLM v2), at the start of the block holding the first generated position: the
   * prompt's whole blocks come before it (blocks -1, -2, …) and its tail shares block 0 with the
   * first generated tokens. Otherwise at the end of the prompt, which is one block (-1).
   */
  readonly origin: number;

  constructor(
    readonly promptLen: number,
    readonly genLen: number,
    readonly blockLen: number,
    readonly aligned = false,
  ) {
    this.decodedAt = new Int32Array(promptLen + genLen).fill(-1);
    this.changedAt = new Int32Array(promptLen + genLen).fill(-1);
    this.origin = aligned ? promptLen - (promptLen % blockLen) : promptLen;
  }

  get length(): number {
    return this.promptLen + this.genLen;
  }
  get numBlocks(): number {
    return Math.ceil((this.length - this.origin) / this.blockLen);
  }

  /**
   * Names the token state: equal between two reads only if no commit, remask or advance came
   * between them (step and block are read too, for code that sets them directly).
   */
  get state(): string {
    return `${this.commits}:${this.step}:${this.block}:${this.blockStep}`;
  }

  isPrompt(i: number): boolean {
    return i < this.promptLen;
  }
  isMasked(i: number): boolean {
    return i >= this.promptLen && (this.decodedAt[i] ?? -1) < 0;
  }
  /** Block index of a position: the prompt is block -1, or (aligned) blocks before block 0. */
  blockOf(i: number): number {
    return blockIndex(i, this);
  }
  /** First step at which the position's current token is the model's input. */
  tokenSince(i: number): number {
    const d = this.changedAt[i] ?? -1;
    return d < 0 ? 0 : d + 1;
  }
  age(i: number): number {
    if (this.isPrompt(i)) return this.step + 1;
    const d = this.decodedAt[i] ?? -1;
    return d < 0 ? 0 : this.step - d;
  }
  blockRange(b: number): [number, number] {
    const start = this.origin + b * this.blockLen;
    return [start, Math.min(this.length, start + this.blockLen)];
  }
  maskedInBlock(b: number): number {
    const [s, e] = this.blockRange(b);
    let n = 0;
    for (let i = s; i < e; i++) if (this.isMasked(i)) n++;
    return n;
  }
  get done(): boolean {
    for (let i = this.promptLen; i < this.length; i++) if (this.isMasked(i)) return false;
    return true;
  }

  /**
   * Commits `positions` and turns `remasked` (decoded positions a revoking decode rule takes back)
   * into masks again: the token of each changes at this step.
   */
  commit(positions: readonly number[], remasked: readonly number[] = []): void {
    for (const i of positions) this.decodedAt[i] = this.step;
    for (const i of remasked) this.decodedAt[i] = -1;
    for (const i of [...positions, ...remasked]) this.changedAt[i] = this.step;
    this.commits++;
  }

  /** What `f` returns on the state after committing `positions` and advancing; the state is then restored. */
  lookahead<T>(positions: readonly number[], f: () => T): T {
    const saved = Int32Array.from(this.decodedAt);
    const changed = Int32Array.from(this.changedAt);
    const [step, block, blockStep] = [this.step, this.block, this.blockStep];
    this.commit(positions);
    this.advance();
    try {
      return f();
    } finally {
      this.decodedAt.set(saved);
      this.changedAt.set(changed);
      [this.step, this.block, this.blockStep] = [step, block, blockStep];
    }
  }

  /** Moves to the next step, and to the next block once the current one has no masks left. */
  advance(): void {
    this.step++;
    this.blockStep++;
    while (this.block < this.numBlocks - 1 && this.maskedInBlock(this.block) === 0) {
      this.block++;
      this.blockStep = 0;
    }
  }
}
