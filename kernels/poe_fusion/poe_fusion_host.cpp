// Host test harness of poe_fusion.cu: the kernel's two phases as serial CPU loops over the SAME
// per-element functions (edgevae_math.cuh). Loaded by edgevae/kernels/hostmath.py.
#include <stddef.h>

#include "edgevae_math.cuh"

using namespace edgevae;

extern "C" void ev_poe_fusion_host(const float* expert_mu, const float* expert_logvar,
                                   const float* mask, const float* eps, float* z_mu,
                                   float* z_logvar, float* z, float* kl_prior, float* cross_kl,
                                   int B, int M, int D, float* workspace /* 2 * D floats */) {
    float* s_total = workspace;
    float* s_weighted = workspace + D;
    for (int b = 0; b < B; ++b) {
        const float* mu_row = expert_mu + (size_t)b * M * D;
        const float* lv_row = expert_logvar + (size_t)b * M * D;
        const float* mask_row = mask + (size_t)b * M;
        float kl = 0.0f;
        for (int d = 0; d < D; ++d) {  // phase 1 (one "thread" per dimension)
            PoeSums sums = poe_init();
            for (int m = 0; m < M; ++m) {
                poe_accumulate(sums, expert_precision(mask_row[m], lv_row[m * D + d]),
                               mu_row[m * D + d]);
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
            kl += kl_prior_term(mu, lv);
        }
        kl_prior[b] = kl;
        for (int m = 0; m < M; ++m) {  // phase 2
            float sum = 0.0f;
            for (int d = 0; d < D; ++d) {
                const float lv = lv_row[m * D + d];
                const float prec = expert_precision(mask_row[m], lv);
                sum += cross_modal_term(s_total[d], s_weighted[d], prec, mu_row[m * D + d], lv);
            }
            cross_kl[(size_t)b * M + m] = sum * mask_row[m];
        }
    }
}
