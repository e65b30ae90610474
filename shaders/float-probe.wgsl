// Probes how this device does f32 arithmetic (src/gpu/float-probe.ts compares the results with
// correctly rounded CPU values): whether a*b + c is fused into one rounding, whether division, the
// reciprocal and sqrt are correctly rounded, whether a division by a constant is, and whether
// subnormal inputs and results survive. One invocation per input triple (a, b, c).

struct Params {
  count: u32, // triples in `inputs`
  zero: u32,  // always 0: the runtime zero of opaque_f32 (common/ggml-rounding.wgsl)
}

@group(0) @binding(0) var<uniform> params: Params;
// Triples (a, b, c), 3 floats each.
@group(0) @binding(1) var<storage, read> inputs: array<f32>;
// RESULTS floats per triple, in the order below.
@group(0) @binding(2) var<storage, read_write> results: array<f32>;

const RESULTS = 7u;

@compute @workgroup_size(64)
fn probe(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linear_workgroup(wid, nwg) * 64u + lid;
  if (i >= params.count) {
    return;
  }
  let a = inputs[3u * i];
  let b = inputs[3u * i + 1u];
  let c = inputs[3u * i + 2u];
  let out = RESULTS * i;
  results[out] = a * b + c;                                 // fused or two roundings?
  results[out + 1u] = a / b;                                // division of runtime values
  results[out + 2u] = 1.0 / b;                              // reciprocal
  results[out + 3u] = sqrt(abs(a));
  results[out + 4u] = a / 15.0;                             // division by a constant, as written
  results[out + 5u] = a / opaque_f32(15.0, params.zero);    // the same, with the constant hidden
  results[out + 6u] = a * b;                                // subnormal products and inputs
}
