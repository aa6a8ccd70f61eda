// anomaly_score: per-modality reconstruction-error reductions, standardisation with stored
// statistics and the combined score (sum or max: `combine`) + parts, in one launch per batch,
// FP32 accumulation.
// Math and layouts: README.md next to this file. Reference: edgevae/kernels/reference.py.
//
// Launch: grid (B, 1, 1), one block per sample row; block (256, 1, 1) (any multiple of 32 up
// to 1024 works); no dynamic shared memory. P = M + 2 score parts.
#include "edgevae_device.cuh"
#include "edgevae_math.cuh"

using namespace edgevae;

// Per-modality originals and reconstructions, passed by value (kernel parameter space).
// Modality m of sample b is inputs[m][b * numel[m] .. (b + 1) * numel[m]), contiguous FP32.
struct ScoreInputs {
    const float* inputs[kMaxModalities];
    const float* recons[kMaxModalities];
    long long numel[kMaxModalities];
};

extern "C" __global__ void edgevae_anomaly_score(
    ScoreInputs in,
    const float* __restrict__ mask,      // (B, M)
    const float* __restrict__ kl_prior,  // (B,)   KL(q(z|X_S) || N(0, I)) (poe_fusion output)
    const float* __restrict__ cross_kl,  // (B, M) per-expert cross-modal KL, 0 where absent
    const float* __restrict__ mean,      // (P,)
    const float* __restrict__ std,       // (P,)
    const float* __restrict__ weight,    // (P,)
    float* __restrict__ raw,             // (B, P) unstandardised parts, or nullptr
    float* __restrict__ parts,           // (B, P) standardised parts
    float* __restrict__ score,           // (B,)
    int B, int M,
    int combine) {                       // 0 = sum, 1 = max over kept parts (kCombine*)
    __shared__ float scratch[32];
    const int b = blockIdx.x;
    if (b >= B) return;  // uniform per block
    const int P = M + 2;
    const float* mask_row = mask + (size_t)b * M;

    // Recon parts: mean squared error over the sample's elements, 0 for a missing modality.
    float score_acc = combine_init(combine);  // meaningful in thread 0 only
    for (int m = 0; m < M; ++m) {
        const long long n = in.numel[m];
        const float* x = in.inputs[m] + (size_t)b * n;
        const float* r = in.recons[m] + (size_t)b * n;
        float local = 0.0f;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) local += squared_error(x[i], r[i]);
        const float sum = block_sum(local, scratch);
        if (threadIdx.x == 0) {
            const float value = sum / (float)n * mask_row[m];
            const float part = standardize_part(value, mean[m], std[m], mask_row[m]);
            if (raw != nullptr) raw[(size_t)b * P + m] = value;
            parts[(size_t)b * P + m] = part;
            score_acc = combine_step(score_acc, part * weight[m], mask_row[m], combine);
        }
    }
    if (threadIdx.x != 0) return;

    // KL to the prior and the mean cross-modal KL over the present experts (always kept).
    float n_present = 0.0f;
    float cross_sum = 0.0f;
    for (int m = 0; m < M; ++m) {
        n_present += mask_row[m];
        cross_sum += cross_kl[(size_t)b * M + m];
    }
    const float values[2] = {kl_prior[b], cross_modal_mean(cross_sum, n_present)};
    for (int k = 0; k < 2; ++k) {
        const int p = M + k;
        const float part = standardize_part(values[k], mean[p], std[p], 1.0f);
        if (raw != nullptr) raw[(size_t)b * P + p] = values[k];
        parts[(size_t)b * P + p] = part;
        score_acc = combine_step(score_acc, part * weight[p], 1.0f, combine);
    }
    score[b] = score_acc;
}
