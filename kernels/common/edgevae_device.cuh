// Device-only helpers (warp/block reductions) for the edgevae kernels. nvcc only.
#pragma once

#if !defined(__CUDACC__)
#error "edgevae_device.cuh is device code: compile it with nvcc (host code uses edgevae_math.cuh)"
#endif

namespace edgevae {

constexpr unsigned kFullWarp = 0xffffffffu;

// Sum over the 32 lanes of a warp; the result is valid in lane 0.
__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(kFullWarp, v, offset);
    return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); the result is valid in
// thread 0. `scratch` is __shared__ float[32]. Ends with __syncthreads() so scratch can be reused.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int n_warps = blockDim.x >> 5;
    v = warp_sum(v);
    if (n_warps == 1) return v;  // uniform branch: no shared memory, no barrier needed
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = threadIdx.x < n_warps ? scratch[lane] : 0.0f;
    if (warp == 0) v = warp_sum(v);
    __syncthreads();
    return v;
}

}  // namespace edgevae
