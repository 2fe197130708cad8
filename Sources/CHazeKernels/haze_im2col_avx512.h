// im2col and col2im with AVX-512 permutes for inputs at most 32 wide and outputs at most 16 wide
// (the stride-2 downsamplers of a U-Net: 28×28 → 14×14, 14×14 → 7×7). Included by haze_kernels.c
// (layouts there); used where has_avx512() says so.
// - im2col: an output row of column-matrix row (c, i, j) is input row y = oy·s − top + i, columns
//   s·ox + j − left: one permute of the input row held in two registers, its padding lanes zeroed
//   by the mask, stored masked to the wo outputs. The portable narrow path gathers every pixel.
// - col2im: an input row y collects, for every (i, j) whose window rows land on it, the output row
//   oy = (y + top − i) / s of column-matrix row (c, i, j), spread to columns s·ox + j − left by a
//   one-register permute (the inverse selection); the sum is added in (i, j) order, as the
//   portable loops add, and the row is stored once.
#ifndef HAZE_IM2COL_AVX512_H
#define HAZE_IM2COL_AVX512_H

#include "haze_avx512.h"
#ifdef HAZE_AVX512

enum { MAX_KERNEL = 8 };
static inline int im2col_avx512_applies(long w, long wo, long kw) { return w <= 32 && wo <= 16 && kw <= MAX_KERNEL; }

static AVX512 void im2col_avx512(const float *x, float *cols, long first_image, long images, long c, long h, long w,
                                 long kh, long kw, long stride, long top, long left, long ho, long wo) {
    const long p = ho * wo, ld = images * p;
    selection columns[MAX_KERNEL];
    column_selections(columns, (int)kw, stride, -left, w, wo);
    const __mmask16 outputs = plane_mask(wo, 0);
    for (long ci = 0; ci < c; ci++)
        for (long b = 0; b < images; b++) {
            const float *plane = x + ((first_image + b) * c + ci) * h * w;
            float *dst = cols + ci * kh * kw * ld + b * p;
            for (long oy = 0; oy < ho; oy++)
                for (long i = 0; i < kh; i++) {
                    __m512 lo, hi;
                    load_row(plane, oy * stride - top + i, h, w, &lo, &hi);
                    for (long j = 0; j < kw; j++)
                        _mm512_mask_storeu_ps(dst + (i * kw + j) * ld + oy * wo, outputs,
                                              _mm512_maskz_permutex2var_ps(columns[j].low, lo, columns[j].index, hi));
                }
        }
}

static AVX512 void col2im_avx512(const float *cols, float *dx, long first_image, long images, long c, long h, long w,
                                 long kh, long kw, long stride, long top, long left, long ho, long wo) {
    const long p = ho * wo, ld = images * p;
    // spread[j][half]: input column q = 16 · half + lane takes output ox with s·ox + j − left = q.
    selection spread[MAX_KERNEL][2];
    for (long j = 0; j < kw; j++)
        for (int half = 0; half < 2; half++) {
            int source[16];
            for (long lane = 0; lane < 16; lane++) {
                const long t = 16 * half + lane + left - j;
                source[lane] = 16 * half + lane < w && t >= 0 && t % stride == 0 && t / stride < wo ? (int)(t / stride) : -1;
            }
            spread[j][half] = make_selection(source, 16);
        }
    const __mmask16 outputs = plane_mask(wo, 0), low_columns = plane_mask(w, 0), high_columns = plane_mask(w, 1);
    for (long ci = 0; ci < c; ci++)
        for (long b = 0; b < images; b++) {
            float *plane = dx + ((first_image + b) * c + ci) * h * w;
            const float *src = cols + ci * kh * kw * ld + b * p;
            for (long y = 0; y < h; y++) {
                __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
                for (long i = 0; i < kh; i++) {
                    const long t = y + top - i;
                    if (t < 0 || t % stride != 0 || t / stride >= ho) continue;
                    for (long j = 0; j < kw; j++) {
                        const __m512 row = _mm512_maskz_loadu_ps(outputs, src + (i * kw + j) * ld + (t / stride) * wo);
                        lo = _mm512_add_ps(lo, _mm512_maskz_permutexvar_ps(spread[j][0].low, spread[j][0].index, row));
                        hi = _mm512_add_ps(hi, _mm512_maskz_permutexvar_ps(spread[j][1].low, spread[j][1].index, row));
                    }
                }
                _mm512_mask_storeu_ps(plane + y * w, low_columns, lo);
                _mm512_mask_storeu_ps(plane + y * w + 16, high_columns, hi);
            }
        }
}

#endif
#endif
