/** What the C renderer tells the CPU runner about the library it generated. */
export type SlotKind = 'weight' | 'persistent' | 'arena' | 'list' | 'tokens' | 'blocks' | 'seqs';

export interface Slot {
  readonly index: number;
  readonly name: string;
  readonly kind: SlotKind;
  /** Elements (float32 or int32) the slot holds. */
  readonly elements: number;
  /** For weights: the shape, and whether a packed copy is made for GEMMs. */
  readonly shape?: readonly number[];
  readonly packed?: boolean;
  /**
   * A weight kv_embed gathers rows of (the embedding table, packed for the head's GEMM too when
   * tied): its slot keeps the loaded copy, in the dtype the model stores it in.
   */
  readonly rowMajor?: boolean;
}

export interface StageEntry {
  readonly name: string;
  readonly fn: string;
  /** Where the stage expects its carried inputs and leaves its outputs, as float offsets into the arena. */
  readonly inputs: Readonly<Record<string, number>>;
  readonly outputs: Readonly<Record<string, number>>;
}

export interface CpuManifest {
  readonly maxCanvas: number;
  readonly slots: readonly Slot[];
  /** The size array passed to stage functions: index 0 is the canvas, then index lists by name. */
  readonly sizes: readonly string[];
  readonly arenaFloats: number;
  readonly phases: Readonly<Record<string, readonly StageEntry[]>>;
}
