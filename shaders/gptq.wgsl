// GPTQ's column sweep over one block of up to 128 columns (src/quant/gptq.ts, step 7), one thread per row:
// rows are independent once U is known. For each column p of the block the thread quantizes its weight with
// the reference's grid, writes Q and the code (in the original column order), feeds the scaled error
// (w - q) / U_pp into the block's later columns through row p of U, and keeps it in `err` for the lazy batch
// update that follows (shaders/matmul.wgsl). A group's parameters (without static groups) are found when its
// first column comes up, from W itself, which holds no update from this block yet: the reference's
// stale-weights behaviour, reproduced.

// Binding 0: W in processing order, rows x n row-major, with every earlier block's update applied.
@group(0) @binding(0) var<storage, read> w: array<f32>;
// Binding 1: U, n x n row-major (upper Cholesky factor of H^-1, processing order).
@group(0) @binding(1) var<storage, read> u: array<f32>;
// Binding 2: the block's scaled errors, rows x 128 row-major.
@group(0) @binding(2) var<storage, read_write> err: array<f32>;
// Binding 3: dequantized weights, rows x n row-major, original column order.
@group(0) @binding(3) var<storage, read_write> q: array<f32>;
// Binding 4: codes, one u32 each, same layout as q.
@group(0) @binding(4) var<storage, read_write> codes: array<u32>;
// Binding 5: scale per (row, group), rows x nGroups: read (group -1, static groups) or written here.
@group(0) @binding(5) var<storage, read_write> scales: array<f32>;
// Binding 6: zero point per (row, group), same layout.
@group(0) @binding(6) var<storage, read_write> zeros: array<f32>;
// Binding 7: perm[p] = original column of processing position p (the identity without act-order).
@group(0) @binding(7) var<storage, read> perm: array<u32>;
// Binding 8: the block and the quantizer settings.
@group(0) @binding(8) var<uniform> p: Params;

struct Params {
  rows: u32,
  n: u32,
  i1: u32,
  count: u32,
  group: u32,      // columns per group (n for group -1)
  nGroups: u32,
  mode: u32,       // 0: one group per row (parameters given), 1: groups found in the sweep, 2: static groups
  maxq: u32,
  sym: u32,
}

const BLOCK: u32 = 128u;
const BLOCK_VEC4: u32 = 32u;

@compute @workgroup_size(64)
fn sweep(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = gid.x + gid.y * nwg.x * 64u;
  if (o >= p.rows) {
    return;
  }
  let maxq = f32(p.maxq);
  let rowW = o * p.n;
  // The block's working weights, four to a vector: SwiftShader keeps a private array in memory and indexes it
  // lane by lane, so a quarter as many indexed accesses in the error feedback below is what makes it fast.
  var w1: array<vec4<f32>, BLOCK_VEC4>;
  for (var i = 0u; i < p.count; i++) {
    w1[i / 4u][i % 4u] = w[rowW + p.i1 + i];
  }
  // The group in force at the block's first column (found in an earlier block when it started there).
  var current = 0u;
  if (p.mode == 1u) {
    current = p.i1 / p.group;
  }
  var scale = scales[o * p.nGroups + current];
  var zero = zeros[o * p.nGroups + current];
  for (var i = 0u; i < p.count; i++) {
    let col = p.i1 + i;
    let orig = perm[col];
    if (p.mode == 2u) {
      let g = o * p.nGroups + orig / p.group;
      scale = scales[g];
      zero = zeros[g];
    } else if (p.mode == 1u && col % p.group == 0u) {
      var lo = 0.0; // the range always holds 0
      var hi = 0.0;
      let end = min(col + p.group, p.n);
      for (var c = col; c < end; c++) {
        lo = min(lo, w[rowW + c]);
        hi = max(hi, w[rowW + c]);
      }
      if (p.sym != 0u) {
        hi = max(-lo, hi);
        if (lo < 0.0) {
          lo = -hi;
        }
      }
      if (lo == 0.0 && hi == 0.0) {
        lo = -1.0;
        hi = 1.0;
      }
      scale = (hi - lo) / maxq;
      if (p.sym != 0u) {
        zero = (maxq + 1.0) / 2.0;
      } else {
        zero = round(-lo / scale);
      }
      let g = o * p.nGroups + col / p.group;
      scales[g] = scale;
      zeros[g] = zero;
    }
    let wi = w1[i / 4u][i % 4u];
    let code = clamp(round(wi / scale) + zero, 0.0, maxq);
    let value = scale * (code - zero);
    q[o * p.n + orig] = value;
    codes[o * p.n + orig] = u32(code);
    let e = (wi - value) / u[col * p.n + col];
    err[o * BLOCK + i] = e;
    // Columns k > i: w1[k] -= e U[col, i1 + k], a vector at a time from the one holding column i + 1. Its
    // entries at or before i (already quantized) and past the block's end are updated too and never read
    // again; the U values they take may lie past row `col` (still inside U: bounds-checked access).
    let uRow = col * p.n + p.i1;
    for (var kv = (i + 1u) / 4u; kv * 4u < p.count; kv++) {
      let k = kv * 4u;
      let uv = vec4<f32>(u[uRow + k], u[uRow + k + 1u], u[uRow + k + 2u], u[uRow + k + 3u]);
      w1[kv] = fma(vec4<f32>(-e), uv, w1[kv]);
    }
  }
}
