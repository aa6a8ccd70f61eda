// preprocess: multi-camera uint8 HWC frames of any resolution -> bilinear resize
// (align_corners=False, half-pixel centres, no antialias), gray/RGB conversion, /255, T frames
// stacked per camera as channels, in one pass. Math and layouts: README.md next to this file.
// Reference: edgevae/kernels/reference.py (preprocess_ref).
//
// Launch: block (32, 8, 1); grid (ceil(W_out / 32), ceil(H_out / 8), min(F, 65535)) with
// F = B * n_cams * T frames; each thread writes all output channels of one pixel and loops over
// frames with a stride of gridDim.z.
#include "edgevae_math.cuh"

using namespace edgevae;

extern "C" __global__ void edgevae_preprocess_u8(
    const uint8_t* __restrict__ frames,  // (B, n_cams, T, H_in, W_in, C_in) contiguous
    float* __restrict__ out,             // camera k of sample b at out + b*out_sample_stride
                                         //   + k*out_camera_stride, laid out (T*C_out, H, W)
    int B, int n_cams, int T,
    int in_h, int in_w, int in_channels,
    int out_h, int out_w, int out_channels,
    int bgr,
    long long out_sample_stride,  // elements between samples in `out`
    long long out_camera_stride) {  // elements between cameras in `out`
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= out_h) return;
    const float scale_y = bilinear_scale(in_h, out_h);
    const float scale_x = bilinear_scale(in_w, out_w);
    const long long frame_bytes = (long long)in_h * in_w * in_channels;
    const long long plane = (long long)out_h * out_w;
    const long long n_frames = (long long)B * n_cams * T;
    for (long long f = blockIdx.z; f < n_frames; f += gridDim.z) {
        const int t = (int)(f % T);
        const long long cam_index = f / T;  // b * n_cams + k
        const int k = (int)(cam_index % n_cams);
        const long long b = cam_index / n_cams;
        float px[3];
        preprocess_pixel(frames + f * frame_bytes, in_h, in_w, in_channels, bgr, y, x, scale_y,
                         scale_x, out_channels, px);
        float* dst = out + b * out_sample_stride + k * out_camera_stride
                   + (long long)t * out_channels * plane + (long long)y * out_w + x;
#pragma unroll
        for (int c = 0; c < 3; ++c) {
            if (c < out_channels) dst[c * plane] = px[c];  // channel t*C + c
        }
    }
}
