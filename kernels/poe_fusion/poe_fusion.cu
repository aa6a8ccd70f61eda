// poe_fusion: masked product of experts with a N(0, I) prior expert, reparameterisation, KL to
// the prior and the per-expert cross-modal KL, in one launch, FP32 throughout.
// Math and layouts: README.md next to this file. Reference: edgevae/kernels/reference.py.
//
// Launch: grid (B, 1, 1), one block per sample row; block (T, 1, 1) with T = min(256,
// roundup(D, 32)); dynamic shared memory 2 * D * sizeof(float) (P and sum prec*mu per dimension).
#include "edgevae_device.cuh"
#include "edgevae_math.cuh"

using namespace edgevae;

extern "C" __global__ void edgevae_poe_fusion(
    const float* __restrict__ expert_mu,      // (B, M, D)
    const float* __restrict__ expert_logvar,  // (B, M, D)
    const float* __restrict__ mask,           // (B, M), 1 = present
    const float* __restrict__ eps,            // (B, D) or nullptr (then z = z_mu)
    float* __restrict__ z_mu,                 // (B, D)
    float* __restrict__ z_logvar,             // (B, D)
    float* __restrict__ z,                    // (B, D) or nullptr (not written)
    float* __restrict__ kl_prior,             // (B,)
    float* __restrict__ cross_kl,             // (B, M)
    int B, int M, int D) {
    extern __shared__ float smem[];  // [0, D): P per dimension, [D, 2D): sum prec * mu
    __shared__ float scratch[32];
    float* s_total = smem;
    float* s_weighted = smem + D;

    const int b = blockIdx.x;
    if (b >= B) return;  // uniform per block
    const float* mu_row = expert_mu + (size_t)b * M * D;
    const float* lv_row = expert_logvar + (size_t)b * M * D;
    const float* mask_row = mask + (size_t)b * M;

    // Phase 1: fuse each latent dimension; accumulate KL to the prior.
    float kl_local = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        PoeSums sums = poe_init();
        for (int m = 0; m < M; ++m) {
            const float prec = expert_precision(mask_row[m], lv_row[m * D + d]);
            poe_accumulate(sums, prec, mu_row[m * D + d]);
        }
        const float total = poe_total(sums);
        const float mu = poe_mu(total, sums.weighted);
        const float lv = poe_logvar(total);
        s_total[d] = total;
        s_weighted[d] = sums.weighted;
        const size_t o = (size_t)b * D + d;
        z_mu[o] = mu;
        z_logvar[o] = lv;
        if (z != nullptr) z[o] = eps != nullptr ? reparameterize(mu, lv, eps[o]) : mu;
        kl_local += kl_prior_term(mu, lv);
    }
    const float kl = block_sum(kl_local, scratch);  // ends with a barrier when > 1 warp
    if (threadIdx.x == 0) kl_prior[b] = kl;
    __syncthreads();  // s_total / s_weighted complete for every thread

    // Phase 2: cross-modal KL of each expert against the PoE of the others and the prior.
    for (int m = 0; m < M; ++m) {
        float local = 0.0f;
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            const float lv = lv_row[m * D + d];
            const float prec = expert_precision(mask_row[m], lv);
            local += cross_modal_term(s_total[d], s_weighted[d], prec, mu_row[m * D + d], lv);
        }
        const float sum = block_sum(local, scratch);
        if (threadIdx.x == 0) cross_kl[(size_t)b * M + m] = sum * mask_row[m];
    }
}
