// Host test harness of preprocess.cu: the kernel's pixel loop as serial CPU loops over the SAME
// per-pixel function (edgevae_math.cuh::preprocess_pixel). Loaded by edgevae/kernels/hostmath.py.
#include "edgevae_math.cuh"

using namespace edgevae;

extern "C" void ev_preprocess_host(const uint8_t* frames, float* out, int B, int n_cams, int T,
                                   int in_h, int in_w, int in_channels, int out_h, int out_w,
                                   int out_channels, int bgr, long long out_sample_stride,
                                   long long out_camera_stride) {
    const float scale_y = bilinear_scale(in_h, out_h);
    const float scale_x = bilinear_scale(in_w, out_w);
    const long long frame_bytes = (long long)in_h * in_w * in_channels;
    const long long plane = (long long)out_h * out_w;
    const long long n_frames = (long long)B * n_cams * T;
    for (long long f = 0; f < n_frames; ++f) {
        const int t = (int)(f % T);
        const long long cam_index = f / T;
        const int k = (int)(cam_index % n_cams);
        const long long b = cam_index / n_cams;
        for (int y = 0; y < out_h; ++y) {
            for (int x = 0; x < out_w; ++x) {
                float px[3];
                preprocess_pixel(frames + f * frame_bytes, in_h, in_w, in_channels, bgr, y, x,
                                 scale_y, scale_x, out_channels, px);
                float* dst = out + b * out_sample_stride + k * out_camera_stride
                           + (long long)t * out_channels * plane + (long long)y * out_w + x;
                for (int c = 0; c < out_channels; ++c) dst[c * plane] = px[c];
            }
        }
    }
}
