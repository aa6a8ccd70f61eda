//! \file splitKernels.h
//! Host launchers of the two kernels split mode runs between its engines (splitKernels.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

//! Masked PoE + KL to the prior + cross-modal KL: experts (B, M, D), mask (B, M) ->
//! z_mu, z_logvar (B, D), kl_prior (B,), cross_kl (B, M). Never throws; returns the status.
cudaError_t launchPoeFusion(float const* expertMu, float const* expertLogvar, float const* mask, int32_t batch,
    int32_t experts, int32_t latent, float* zMu, float* zLogvar, float* klPrior, float* crossKl,
    cudaStream_t stream);

//! Reconstruction errors + standardisation + score: per-modality input/reconstruction pointers
//! with `numel` elements per sample -> score_parts (B, M + 2), score (B,). Returns the status.
cudaError_t launchAnomalyScore(std::vector<float const*> const& inputs, std::vector<float const*> const& recons,
    std::vector<int64_t> const& numel, float const* mask, float const* klPrior, float const* crossKl,
    float const* mean, float const* stdev, float const* weight, float* parts, float* score, int32_t batch,
    cudaStream_t stream);
