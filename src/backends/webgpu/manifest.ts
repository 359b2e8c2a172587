import type { Dim } from '../../ir/types.ts';
import { type ShaderName, type StorageType, type WeightFormat, weightStorage } from './shaders.ts';

/** The dispatch plan the WGSL renderer writes and the WebGPU runner executes. */
/** A size: coefficient times the product of dims (`L`, `#name`, or numbers). */
export type Size = readonly [number, ...Dim[]];
export type Param = { readonly u: Size } | { readonly f: number };

export type BufferRole =
  | 'weight'
  | 'persistent'
  /** One of the memory plan's whole-buffer slots: every activation, kernel locals included. */
  | 'slot'
  | 'list'
  | 'tokens'
  | 'mask'
  | 'rope'
  | 'dummy';

/** The buffer of the per-row masks: blocks in [0, maxCanvas), sequences in [maxCanvas, 2 maxCanvas). */
export const MASK = 'mask';

export interface BufferSpec {
  readonly key: string;
  readonly role: BufferRole;
  /** Elements, for the maximum canvas: 32-bit, except in a weight of a 16-bit `format`. */
  readonly elements: number;
  readonly int?: boolean;
  /** Weights: the model's tensor; rope tables: theta and head dim. */
  readonly weight?: string;
  readonly rope?: { readonly theta: number; readonly hd: number };
  /** A weight matrix kept in 16 bits (see WeightFormat); absent: f32. */
  readonly format?: Exclude<WeightFormat, 'f32'>;
}

/** The bytes of a buffer: its elements, two to a 32-bit word in a 16-bit weight, rounded up to 16 bytes (at least 16). */
export function bufferBytes(s: BufferSpec): number {
  const bytes = s.format ? 2 * s.elements : 4 * s.elements;
  return Math.max(16, Math.ceil(bytes / 16) * 16);
}

/** The element type a shader must declare for a binding of this buffer. */
export function storageOf(s: BufferSpec): StorageType {
  if (s.format) return weightStorage[s.format];
  return s.int ? 'i32' : 'f32';
}

export type Dispatch =
  | {
      readonly op: 'kernel';
      readonly shader: ShaderName;
      readonly params: readonly Param[];
      /** Buffer keys for bindings 1.. of the shader. */
      readonly bindings: readonly string[];
      /** Work items along x and y. */
      readonly items: readonly [Size, Size];
    }
  | { readonly op: 'copy'; readonly src: string; readonly dst: string; readonly floats: Size }
  | { readonly op: 'clear'; readonly dst: string; readonly floats: Size };

export interface WgslStage {
  readonly name: string;
  readonly dispatches: readonly Dispatch[];
  /** Carried inputs: name → the slot the previous stage of the phase left it in. */
  readonly inputs: Readonly<Record<string, string>>;
  readonly outputs: Readonly<Record<string, string>>;
}

export interface WgslManifest {
  readonly maxCanvas: number;
  readonly buffers: readonly BufferSpec[];
  readonly phases: Readonly<Record<string, readonly WgslStage[]>>;
  readonly shaders: readonly ShaderName[];
}

/** Evaluates a size for concrete per-step sizes. */
export function evalSize(s: Size, size: (d: Dim) => number): number {
  const [coef, ...dims] = s;
  return dims.reduce<number>((p, d) => p * (typeof d === 'number' ? d : size(d)), coef);
}
