/**
 * The 16-bit float formats checkpoints store (bfloat16, IEEE binary16) as raw bit patterns, and
 * their exact widening to float32, one tensor at a time.
 */

export type HalfDtype = 'bf16' | 'f16';

/** bfloat16 bit patterns to float32, exactly (NaN payloads included): bf16 is the top half of f32. */
export function bf16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) u[i] = (bits[i] as number) << 16;
  return out;
}

/** IEEE binary16 bit patterns to float32, exactly: every half is a float, subnormals included. */
export function f16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i] as number;
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    let mant = h & 0x3ff;
    if (exp === 0x1f) u[i] = sign | 0x7f800000 | (mant << 13);
    else if (exp !== 0) u[i] = sign | ((exp + 112) << 23) | (mant << 13);
    else if (mant === 0) u[i] = sign;
    else {
      // A subnormal half is a normal float: shift the leading one up to the implicit bit.
      let e = 113;
      while ((mant & 0x400) === 0) {
        mant <<= 1;
        e--;
      }
      u[i] = sign | (e << 23) | ((mant & 0x3ff) << 13);
    }
  }
  return out;
}

/** 16-bit bit patterns of either format to float32, exactly. */
export const halfToFloat32 = (bits: Uint16Array, dtype: HalfDtype): Float32Array =>
  dtype === 'bf16' ? bf16ToFloat32(bits) : f16ToFloat32(bits);
