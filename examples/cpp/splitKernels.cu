//! \file splitKernels.cu
//! Split mode in C++: the standalone edgevae kernels (kernels/poe_fusion, kernels/anomaly_score,
//! compiled into this translation unit unchanged) and host launchers with the launch
//! configuration of their READMEs.
#include "../../kernels/anomaly_score/anomaly_score.cu"
#include "../../kernels/poe_fusion/poe_fusion.cu"

#include "splitKernels.h"

cudaError_t launchPoeFusion(float const* expertMu, float const* expertLogvar, float const* mask, int32_t batch,
    int32_t experts, int32_t latent, float* zMu, float* zLogvar, float* klPrior, float* crossKl,
    cudaStream_t stream)
{
    if (batch == 0)
    {
        return cudaSuccess;
    }
    int32_t const threads = latent < 256 ? (latent + 31) / 32 * 32 : 256;
    size_t const shared = 2 * static_cast<size_t>(latent) * sizeof(float);
    edgevae_poe_fusion<<<batch, threads, shared, stream>>>(expertMu, expertLogvar, mask, nullptr, zMu, zLogvar,
        nullptr, klPrior, crossKl, batch, experts, latent);
    return cudaGetLastError();
}

cudaError_t launchAnomalyScore(std::vector<float const*> const& inputs, std::vector<float const*> const& recons,
    std::vector<int64_t> const& numel, float const* mask, float const* klPrior, float const* crossKl,
    float const* mean, float const* stdev, float const* weight, float* parts, float* score, int32_t batch,
    cudaStream_t stream)
{
    auto const modalities = static_cast<int32_t>(inputs.size());
    if (modalities < 1 || modalities > edgevae::kMaxModalities || recons.size() != inputs.size()
        || numel.size() != inputs.size())
    {
        return cudaErrorInvalidValue;
    }
    if (batch == 0)
    {
        return cudaSuccess;
    }
    ScoreInputs table{};
    for (int32_t m = 0; m < modalities; ++m)
    {
        table.inputs[m] = inputs[m];
        table.recons[m] = recons[m];
        table.numel[m] = numel[m];
    }
    edgevae_anomaly_score<<<batch, 256, 0, stream>>>(
        table, mask, klPrior, crossKl, mean, stdev, weight, nullptr, parts, score, batch, modalities);
    return cudaGetLastError();
}
