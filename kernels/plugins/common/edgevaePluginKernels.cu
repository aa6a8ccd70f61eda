// edgevae TensorRT plugin kernels: the poe_fusion and anomaly_score math of kernels/poe_fusion and
// kernels/anomaly_score, behind the fixed argument order that TensorRT plugins need.
//
// Two routes use this one file (tensorrt.md §3):
//  * AOT Quickly Deployable Plugins (TensorRT >= 10.9): `nvcc -ptx` of this file; TensorRT calls
//    an entry point with (input pointers..., int32 scalars..., output pointers...), which is the
//    order of the two extern "C" kernels below (edgevae/trt/plugins.py returns their names).
//  * the IPluginV3 library (TensorRT 10.3, JetPack 6): compiled into libedgevae_plugins.so; the
//    plugins' enqueue() calls the host launchers at the bottom.
//
// All per-element math is edgevae_math.cuh (shared with the standalone kernels and the host
// tests); the reductions are edgevae_device.cuh. FP32 in, FP32 accumulation, FP32 out.
//
// Layouts (row-major, contiguous):
//   poe_fusion     expert_mu, expert_logvar (B, M, D); mask (B, M)
//                  -> z_mu, z_logvar (B, D); kl_prior (B,); cross_modal (B, M)
//   anomaly_score  x_cat, recon_cat (B, N): the modalities' flattened samples side by side,
//                  modality m at columns [offsets[m], offsets[m + 1]); mask (B, M);
//                  kl_prior (B,); cross_modal (B, M); offsets (M + 1,) int32;
//                  mean, std, weight (P = M + 2,) -> score (B,); score_parts (B, P)
#include <cuda_runtime.h>
#include <stdint.h>

#include "edgevae_device.cuh"
#include "edgevae_math.cuh"
#include "edgevaePluginKernels.h"

using namespace edgevae;

// poe_fusion: one block per sample; the per-dimension P and sum(prec * mu) stay in static shared
// memory (kPluginMaxLatent floats each), so the launch needs no dynamic shared memory.
extern "C" __global__ void edgevae_plugin_poe_fusion(
    const float* __restrict__ expert_mu, const float* __restrict__ expert_logvar,
    const float* __restrict__ mask, int32_t B, int32_t M, int32_t D, float* __restrict__ z_mu,
    float* __restrict__ z_logvar, float* __restrict__ kl_prior, float* __restrict__ cross_modal) {
    __shared__ float s_total[kPluginMaxLatent];
    __shared__ float s_weighted[kPluginMaxLatent];
    __shared__ float scratch[32];
    const int b = blockIdx.x;
    if (b >= B || D > kPluginMaxLatent) return;  // uniform per block; D is checked at build time
    const float* mu_row = expert_mu + (size_t)b * M * D;
    const float* lv_row = expert_logvar + (size_t)b * M * D;
    const float* mask_row = mask + (size_t)b * M;

    // Phase 1: fuse each latent dimension (prior expert included), KL to the prior.
    float kl_local = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        PoeSums sums = poe_init();
        for (int m = 0; m < M; ++m) {
            poe_accumulate(sums, expert_precision(mask_row[m], lv_row[m * D + d]), mu_row[m * D + d]);
        }
        const float total = poe_total(sums);
        const float mu = poe_mu(total, sums.weighted);
        const float lv = poe_logvar(total);
        s_total[d] = total;
        s_weighted[d] = sums.weighted;
        z_mu[(size_t)b * D + d] = mu;
        z_logvar[(size_t)b * D + d] = lv;
        kl_local += kl_prior_term(mu, lv);
    }
    const float kl = block_sum(kl_local, scratch);
    if (threadIdx.x == 0) kl_prior[b] = kl;
    __syncthreads();  // s_total / s_weighted complete

    // Phase 2: each expert against the PoE of the others and the prior; 0 for absent experts.
    for (int m = 0; m < M; ++m) {
        float local = 0.0f;
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            const float lv = lv_row[m * D + d];
            const float prec = expert_precision(mask_row[m], lv);
            local += cross_modal_term(s_total[d], s_weighted[d], prec, mu_row[m * D + d], lv);
        }
        const float sum = block_sum(local, scratch);
        if (threadIdx.x == 0) cross_modal[(size_t)b * M + m] = sum * mask_row[m];
    }
}

