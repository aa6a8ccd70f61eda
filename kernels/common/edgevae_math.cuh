// edgevae per-element math, shared by the CUDA kernels and the host (CPU) test harnesses.
//
// Every function here is EDGEVAE_HD: `__host__ __device__` under nvcc, plain `inline` under a
// C++ compiler (g++/clang++), so the exact same source runs in the kernels and in the host-math
// unit tests (edgevae/kernels/hostmath.py). The contract math is defined by the Python
// references edgevae/model/fusion.py and edgevae/model/scoring.py; keep them in step.
//
// Only float32 arithmetic; no fast-math intrinsics (expf/logf are the IEEE-accurate versions).
#pragma once

#if defined(__CUDACC__)
#define EDGEVAE_HD __host__ __device__ __forceinline__
#else
#define EDGEVAE_HD inline
#endif

#include <math.h>
#include <stdint.h>

namespace edgevae {

// ---------------------------------------------------------------- constants (DESIGN §4)
constexpr float kLogvarMin = -8.0f;
constexpr float kLogvarMax = 8.0f;
// ITU-R BT.601 luma weights (applied to R, G, B in that order).
constexpr float kLumaR = 0.299f;
constexpr float kLumaG = 0.587f;
constexpr float kLumaB = 0.114f;
constexpr int kMaxModalities = 16;  // anomaly_score: modalities per launch (kernel param size)

// ---------------------------------------------------------------- fusion
// clamp that propagates NaN like torch.clamp (both comparisons are false for NaN).
EDGEVAE_HD float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

EDGEVAE_HD float clamp_logvar(float logvar) { return clampf(logvar, kLogvarMin, kLogvarMax); }

// Precision of one expert: mask * exp(-clamp(logvar)); 0 for an absent expert (mask 0).
EDGEVAE_HD float expert_precision(float mask, float logvar) {
    return mask * expf(-clamp_logvar(logvar));
}

// Running sums over the experts of one latent dimension. The prior expert's precision 1 is
// added at the end (poe_total), in the same order as the reference `1 + prec.sum(dim=1)`.
struct PoeSums {
    float prec;      // sum_m prec_m
    float weighted;  // sum_m prec_m * mu_m
};

EDGEVAE_HD PoeSums poe_init() { return PoeSums{0.0f, 0.0f}; }

EDGEVAE_HD void poe_accumulate(PoeSums& s, float prec, float mu) {
    s.prec += prec;
    s.weighted += prec * mu;
}

EDGEVAE_HD float poe_total(const PoeSums& s) { return 1.0f + s.prec; }  // P, always >= 1

// Fused mean and log-variance from P and sum prec*mu. An all-masked row gives mu 0, logvar 0.
EDGEVAE_HD float poe_mu(float total, float weighted) { return weighted / total; }
EDGEVAE_HD float poe_logvar(float total) { return -logf(total); }

// z = mu + exp(logvar / 2) * eps.
EDGEVAE_HD float reparameterize(float mu, float logvar, float eps) {
    return mu + expf(0.5f * logvar) * eps;
}

// One latent dimension's term of KL(N(mu, exp(logvar)) || N(0, 1)).
EDGEVAE_HD float kl_prior_term(float mu, float logvar) {
    return 0.5f * (mu * mu + expf(logvar) - 1.0f - logvar);
}

// One latent dimension's term of KL(q_m || PoE of the other present experts and the prior):
//   p_rest  = P - prec_m,  mu_rest = (W - prec_m * mu_m) / p_rest
//   term    = 0.5 * (-log p_rest - lv_m + (exp(lv_m) + (mu_m - mu_rest)^2) * p_rest - 1)
// `logvar` is the raw expert log-variance (clamped here); the caller multiplies the sum over
// dimensions by mask_m, as the reference does.
EDGEVAE_HD float cross_modal_term(float total, float weighted, float prec, float mu,
                                  float logvar) {
    const float lv = clamp_logvar(logvar);
    const float p_rest = total - prec;
    const float mu_rest = (weighted - prec * mu) / p_rest;
    const float diff = mu - mu_rest;
    const float spread = expf(lv) + diff * diff;
    return 0.5f * (-logf(p_rest) - lv + spread * p_rest - 1.0f);
}

// ---------------------------------------------------------------- scoring
EDGEVAE_HD float squared_error(float x, float r) {
    const float d = x - r;
    return d * d;
}

// Standardised score part: (raw - mean) / std, times keep (0 for a missing modality's recon).
EDGEVAE_HD float standardize_part(float raw, float mean, float std, float keep) {
    return (raw - mean) / std * keep;
}

// Mean of the per-expert cross-modal KLs over the present experts (at least 1 in the divisor).
EDGEVAE_HD float cross_modal_mean(float cross_sum, float n_present) {
    return cross_sum / (n_present < 1.0f ? 1.0f : n_present);
}

// Combined score (edgevae/model/score_rules.py): kCombineSum adds every weighted part;
// kCombineMax keeps the largest weighted part among those that count (keep = 1). kMaxExcluded is
// the finite "minus infinity" of the exported graphs, so all backends agree even with no part.
constexpr int kCombineSum = 0;
constexpr int kCombineMax = 1;
constexpr float kMaxExcluded = -1.0e4f;

EDGEVAE_HD float combine_init(int combine) {
    return combine == kCombineMax ? kMaxExcluded : 0.0f;
}

EDGEVAE_HD float combine_step(float acc, float weighted_part, float keep, int combine) {
    if (combine != kCombineMax) return acc + weighted_part;
    return (keep > 0.0f && weighted_part > acc) ? weighted_part : acc;
}

// ---------------------------------------------------------------- preprocess
// Bilinear source taps for one output coordinate, exactly as
// torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False):
//   scale = in / out (float), src = max(scale * (dst + 0.5) - 0.5, 0)
//   i0 = min(floor(src), in - 1), i1 = i0 + (i0 < in - 1), w1 = clamp(src - i0, 0, 1), w0 = 1 - w1
struct BilinearTap {
    int i0;
    int i1;
    float w0;
    float w1;
};

EDGEVAE_HD float bilinear_scale(int in_size, int out_size) {
    return (float)in_size / (float)out_size;
}

EDGEVAE_HD BilinearTap bilinear_tap(int dst, float scale, int in_size) {
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    src = src < 0.0f ? 0.0f : src;
    int i0 = (int)floorf(src);
    i0 = i0 < in_size - 1 ? i0 : in_size - 1;
    const float w1 = clampf(src - (float)i0, 0.0f, 1.0f);
    BilinearTap t;
    t.i0 = i0;
    t.i1 = i0 + (i0 < in_size - 1 ? 1 : 0);
    t.w0 = 1.0f - w1;
    t.w1 = w1;
    return t;
}

// Interpolate one channel of an HWC uint8 frame; rows first, like PyTorch's CPU kernel:
//   (p[y0,x0] * wx0 + p[y0,x1] * wx1) * wy0 + (p[y1,x0] * wx0 + p[y1,x1] * wx1) * wy1
// Result in [0, 255] units.
EDGEVAE_HD float bilinear_sample_u8(const uint8_t* frame, int width, int channels, int c,
                                    const BilinearTap& ty, const BilinearTap& tx) {
    const uint8_t* row0 = frame + (int64_t)ty.i0 * width * channels;
    const uint8_t* row1 = frame + (int64_t)ty.i1 * width * channels;
    const float p00 = (float)row0[tx.i0 * channels + c];
    const float p01 = (float)row0[tx.i1 * channels + c];
    const float p10 = (float)row1[tx.i0 * channels + c];
    const float p11 = (float)row1[tx.i1 * channels + c];
    return (p00 * tx.w0 + p01 * tx.w1) * ty.w0 + (p10 * tx.w0 + p11 * tx.w1) * ty.w1;
}

EDGEVAE_HD float luma(float r, float g, float b) { return kLumaR * r + kLumaG * g + kLumaB * b; }

// [0, 255] -> [0, 1], as edgevae.data.transforms.Normalizer: x * float32(1 / 255).
constexpr float kInv255 = 1.0f / 255.0f;
EDGEVAE_HD float normalize_u8(float value) { return value * kInv255; }

// One output pixel of one frame: bilinear resize, colour conversion, * (1/255).
//   in_channels 1 (gray), 3 (RGB, or BGR when bgr != 0) or 4 (RGBA/BGRA, alpha ignored);
//   out_channels 1 (gray: BT.601 luma of the colour input, or the gray input itself)
//   or 3 (RGB: the colour input in RGB order, or the gray input replicated).
// Always writes out[0..3) (so `out` stays in registers); the first out_channels are the pixel,
// in [0, 1].
EDGEVAE_HD void preprocess_pixel(const uint8_t* frame, int in_h, int in_w, int in_channels,
                                 int bgr, int y, int x, float scale_y, float scale_x,
                                 int out_channels, float* out) {
    const BilinearTap ty = bilinear_tap(y, scale_y, in_h);
    const BilinearTap tx = bilinear_tap(x, scale_x, in_w);
    if (in_channels == 1) {
        const float g = normalize_u8(bilinear_sample_u8(frame, in_w, 1, 0, ty, tx));
        out[0] = g;
        out[1] = g;
        out[2] = g;
        return;
    }
    const int ri = bgr ? 2 : 0;
    const int bi = bgr ? 0 : 2;
    const float r = bilinear_sample_u8(frame, in_w, in_channels, ri, ty, tx);
    const float g = bilinear_sample_u8(frame, in_w, in_channels, 1, ty, tx);
    const float b = bilinear_sample_u8(frame, in_w, in_channels, bi, ty, tx);
    if (out_channels == 1) {
        out[0] = normalize_u8(luma(r, g, b));
        out[1] = out[0];
        out[2] = out[0];
    } else {
        out[0] = normalize_u8(r);
        out[1] = normalize_u8(g);
        out[2] = normalize_u8(b);
    }
}

}  // namespace edgevae
