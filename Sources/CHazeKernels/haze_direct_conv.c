// Direct convolution for strided convolutions (the U-Net's 3×3 stride-2 downsamplers), AVX-512:
// y[b, o, i, j] = bias[o] + Σ_{c, di, dj} w[o, c, di, dj] · x[b, c, i·s − top + di, j·s − left + dj].
//
// Output channels run along the vector lanes and output pixels along registers: a block of P pixels
// × V vectors of 16 channels (6 × 4 or 8 × 2 accumulators) takes, per step of K = (c, di, dj), V
// loads of the packed weights w[k, o..o+16V) and P broadcasts of the input value under each pixel
// — read straight from a zero-padded copy of the images, so there is no column matrix (im2col) and
// no packing of it. The accumulators go to y [N, O, HO, WO] by scatter stores (a pixel's channels
// are HO·WO apart), bias added.

#include "haze_kernels.h"
#include "haze_avx512.h"
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

enum { LANES = 16, CHUNK = 64, DEPTH = 96 };

long haze_direct_packed_size(long o, long k) { return (o + CHUNK - 1) / CHUNK * CHUNK * k; }

void haze_direct_pack(const float *w, float *packed, long o, long k) {
    // packed[chunk][p][q] = w[chunk·64 + q, p] (zero past O): each step of K reads 64 consecutive floats.
    for (long o0 = 0; o0 < o; o0 += CHUNK)
        for (long p = 0; p < k; p++)
            for (long q = 0; q < CHUNK; q++)
                packed[o0 * k + p * CHUNK + q] = o0 + q < o ? w[(o0 + q) * k + p] : 0.0f;
}

long haze_direct_scratch_size(long images, long c, long kh, long kw, long stride, long ho, long wo) {
    // The padded images, then the partial sums of each pixel's 64 channels (rounded up to a block).
    return images * c * ((ho - 1) * stride + kh) * ((wo - 1) * stride + kw) + (images * ho * wo + 8) * CHUNK;
}

#if defined(__x86_64__) && defined(__clang__)

int haze_direct_conv_available(void) { return __builtin_cpu_supports("avx512f"); }

// Lanes l with lo ≤ l < hi.
static inline __mmask16 lanes_between(long lo, long hi) { return first_lanes(hi) & (__mmask16)~first_lanes(lo); }

// The images' planes with their zero borders, xp[b, c, HP, WP] with HP = (HO − 1)·s + KH (likewise
// WP; rows and columns of x past those are never read), by masked vector loads: 16 lanes at a time
// of x's row shifted by `left`, the lanes outside x masked to zero (masked-off lanes are not read).
static AVX512 void pad_images_avx512(const float *x, float *xp, long first_image, long images, long c, long h, long w,
                                     long top, long left, long hp, long wp) {
    for (long plane = 0; plane < images * c; plane++) {
        const float *src = x + (first_image * c + plane) * h * w;
        float *dst = xp + plane * hp * wp;
        for (long r = 0; r < hp; r++) {
            const long sr = r - top;
            const int inside = sr >= 0 && sr < h;
            for (long q0 = 0; q0 < wp; q0 += LANES) {
                const __mmask16 valid = inside ? lanes_between(left - q0, left + w - q0) : 0;
                _mm512_mask_storeu_ps(dst + r * wp + q0, lanes_between(0, wp - q0),
                                      _mm512_maskz_loadu_ps(valid, src + (inside ? sr * w : 0) + q0 - left));
            }
        }
    }
}

