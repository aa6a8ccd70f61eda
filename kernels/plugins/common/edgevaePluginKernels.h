//! \file edgevaePluginKernels.h
//! Launch configuration and host launchers of the edgevae plugin kernels
//! (edgevaePluginKernels.cu). The Python AOT route (edgevae/trt/plugins.py) uses the same
//! constants: keep kPlugin* in step with POE_THREADS / SCORE_THREADS / MAX_LATENT there.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

//! Largest latent size the plugin poe_fusion kernel supports (static shared memory: 8 KiB).
constexpr int32_t kPluginMaxLatent = 1024;
//! Threads per block (one block per sample) of the two kernels; multiples of 32.
constexpr int32_t kPluginPoeThreads = 128;
constexpr int32_t kPluginScoreThreads = 256;

//! poe_fusion: (B, M, D) experts + (B, M) mask -> z_mu, z_logvar (B, D), kl_prior (B,),
//! cross_modal (B, M). Returns the launch status; never throws.
cudaError_t edgevaeLaunchPoeFusion(const float* expertMu, const float* expertLogvar,
                                   const float* mask, int32_t B, int32_t M, int32_t D, float* zMu,
                                   float* zLogvar, float* klPrior, float* crossModal,
                                   cudaStream_t stream);

//! anomaly_score on the concatenated layout -> score (B,), score_parts (B, M + 2).
//! Returns the launch status; never throws.
cudaError_t edgevaeLaunchAnomalyScore(const float* xCat, const float* reconCat, const float* mask,
                                      const float* klPrior, const float* crossModal,
                                      const int32_t* offsets, const float* mean,
                                      const float* stdev, const float* weight, int32_t B,
                                      int32_t M, int32_t N, float* score, float* scoreParts,
                                      cudaStream_t stream);
