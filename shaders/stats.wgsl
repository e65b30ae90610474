// Tensor statistics: one pass over a chunk of Float32 values, one partial result per workgroup.
//
// Every workgroup owns a contiguous tile of WORKGROUP_SIZE * params.perThread values. Thread t reads
// tile[t], tile[t + WORKGROUP_SIZE], ... (neighbouring threads read neighbouring words), keeps its own
// counts, min/max and a Welford (mean, M2) of the finite values, then the workgroup merges the threads
// pairwise in a tree. The CPU merges the workgroups' partials in f64 (src/gpu/stats.ts).
//
// Why (mean, M2) rather than a raw sum of squares: M2 = sum((x - mean)^2) merged with Chan, Golub &
// LeVeque's pairwise formula keeps its error relative to M2 itself, while sum(x^2) - n*mean^2 in f32
// loses every digit when |mean| >> std (a LayerNorm weight around 1.0 is such a tensor).
// Error bound: each value meets at most perThread Welford steps plus log2(WORKGROUP_SIZE) merges of
// O(u) error each (u = 2^-24); the f64 merge on the CPU adds nothing visible. The stated bound,
// |d mean| <= 4ku max|x| and |d std| <= 4ku rms(x) with k = perThread + log2(WORKGROUP_SIZE) + 2, is
// in src/gpu/stats.ts (statsTolerance) and the browser tests hold this kernel to it.
//
// The values are read as raw bits (u32), never as f32, so NaN and +/-Inf are classified exactly even
// where WGSL arithmetic assumes finite numbers, and min/max are taken on an order-preserving integer
// key: exact for subnormals too, which some GPUs flush to zero in float arithmetic.

// Binding 0: the chunk's Float32 values, as their IEEE-754 bit patterns.
@group(0) @binding(0) var<storage, read> values: array<u32>;
// Binding 1: one Partial per workgroup (index = linear workgroup id), read back by the CPU.
@group(0) @binding(1) var<storage, read_write> partials: array<Partial>;
// Binding 2: how many values of `values` are valid, and how many each thread reads.
@group(0) @binding(2) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 256u;

struct Params {
  count: u32,     // valid values in `values` (the buffer may be larger)
  perThread: u32, // values per thread; a tile is WORKGROUP_SIZE * perThread values
}

// Field order is the CPU's read order (src/gpu/stats.ts PARTIAL_FIELDS): 9 words, stride 36 bytes.
struct Partial {
  finite: u32,   // count of finite values (zeros and subnormals included)
  nan: u32,
  posInf: u32,
  negInf: u32,
  zeros: u32,    // +0 and -0
  minKey: u32,   // orderKey() of the smallest finite value; 0xFFFFFFFF when there is none
  maxKey: u32,   // orderKey() of the largest finite value; 0 when there is none
  mean: f32,     // mean of the finite values (0 when there is none)
  m2: f32,       // sum of squared deviations from `mean`
}

const SIGN_BIT = 0x80000000u;
const EXPONENT_BITS = 0x7F800000u;
const MANTISSA_BITS = 0x007FFFFFu;

// Maps float bits to a u32 whose unsigned order is the float order (-0 sorts just below +0).
fn orderKey(bits: u32) -> u32 {
  return select(bits | SIGN_BIT, ~bits, (bits & SIGN_BIT) != 0u);
}

var<workgroup> wgFinite: array<u32, WORKGROUP_SIZE>;
var<workgroup> wgNan: array<u32, WORKGROUP_SIZE>;
var<workgroup> wgPosInf: array<u32, WORKGROUP_SIZE>;
var<workgroup> wgNegInf: array<u32, WORKGROUP_SIZE>;
var<workgroup> wgZeros: array<u32, WORKGROUP_SIZE>;
var<workgroup> wgMinKey: array<u32, WORKGROUP_SIZE>;
var<workgroup> wgMaxKey: array<u32, WORKGROUP_SIZE>;
var<workgroup> wgMean: array<f32, WORKGROUP_SIZE>;
var<workgroup> wgM2: array<f32, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn partialStats(
  @builtin(local_invocation_index) lane: u32,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  // Large chunks need more than maxComputeWorkgroupsPerDimension groups: the CPU dispatches a 2-D grid.
  let groupIndex = group.x + group.y * groups.x;
  let tileStart = groupIndex * WORKGROUP_SIZE * params.perThread;
  // The grid is rounded up to a rectangle; the groups past the data have nothing to report.
  if (tileStart >= params.count) {
    return;
  }

  var finite = 0u;
  var nan = 0u;
  var posInf = 0u;
  var negInf = 0u;
  var zeros = 0u;
  var minKey = 0xFFFFFFFFu;
  var maxKey = 0u;
  var mean = 0.0;
  var m2 = 0.0;

  for (var j = 0u; j < params.perThread; j++) {
    let i = tileStart + lane + j * WORKGROUP_SIZE;
    if (i >= params.count) {
      break;
    }
    let bits = values[i];
    if ((bits & EXPONENT_BITS) == EXPONENT_BITS) {
      if ((bits & MANTISSA_BITS) != 0u) {
        nan++;
      } else if ((bits & SIGN_BIT) != 0u) {
        negInf++;
      } else {
        posInf++;
      }
      continue;
    }
    if ((bits & ~SIGN_BIT) == 0u) {
      zeros++;
    }
    let key = orderKey(bits);
    minKey = min(minKey, key);
    maxKey = max(maxKey, key);
    // Welford's update.
    let x = bitcast<f32>(bits);
    finite++;
    let delta = x - mean;
    mean += delta / f32(finite);
    m2 += delta * (x - mean);
  }

  wgFinite[lane] = finite;
  wgNan[lane] = nan;
  wgPosInf[lane] = posInf;
  wgNegInf[lane] = negInf;
  wgZeros[lane] = zeros;
  wgMinKey[lane] = minKey;
  wgMaxKey[lane] = maxKey;
  wgMean[lane] = mean;
  wgM2[lane] = m2;
  workgroupBarrier();

  // Tree merge; WORKGROUP_SIZE is a power of two.
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lane < stride) {
      let other = lane + stride;
      let nA = wgFinite[lane];
      let nB = wgFinite[other];
      let n = nA + nB;
      if (nB > 0u) {
        // Chan, Golub & LeVeque's pairwise update of (mean, M2).
        let fA = f32(nA);
        let fB = f32(nB);
        let fN = f32(n);
        let delta = wgMean[other] - wgMean[lane];
        wgMean[lane] = wgMean[lane] + delta * (fB / fN);
        wgM2[lane] = wgM2[lane] + wgM2[other] + delta * delta * (fA * (fB / fN));
      }
      wgFinite[lane] = n;
      wgNan[lane] += wgNan[other];
      wgPosInf[lane] += wgPosInf[other];
      wgNegInf[lane] += wgNegInf[other];
      wgZeros[lane] += wgZeros[other];
      wgMinKey[lane] = min(wgMinKey[lane], wgMinKey[other]);
      wgMaxKey[lane] = max(wgMaxKey[lane], wgMaxKey[other]);
    }
    workgroupBarrier();
  }

  if (lane == 0u) {
    partials[groupIndex] = Partial(
      wgFinite[0], wgNan[0], wgPosInf[0], wgNegInf[0], wgZeros[0],
      wgMinKey[0], wgMaxKey[0], wgMean[0], wgM2[0],
    );
  }
}
