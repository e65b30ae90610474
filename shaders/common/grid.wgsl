// Dispatches larger than maxComputeWorkgroupsPerDimension are split over x and y (src/gpu/buffers.ts
// workgroupGrid); every kernel numbers its workgroups linearly through this.
fn linear_workgroup(workgroup_id: vec3<u32>, num_workgroups: vec3<u32>) -> u32 {
  return workgroup_id.x + workgroup_id.y * num_workgroups.x;
}
