// Host test harness of anomaly_score.cu: the kernel's per-row work as serial CPU loops over the
// SAME per-element functions (edgevae_math.cuh). The element sums use 256 strided partial sums,
// like the kernel's 256 threads. Loaded by edgevae/kernels/hostmath.py.
#include <stddef.h>

#include "edgevae_math.cuh"

using namespace edgevae;

static float strided_sum_of_squares(const float* x, const float* r, long long n) {
    const int lanes = 256;
    float total = 0.0f;
    for (int t = 0; t < lanes; ++t) {
        float local = 0.0f;
        for (long long i = t; i < n; i += lanes) local += squared_error(x[i], r[i]);
        total += local;
    }
    return total;
}

extern "C" int ev_anomaly_score_host(const float* const* inputs, const float* const* recons,
                                     const long long* numel, int M, const float* mask,
                                     const float* kl_prior, const float* cross_kl,
                                     const float* mean, const float* std, const float* weight,
                                     float* raw, float* parts, float* score, int B,
                                     int combine) {
    if (M < 1 || M > kMaxModalities) return 1;
    const int P = M + 2;
    for (int b = 0; b < B; ++b) {
        const float* mask_row = mask + (size_t)b * M;
        float acc = combine_init(combine);
        for (int m = 0; m < M; ++m) {
            const long long n = numel[m];
            const float sum = strided_sum_of_squares(inputs[m] + (size_t)b * n,
                                                     recons[m] + (size_t)b * n, n);
            const float value = sum / (float)n * mask_row[m];
            const float part = standardize_part(value, mean[m], std[m], mask_row[m]);
            if (raw != nullptr) raw[(size_t)b * P + m] = value;
            parts[(size_t)b * P + m] = part;
            acc = combine_step(acc, part * weight[m], mask_row[m], combine);
        }
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
            acc = combine_step(acc, part * weight[p], 1.0f, combine);
        }
        score[b] = acc;
    }
    return 0;
}