// One block: `pixels` (≤ P) output pixels whose input windows start at base[0..pixels) (the block is
// filled up with the last one), × V·16 output channels (masks), over steps [0, k) of K: steps[s] is
// the offset of step s from a window's start, w the packed weights of those steps [k, 64]. The sums
// start from zero or from the partial sums partial[p·64 ..] of the previous steps; they go back to
// `partial`, or, with `out`, to y by scatter stores (out[p]: the pixel's first channel, channels
// `plane` apart), bias added.
static inline __attribute__((always_inline)) AVX512 void
block(const int P, const int V, const float *const *base, long pixels, const int *steps, long k, const float *w,
      float *partial, int first, float *const *out, long plane, __mmask16 const *masks, const float *bias) {
    __m512 acc[8][4];
    const float *src[8];
    for (int p = 0; p < P; p++) {
        src[p] = base[p < pixels ? p : pixels - 1];
        for (int v = 0; v < V; v++) acc[p][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(partial + p * CHUNK + v * LANES);
    }
    for (long s = 0; s < k; s++) {
        const int step = steps[s];
        __m512 wv[4];
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) wv[v] = _mm512_loadu_ps(w + s * CHUNK + v * LANES);
        // Fully unrolled, so that the accumulators stay in registers whatever the optimizer's
        // thresholds (a rolled 14-pixel variant kept its sums on the stack: 2× slower).
#pragma clang loop unroll(full)
        for (int p = 0; p < P; p++) {
            const __m512 xv = _mm512_set1_ps(src[p][step]);
#pragma clang loop unroll(full)
            for (int v = 0; v < V; v++) acc[p][v] = _mm512_fmadd_ps(xv, wv[v], acc[p][v]);
        }
    }
    if (!out) {
        for (int p = 0; p < P; p++)
            for (int v = 0; v < V; v++) _mm512_storeu_ps(partial + p * CHUNK + v * LANES, acc[p][v]);
        return;
    }
    const __m512i lane = lane_offsets(plane);
    for (int p = 0; p < P; p++) {
        if (p >= pixels) break;
        for (int v = 0; v < V; v++) {
            const __m512 b = _mm512_maskz_loadu_ps(masks[v], bias + v * LANES);
            _mm512_mask_i32scatter_ps(out[p] + v * LANES * plane, masks[v], lane, _mm512_add_ps(acc[p][v], b), 4);
        }
    }
}

AVX512 void haze_conv_direct(const float *x, const float *packed, const float *bias, float *y, float *scratch,
                             long first_image, long images, long c, long h, long w, long o, long kh, long kw,
                             long stride, long top, long left, long ho, long wo) {
    const long hp = (ho - 1) * stride + kh, wp = (wo - 1) * stride + kw, plane = ho * wo, k = c * kh * kw;
    const long pixels = images * plane;
    float *padded = scratch, *partial = scratch + images * c * hp * wp;
    pad_images_avx512(x, padded, first_image, images, c, h, w, top, left, hp, wp);
    int steps[k];  // ≤ 46 KB for 1280 channels of 3 × 3
    for (long ci = 0; ci < c; ci++)
        for (long di = 0; di < kh; di++)
            for (long dj = 0; dj < kw; dj++) steps[(ci * kh + di) * kw + dj] = (ci * hp + di) * wp + dj;
    // Steps of K in blocks of whole channels, ~96 steps (24 KB of packed weights, which stay in L1
    // while every pixel block of the item passes over them).
    const long depth = (DEPTH + kh * kw - 1) / (kh * kw) * (kh * kw);
    float zeros[CHUNK] = {0};
    for (long o0 = 0; o0 < o; o0 += CHUNK) {
        const long width = o - o0 < CHUNK ? o - o0 : CHUNK;
        const int V = width > 2 * LANES ? 4 : 2;  // 6 × 4 or 8 × 2 accumulators
        const int P = V == 4 ? 6 : 8;
        __mmask16 masks[4];
        for (int v = 0; v < 4; v++) masks[v] = first_lanes(width - v * LANES);
        const float *biasChunk = bias ? bias + o0 : zeros;
        for (long s0 = 0; s0 < k; s0 += depth) {
            const long steps_here = k - s0 < depth ? k - s0 : depth;
            const int last = s0 + steps_here == k;
            const float *wk = packed + o0 * k + s0 * CHUNK;
            for (long q0 = 0; q0 < pixels; q0 += P) {
                const float *base[8];
                float *out[8];
                const long count = pixels - q0 < P ? pixels - q0 : P;
                for (long p = 0; p < count; p++) {
                    const long q = q0 + p, b = q / plane, r = q % plane, i = r / wo, j = r % wo;
                    base[p] = padded + b * c * hp * wp + i * stride * wp + j * stride;
                    out[p] = y + ((first_image + b) * o + o0) * plane + r;
                }
                if (V == 4)
                    block(6, 4, base, count, steps + s0, steps_here, wk, partial + q0 * CHUNK, s0 == 0,
                          last ? out : NULL, plane, masks, biasChunk);
                else
                    block(8, 2, base, count, steps + s0, steps_here, wk, partial + q0 * CHUNK, s0 == 0,
                          last ? out : NULL, plane, masks, biasChunk);
            }
        }
    }
}
#else
int haze_direct_conv_available(void) { return 0; }

// Callers use im2col + SGEMM where haze_direct_conv_available() is 0: never reached.
void haze_conv_direct(const float *x, const float *packed, const float *bias, float *y, float *scratch,
                      long first_image, long images, long c, long h, long w, long o, long kh, long kw,
                      long stride, long top, long left, long ho, long wo) {
    fputs("haze_conv_direct: no AVX-512 on this CPU (check haze_direct_conv_available())\n", stderr);
    abort();
}
#endif
