// A plain copy: the memory-bound baseline the benchmark (bench/formats.ts) holds every quantization
// kernel against. Each invocation copies one 16-byte vec4<u32> (the widest load WGSL has), so the
// kernel does nothing but read and write memory.
//
// Bindings:
//   0 params | 1 source (the input, as 16-byte words) | 2 destination (the same size)

struct Params {
  words: u32, // vec4<u32> words to copy
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> source: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> destination: array<vec4<u32>>;

const WORKGROUP_SIZE = 256u;

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  // 2-D grid (large inputs pass 65535 workgroups in x): flatten it.
  let i = (wg.y * groups.x + wg.x) * WORKGROUP_SIZE + lane;
  if (i < params.words) {
    destination[i] = source[i];
  }
}
