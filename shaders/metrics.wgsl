// Quantization error metrics: original values x against dequantized values y, both already on the GPU.
//
// One thread per block of the error map: a block is params.blockSize consecutive weights of one row (the
// last block of a row may be shorter). The thread walks its block once and
//   - writes the block's mean squared error and max |x - y| (the heatmaps' data), and
//   - keeps the block's sums (x^2, y^2, xy, (x-y)^2) and its largest |x - y| with its first position,
// then the workgroup merges its threads' sums pairwise in a tree into one Partial. The CPU merges the
// Partials of all workgroups and chunks in f64 (src/gpu/metrics.ts), with the same definitions as the CPU
// reference src/quant/metrics.ts.
//
// Exact: counts, max |x - y| (compared as the bits of a non-negative float, whose unsigned order is the
// float order) and its first position (ties go to the smaller index). Rounded: the f32 sums, each value
// meeting at most blockSize sequential additions plus log2(WORKGROUP_SIZE) tree merges; the error bound
// that follows is stated in src/gpu/metrics.ts (metricsTolerance).
//
// Tiny values: GPUs may flush subnormal floats to zero in arithmetic and comparisons (SwiftShader does),
// which would lose errors below 2^-126. Such errors need x or y below 2^-102 (two floats that far above
// differ by at least 2^-126), so the kernel counts the pairs with a non-zero |x| or |y| under 2^-102
// (`tiny`, from the bits) and the CPU measures a chunk that has any on its reference instead.
//
// Pairs where x or y is NaN or +-Inf are recognised from their bits (WGSL arithmetic may assume finite
// values), counted, left out of the sums, and mark their block with +inf.

// Binding 0: the original values of this chunk (whole rows, row-major), as float32 bit patterns.
@group(0) @binding(0) var<storage, read> xs: array<u32>;
// Binding 1: the dequantized values, same layout.
@group(0) @binding(1) var<storage, read> ys: array<u32>;
// Binding 2: one Partial per workgroup (index = linear workgroup id), read back by the CPU.
@group(0) @binding(2) var<storage, read_write> partials: array<Partial>;
// Binding 3: per block, its mean squared error (rows x blocksPerRow, row-major), as f32 bits (so +inf can
// be written: WGSL has no f32 infinity constant).
@group(0) @binding(3) var<storage, read_write> blockMse: array<u32>;
// Binding 4: per block, its max |x - y|, as f32 bits.
@group(0) @binding(4) var<storage, read_write> blockMax: array<u32>;
// Binding 5: the chunk's shape and the block size.
@group(0) @binding(5) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 256u;

struct Params {
  rows: u32,         // rows in this chunk
  cols: u32,         // weights per row
  blockSize: u32,    // weights per block of the error map
  blocksPerRow: u32, // ceil(cols / blockSize)
}

// Field order is the CPU's read order (src/gpu/metrics.ts FIELD): 10 words, stride 40 bytes.
struct Partial {
  count: u32,          // finite pairs
  nonFinite: u32,      // pairs with a NaN or +-Inf on either side
  firstNonFinite: u32, // smallest index (in the chunk) of such a pair; NONE when there is none
  maxBits: u32,        // bits of the largest |x - y| (a non-negative f32)
  maxAt: u32,          // its smallest index in the chunk; NONE when count is 0
  sumXX: f32,
  sumYY: f32,
  sumXY: f32,
  sumEE: f32,          // sum of (x - y)^2
  tiny: u32,           // pairs with a non-zero |x| or |y| below 2^-102
}

const NONE = 0xFFFFFFFFu;
const EXPONENT_BITS = 0x7F800000u;
const INF_BITS = 0x7F800000u;

fn isFiniteBits(bits: u32) -> bool {
  return (bits & EXPONENT_BITS) != EXPONENT_BITS;
}

// Non-zero and below 2^-102 (biased exponent under 25).
fn isTiny(bits: u32) -> bool {
  let magnitude = bits & 0x7FFFFFFFu;
  return magnitude != 0u && magnitude < (25u << 23u);
}

var<workgroup> wg: array<Partial, WORKGROUP_SIZE>;

// The merge of two partials; `b` covers later blocks than `a` only in the tree's usual case, so the
// positions are compared explicitly.
fn mergePartials(a: Partial, b: Partial) -> Partial {
  var m = a;
  m.count = a.count + b.count;
  m.nonFinite = a.nonFinite + b.nonFinite;
  m.firstNonFinite = min(a.firstNonFinite, b.firstNonFinite);
  if (b.maxBits > a.maxBits || (b.maxBits == a.maxBits && b.maxAt < a.maxAt)) {
    m.maxBits = b.maxBits;
    m.maxAt = b.maxAt;
  }
  m.sumXX = a.sumXX + b.sumXX;
  m.sumYY = a.sumYY + b.sumYY;
  m.sumXY = a.sumXY + b.sumXY;
  m.sumEE = a.sumEE + b.sumEE;
  m.tiny = a.tiny + b.tiny;
  return m;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn blockErrors(
  @builtin(local_invocation_index) lane: u32,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  // Many blocks need more than maxComputeWorkgroupsPerDimension groups: the CPU dispatches a 2-D grid.
  let groupIndex = group.x + group.y * groups.x;
  let blocks = params.rows * params.blocksPerRow;
  let firstBlock = groupIndex * WORKGROUP_SIZE;
  // The grid is rounded up to a rectangle; the groups past the data have nothing to report.
  if (firstBlock >= blocks) {
    return;
  }

  var p = Partial(0u, 0u, NONE, 0u, NONE, 0.0, 0.0, 0.0, 0.0, 0u);
  let block = firstBlock + lane;
  if (block < blocks) {
    let row = block / params.blocksPerRow;
    let colStart = (block % params.blocksPerRow) * params.blockSize;
    let n = min(params.blockSize, params.cols - colStart);
    let start = row * params.cols + colStart;
    for (var i = start; i < start + n; i++) {
      let xBits = xs[i];
      let yBits = ys[i];
      if (!isFiniteBits(xBits) || !isFiniteBits(yBits)) {
        p.nonFinite++;
        p.firstNonFinite = min(p.firstNonFinite, i);
        continue;
      }
      if (isTiny(xBits) || isTiny(yBits)) {
        p.tiny++;
      }
      let x = bitcast<f32>(xBits);
      let y = bitcast<f32>(yBits);
      let e = x - y;
      p.count++;
      p.sumXX += x * x;
      p.sumYY += y * y;
      p.sumXY += x * y;
      p.sumEE += e * e;
      // Strictly larger: the first position of the largest error stays.
      let errBits = bitcast<u32>(abs(e));
      if (errBits > p.maxBits || p.maxAt == NONE) {
        p.maxBits = errBits;
        p.maxAt = i;
      }
    }
    if (p.nonFinite > 0u) {
      blockMse[block] = INF_BITS;
      blockMax[block] = INF_BITS;
    } else {
      blockMse[block] = bitcast<u32>(p.sumEE / f32(n));
      blockMax[block] = p.maxBits;
    }
  }

  wg[lane] = p;
  workgroupBarrier();
  // Tree merge; WORKGROUP_SIZE is a power of two.
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lane < stride) {
      wg[lane] = mergePartials(wg[lane], wg[lane + stride]);
    }
    workgroupBarrier();
  }
  if (lane == 0u) {
    partials[groupIndex] = wg[0];
  }
}
