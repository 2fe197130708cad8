// Layer normalisation over the channels of NCHW planes (Keras' LayerNormalization on an NHWC
// tensor, as the TensorFlow notebook's attention ends), forward and backward, without moving
// channels last. x, y: [C, S] planes of one image, positions [first, first + count):
//   μ[s] = Σ_c x[c][s] / C,  σ²[s] = Σ_c (x[c][s] − μ[s])² / C,  r[s] = 1/√(σ²[s] + ε)
//   x̂ = (x − μ)·r,  y[c][s] = γ[c]·x̂[c][s] + β[c]
// backward, with g = ∂y:  ∂γ[c] += Σ_s g·x̂,  ∂β[c] += Σ_s g,
//   ∂x = r · (γg − mean_c(γg) − x̂ · mean_c(γg · x̂))
// Loops run along the contiguous positions, so every step is a vector operation.

#include "haze_kernels.h"
#include "haze_multiversion.h"
#include <math.h>

// (restrict: without it the compiler cannot rule out y overlapping μ and r, and ran the last loop
// one float at a time.)
MULTIVERSION void haze_channel_norm_forward(const float *restrict x, const float *restrict residual, float *restrict y,
                                            const float *restrict gamma, const float *restrict beta, long c, long s,
                                            long first, long count, float eps, float *restrict mean,
                                            float *restrict rstd) {
    float *mu = mean + first, *r = rstd + first;
    for (long j = 0; j < count; j++) mu[j] = 0, r[j] = 0;
    for (long ch = 0; ch < c; ch++)
        for (long j = 0; j < count; j++) mu[j] += x[ch * s + first + j];
    for (long j = 0; j < count; j++) mu[j] /= (float)c;
    for (long ch = 0; ch < c; ch++)
        for (long j = 0; j < count; j++) {
            const float d = x[ch * s + first + j] - mu[j];
            r[j] += d * d;
        }
    for (long j = 0; j < count; j++) r[j] = 1.0f / sqrtf(r[j] / (float)c + eps);
    for (long ch = 0; ch < c; ch++) {
        for (long j = 0; j < count; j++)
            y[ch * s + first + j] = (x[ch * s + first + j] - mu[j]) * r[j] * gamma[ch] + beta[ch];
        if (residual)  // the row is still in L1
            for (long j = 0; j < count; j++) y[ch * s + first + j] += residual[ch * s + first + j];
    }
}

// (restrict, and sums in any order: without them the first loop ran one float at a time.)
MULTIVERSION void haze_channel_norm_backward(const float *restrict x, const float *restrict g,
                                             const float *restrict gamma, const float *restrict mean,
                                             const float *restrict rstd, float *restrict dx, float *restrict dgamma,
                                             float *restrict dbeta, long c, long s, long first, long count,
                                             float *restrict scratch) {
#pragma clang fp reassociate(on)
    const float *mu = mean + first, *r = rstd + first;
    float *a = scratch, *b = scratch + count;  // mean_c(γg), mean_c(γg·x̂)
    for (long j = 0; j < count; j++) a[j] = 0, b[j] = 0;
    for (long ch = 0; ch < c; ch++) {
        const float *xs = x + ch * s + first, *gs = g + ch * s + first;
        float sg = 0, sgx = 0;
        for (long j = 0; j < count; j++) {
            const float xhat = (xs[j] - mu[j]) * r[j];
            sg += gs[j];
            sgx += gs[j] * xhat;
            a[j] += gamma[ch] * gs[j];
            b[j] += gamma[ch] * gs[j] * xhat;
        }
        dgamma[ch] += sgx;
        dbeta[ch] += sg;
    }
    for (long j = 0; j < count; j++) a[j] /= (float)c, b[j] /= (float)c;
    for (long ch = 0; ch < c; ch++) {
        const float *xs = x + ch * s + first, *gs = g + ch * s + first;
        float *d = dx + ch * s + first;
        for (long j = 0; j < count; j++) {
            const float xhat = (xs[j] - mu[j]) * r[j];
            d[j] = r[j] * (gamma[ch] * gs[j] - a[j] - xhat * b[j]);
        }
    }
}
