// Host (CPU) build of the per-element math in edgevae_math.cuh, exported with C linkage so
// edgevae/kernels/hostmath.py can load it with ctypes and unit-test the SAME functions the
// kernels use against the NumPy references. Each export applies one function over arrays.
// Build: g++ -std=c++17 -O2 -fPIC -shared -ffp-contract=off -I kernels/common ... (hostmath.py).
#include <stdint.h>

#include "edgevae_math.cuh"

using namespace edgevae;

// Bumped whenever an exported signature changes; hostmath.py refuses a mismatched library.
#define EDGEVAE_HOSTMATH_ABI 2

extern "C" {

int ev_hostmath_abi(void) { return EDGEVAE_HOSTMATH_ABI; }
int ev_max_modalities(void) { return kMaxModalities; }

void ev_clamp_logvar(const float* x, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = clamp_logvar(x[i]);
}

void ev_expert_precision(const float* mask, const float* logvar, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = expert_precision(mask[i], logvar[i]);
}

// PoE over M experts for n independent dimensions: prec/mu are (M, n); outputs are (n,).
void ev_poe_combine(const float* prec, const float* mu, int64_t M, int64_t n, float* total,
                    float* weighted, float* fused_mu, float* fused_logvar) {
    for (int64_t i = 0; i < n; ++i) {
        PoeSums s = poe_init();
        for (int64_t m = 0; m < M; ++m) poe_accumulate(s, prec[m * n + i], mu[m * n + i]);
        total[i] = poe_total(s);
        weighted[i] = s.weighted;
        fused_mu[i] = poe_mu(total[i], s.weighted);
        fused_logvar[i] = poe_logvar(total[i]);
    }
}

void ev_reparameterize(const float* mu, const float* logvar, const float* eps, float* out,
                       int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = reparameterize(mu[i], logvar[i], eps[i]);
}

void ev_kl_prior_term(const float* mu, const float* logvar, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = kl_prior_term(mu[i], logvar[i]);
}

void ev_cross_modal_term(const float* total, const float* weighted, const float* prec,
                         const float* mu, const float* logvar, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        out[i] = cross_modal_term(total[i], weighted[i], prec[i], mu[i], logvar[i]);
    }
}

void ev_squared_error(const float* x, const float* r, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = squared_error(x[i], r[i]);
}

void ev_standardize_part(const float* raw, const float* mean, const float* std,
                         const float* keep, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = standardize_part(raw[i], mean[i], std[i], keep[i]);
}

void ev_cross_modal_mean(const float* cross_sum, const float* n_present, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = cross_modal_mean(cross_sum[i], n_present[i]);
}

// Taps for every output coordinate 0..out_size-1.
void ev_bilinear_taps(int in_size, int out_size, int32_t* i0, int32_t* i1, float* w0,
                      float* w1) {
    const float scale = bilinear_scale(in_size, out_size);
    for (int d = 0; d < out_size; ++d) {
        const BilinearTap t = bilinear_tap(d, scale, in_size);
        i0[d] = t.i0;
        i1[d] = t.i1;
        w0[d] = t.w0;
        w1[d] = t.w1;
    }
}

void ev_luma(const float* r, const float* g, const float* b, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = luma(r[i], g[i], b[i]);
}

}  // extern "C"