// anomaly_score: one block per sample; per-modality MSE over its column range, standardised
// parts (a missing modality's recon part is 0), KL part, mean cross-modal part, weighted score.
extern "C" __global__ void edgevae_plugin_anomaly_score(
    const float* __restrict__ x_cat, const float* __restrict__ recon_cat,
    const float* __restrict__ mask, const float* __restrict__ kl_prior,
    const float* __restrict__ cross_modal, const int32_t* __restrict__ offsets,
    const float* __restrict__ mean, const float* __restrict__ stdev,
    const float* __restrict__ weight, int32_t B, int32_t M, int32_t N, float* __restrict__ score,
    float* __restrict__ score_parts) {
    __shared__ float scratch[32];
    const int b = blockIdx.x;
    if (b >= B) return;
    const int P = M + 2;
    const float* x_row = x_cat + (size_t)b * N;
    const float* r_row = recon_cat + (size_t)b * N;
    const float* mask_row = mask + (size_t)b * M;
    float acc = 0.0f;  // thread 0 only
    for (int m = 0; m < M; ++m) {
        const int begin = offsets[m];
        const int end = offsets[m + 1];
        float local = 0.0f;
        for (int i = begin + threadIdx.x; i < end; i += blockDim.x) {
            local += squared_error(x_row[i], r_row[i]);
        }
        const float sum = block_sum(local, scratch);
        if (threadIdx.x == 0) {
            const float raw = sum / (float)(end - begin) * mask_row[m];
            const float part = standardize_part(raw, mean[m], stdev[m], mask_row[m]);
            score_parts[(size_t)b * P + m] = part;
            acc += part * weight[m];
        }
    }
    if (threadIdx.x != 0) return;
    float n_present = 0.0f;
    float cross_sum = 0.0f;
    for (int m = 0; m < M; ++m) {
        n_present += mask_row[m];
        cross_sum += cross_modal[(size_t)b * M + m];
    }
    const float values[2] = {kl_prior[b], cross_modal_mean(cross_sum, n_present)};
    for (int k = 0; k < 2; ++k) {
        const int p = M + k;
        const float part = standardize_part(values[k], mean[p], stdev[p], 1.0f);
        score_parts[(size_t)b * P + p] = part;
        acc += part * weight[p];
    }
    score[b] = acc;
}

// ------------------------------------------------------------------ host launchers (C++ plugins)
cudaError_t edgevaeLaunchPoeFusion(const float* expertMu, const float* expertLogvar,
                                   const float* mask, int32_t B, int32_t M, int32_t D, float* zMu,
                                   float* zLogvar, float* klPrior, float* crossModal,
                                   cudaStream_t stream) {
    if (B == 0) return cudaSuccess;
    if (D < 1 || D > kPluginMaxLatent || M < 1) return cudaErrorInvalidValue;
    edgevae_plugin_poe_fusion<<<B, kPluginPoeThreads, 0, stream>>>(
        expertMu, expertLogvar, mask, B, M, D, zMu, zLogvar, klPrior, crossModal);
    return cudaGetLastError();
}

cudaError_t edgevaeLaunchAnomalyScore(const float* xCat, const float* reconCat, const float* mask,
                                      const float* klPrior, const float* crossModal,
                                      const int32_t* offsets, const float* mean,
                                      const float* stdev, const float* weight, int32_t B,
                                      int32_t M, int32_t N, float* score, float* scoreParts,
                                      cudaStream_t stream) {
    if (B == 0) return cudaSuccess;
    if (M < 1 || N < M) return cudaErrorInvalidValue;
    edgevae_plugin_anomaly_score<<<B, kPluginScoreThreads, 0, stream>>>(
        xCat, reconCat, mask, klPrior, crossModal, offsets, mean, stdev, weight, B, M, N, score,
        scoreParts);
    return cudaGetLastError();
}
