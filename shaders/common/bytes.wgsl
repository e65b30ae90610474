// Bytes inside array<u32> storage. Block formats pack blocks of 18, 22, 34, 110 or 210 bytes back
// to back, so fields straddle word boundaries; these helpers take the words and a byte position.
// (WGSL has no byte type and storage arrays cannot be passed to functions, so kernels load the words
// and hand them over.)

// Byte i (0..3, little-endian) of a word.
fn byte_of(word: u32, i: u32) -> u32 {
  return (word >> (8u * (i & 3u))) & 0xffu;
}

// A byte b moved to position i (0..3) of a word, ready to be OR-ed in.
fn byte_at(b: u32, i: u32) -> u32 {
  return (b & 0xffu) << (8u * (i & 3u));
}

// The four bytes starting at byte `shift` (0..3) of `lo`, continuing into `hi` (an unaligned
// little-endian u32 load). hi is ignored when shift is 0.
fn unaligned_word(lo: u32, hi: u32, shift: u32) -> u32 {
  let s = 8u * (shift & 3u);
  return select((lo >> s) | (hi << (32u - s)), lo, s == 0u);
}

// Sign extension of the low 8 / 16 bits (int8_t / int16_t fields).
fn sign_extend_8(b: u32) -> i32 {
  return bitcast<i32>(b << 24u) >> 24u;
}
fn sign_extend_16(h: u32) -> i32 {
  return bitcast<i32>(h << 16u) >> 16u;
}

// Four bytes (the low 8 bits of each element) as one little-endian word, and back.
fn pack4_bytes(b: vec4<u32>) -> u32 {
  let m = b & vec4<u32>(0xffu);
  return m.x | (m.y << 8u) | (m.z << 16u) | (m.w << 24u);
}
fn unpack4_bytes(w: u32) -> vec4<u32> {
  return (vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
}
