// Vectorised exp-based elementwise kernels (see include/haze_kernels.h), with exp_approx
// (haze_exp.h: Cody–Waite reduction and a degree-7 polynomial). The loops have no branches, so
// clang vectorises them; on x86-64 Linux each kernel is compiled for AVX-512, AVX2 and baseline,
// and the loader picks the best for the CPU.

#include "haze_kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "haze_multiversion.h"
#include "haze_plane_offsets.h"
#include "haze_exp.h"
#include "haze_im2col_avx512.h"

MULTIVERSION void haze_exp(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = exp_approx(x[i]);
}

MULTIVERSION void haze_sigmoid(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = 1.0f / (1.0f + exp_approx(-x[i]));
}

MULTIVERSION void haze_upsample_nearest2x(const float *x, float *y, long rows, long w) {
    for (long r = 0; r < rows; r++) {
        const float *src = x + r * w;
        float *top = y + r * 4 * w;
        for (long j = 0; j < w; j++) top[2 * j] = top[2 * j + 1] = src[j];  // an interleaving store, vectorised
        memcpy(top + 2 * w, top, 2 * (size_t)w * sizeof(float));
    }
}

MULTIVERSION void haze_silu(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = x[i] / (1.0f + exp_approx(-x[i]));
}

MULTIVERSION void haze_silu_backward(const float *x, const float *g, float *dx, long n) {
    for (long i = 0; i < n; i++) {
        const float s = 1.0f / (1.0f + exp_approx(-x[i]));
        dx[i] = g[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

MULTIVERSION float haze_sum(const float *x, long n) {
    float lanes[16] = {0};
    long i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) lanes[l] += x[i + l];
    float acc = 0;
    for (int l = 0; l < 16; l++) acc += lanes[l];
    for (; i < n; i++) acc += x[i];
    return acc;
}

MULTIVERSION double haze_sum_squares(const float *x, long n) {
    double lanes[8] = {0};
    long i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) lanes[l] += (double)x[i + l] * (double)x[i + l];
    double acc = 0;
    for (int l = 0; l < 8; l++) acc += lanes[l];
    for (; i < n; i++) acc += (double)x[i] * (double)x[i];
    return acc;
}

// The largest of x[0..<n]: 16 running maxima (one vector), then across them. (A single running
// maximum is a serial chain of compares that the compiler does not vectorise.)
static inline float row_max(const float *x, long n) {
    float lanes[16];
    for (int l = 0; l < 16; l++) lanes[l] = -INFINITY;
    long i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) lanes[l] = x[i + l] > lanes[l] ? x[i + l] : lanes[l];
    float m = -INFINITY;
    for (int l = 0; l < 16; l++) m = lanes[l] > m ? lanes[l] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

MULTIVERSION void haze_softmax_rows(const float *x, float *y, long rows, long d, int log_softmax) {
    // Each row is copied to y and then transformed in place: single-pointer loops vectorise
    // without alias checks (and x == y is allowed).
    for (long r = 0; r < rows; r++) {
        float *row = y + r * d;
        if (x != y) memcpy(row, x + r * d, (size_t)d * sizeof(float));
        float m = row_max(row, d);
        if (log_softmax) {
            float sum = 0;
            {
#pragma clang fp reassociate(on)
                for (long i = 0; i < d; i++) sum += exp_approx(row[i] - m);
            }
            const float shift = m + logf(sum);
            for (long i = 0; i < d; i++) row[i] -= shift;
        } else {
            for (long i = 0; i < d; i++) row[i] = exp_approx(row[i] - m);
            float sum = 0;
            {
#pragma clang fp reassociate(on)
                for (long i = 0; i < d; i++) sum += row[i];
            }
            const float inv = 1.0f / sum;
            for (long i = 0; i < d; i++) row[i] *= inv;
        }
    }
}

MULTIVERSION void haze_small_matmul(const float *a, const float *b, float *c, long m, long n, long k, float alpha) {
    // Blocks of 16 columns of C accumulate in a register across the whole k loop.
    enum { W = 16 };
    for (long i = 0; i < m; i++) {
        const float *ai = a + i * k;
        float *ci = c + i * n;
        long j0 = 0;
        for (; j0 + W <= n; j0 += W) {
            float acc[W] = {0};
            for (long p = 0; p < k; p++) {
                const float aip = ai[p];
                const float *bp = b + p * n + j0;
                for (int j = 0; j < W; j++) acc[j] += aip * bp[j];
            }
            for (int j = 0; j < W; j++) ci[j0 + j] = alpha * acc[j];
        }
        if (j0 + 8 <= n) {  // an 8-wide block (e.g. attention heads of width 8)
            float acc[8] = {0};
            for (long p = 0; p < k; p++) {
                const float aip = ai[p];
                const float *bp = b + p * n + j0;
                for (int j = 0; j < 8; j++) acc[j] += aip * bp[j];
            }
            for (int j = 0; j < 8; j++) ci[j0 + j] = alpha * acc[j];
            j0 += 8;
        }
        if (j0 < n) {
            const long w = n - j0;
            float acc[W] = {0};
            for (long p = 0; p < k; p++) {
                const float aip = ai[p];
                const float *bp = b + p * n + j0;
                for (long j = 0; j < w; j++) acc[j] += aip * bp[j];
            }
            for (long j = 0; j < w; j++) ci[j0 + j] = alpha * acc[j];
        }
    }
}

void haze_transpose(const float *x, float *y, long rows, long cols) {
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++) y[j * rows + i] = x[i * cols + j];
}

// y[j·ldy + i] = x[i·ldx + j] in 16 × 16 tiles: each tile's 16 source rows and 16 destination rows
// stay in L1, where the element-by-element loop of a large transpose touches a new cache line (and
// often a new page) with every element.
MULTIVERSION void haze_transpose_tiled(const float *x, long ldx, float *y, long ldy, long rows, long cols) {
    enum { T = 16 };
    for (long i0 = 0; i0 < rows; i0 += T) {
        const long ie = i0 + T < rows ? i0 + T : rows;
        for (long j0 = 0; j0 < cols; j0 += T) {
            const long je = j0 + T < cols ? j0 + T : cols;
            if (ie - i0 == T && je - j0 == T) {
#ifdef HAZE_AVX512
                if (has_avx512()) {
                    transpose16(x + i0 * ldx + j0, ldx, y + j0 * ldy + i0, ldy);
                    continue;
                }
#endif
                float tile[T][T];
                for (long i = 0; i < T; i++)
                    for (long j = 0; j < T; j++) tile[j][i] = x[(i0 + i) * ldx + j0 + j];
                for (long j = 0; j < T; j++)
                    for (long i = 0; i < T; i++) y[(j0 + j) * ldy + i0 + i] = tile[j][i];
            } else {
                for (long i = i0; i < ie; i++)
                    for (long j = j0; j < je; j++) y[j * ldy + i] = x[i * ldx + j];
            }
        }
    }
}

// Mean and rstd = 1/√(σ² + ε) of group q's m values (two passes, partial sums in float, totals in
// double), and each channel's affine transform of the normalised values: x̂·γ + β = x·scale + shift
// with scale = γ·rstd, shift = β − μ·scale. Shared by the forward and haze_group_norm_affine, so both
// give the same bits.
static inline __attribute__((always_inline)) void group_moments(const float *src, long m, float eps, float *mean,
                                                                 float *rstd) {
#pragma clang fp reassociate(on)
    float sum = 0;
    for (long i = 0; i < m; i++) sum += src[i];
    *mean = (float)((double)sum / (double)m);
    float squares = 0;
    for (long i = 0; i < m; i++) { const float d = src[i] - *mean; squares += d * d; }
    *rstd = 1.0f / sqrtf((float)((double)squares / (double)m) + eps);
}

static inline __attribute__((always_inline)) void channel_affine(const float *gamma, const float *beta, long affine,
                                                                  float mean, float rstd, float *scale, float *shift) {
    *scale = (gamma ? gamma[affine] : 1.0f) * rstd;
    *shift = (beta ? beta[affine] : 0.0f) - mean * *scale;
}

// Group normalisation over groups [first, first + count) of x: [N·G, C/G, S] (see the header).
MULTIVERSION void haze_group_norm_forward(const float *x, const float *residual, float *y, const float *gamma,
                                          const float *beta, long affine_stride, long first, long count, long groups,
                                          long per_group, long spatial, float eps, int silu, float *mean_out,
                                          float *rstd_out) {
    const long m = per_group * spatial;
    for (long q = first; q < first + count; q++) {
        const float *src = x + q * m;
        float *dst = y + q * m;
        float mean, rstd;
        group_moments(src, m, eps, &mean, &rstd);
        mean_out[q] = mean;
        rstd_out[q] = rstd;
        for (long c = 0; c < per_group; c++) {
            const long channel = (q % groups) * per_group + c;
            float scale, shift;
            channel_affine(gamma, beta, (q / groups) * affine_stride + channel, mean, rstd, &scale, &shift);
            const float *s = src + c * spatial;
            float *d = dst + c * spatial;
            if (silu) {
                for (long i = 0; i < spatial; i++) {
                    const float pre = s[i] * scale + shift;
                    d[i] = pre / (1.0f + exp_approx(-pre));
                }
            } else {
                for (long i = 0; i < spatial; i++) d[i] = s[i] * scale + shift;
            }
            if (residual) {  // the channel's plane is still in L1
                const float *r = residual + q * m + c * spatial;
                for (long i = 0; i < spatial; i++) d[i] += r[i];
            }
        }
    }
}

MULTIVERSION void haze_group_norm_affine(const float *x, const float *second, long first_channels, const float *gamma,
                                         const float *beta, long affine_stride, long first, long count, long groups,
                                         long per_group, long spatial, float eps, float *scale_out, float *shift_out) {
    const long m = per_group * spatial, channels = groups * per_group, split = second ? first_channels : channels;
    float *joined = NULL;  // a group that straddles x and second, in one piece: the same sums as in the concatenation
    for (long q = first; q < first + count; q++) {
        const long image = q / groups, group = q % groups, c0 = group * per_group;
        const float *src;
        if (c0 + per_group <= split) {
            src = x + (image * split + c0) * spatial;
        } else if (c0 >= split) {
            src = second + (image * (channels - split) + c0 - split) * spatial;
        } else {
            if (!joined) joined = malloc((size_t)m * sizeof(float));
            memcpy(joined, x + (image * split + c0) * spatial, (size_t)((split - c0) * spatial) * sizeof(float));
            memcpy(joined + (split - c0) * spatial, second + image * (channels - split) * spatial,
                   (size_t)((c0 + per_group - split) * spatial) * sizeof(float));
            src = joined;
        }
        float mean, rstd;
        group_moments(src, m, eps, &mean, &rstd);
        for (long c = 0; c < per_group; c++) {
            const long channel = group * per_group + c, at = image * groups * per_group + channel;
            channel_affine(gamma, beta, image * affine_stride + channel, mean, rstd, scale_out + at, shift_out + at);
        }
    }
    free(joined);
}

MULTIVERSION void haze_group_norm_backward(const float *x, const float *g, const float *gamma,
                                           const float *mean, const float *rstd, float *dx,
                                           float *dgamma_parts, float *dbeta_parts,
                                           const float *beta, int silu, long affine_stride,
                                           long first, long count, long groups, long per_group, long spatial) {
#pragma clang fp reassociate(on)
    const long m = per_group * spatial, channels = groups * per_group;
    for (long q = first; q < first + count; q++) {
        const float mu = mean[q], r = rstd[q];
        const float *xs = x + q * m, *gs = g + q * m;
        float *dxs = dx + q * m;
        float sum_g = 0, sum_gx = 0;
        for (long c = 0; c < per_group; c++) {
            const long channel = (q % groups) * per_group + c, affine = (q / groups) * affine_stride + channel;
            const float gm = gamma ? gamma[affine] : 1.0f;
            const float *xc = xs + c * spatial, *gc = gs + c * spatial;
            if (silu) {
                // g is the gradient of SiLU(y): the gradient of y (recomputed as in the forward pass)
                // goes to dx, read back below.
                const float scale = gm * r, shift = (beta ? beta[affine] : 0.0f) - mu * scale;
                float *gy = dxs + c * spatial;
                for (long i = 0; i < spatial; i++) {
                    const float pre = xc[i] * scale + shift, sg = 1.0f / (1.0f + exp_approx(-pre));
                    gy[i] = gc[i] * sg * (1.0f + pre * (1.0f - sg));
                }
                gc = gy;
            }
            float a = 0, b = 0;
            for (long i = 0; i < spatial; i++) { a += gc[i] * ((xc[i] - mu) * r); b += gc[i]; }
            dgamma_parts[(q / groups) * channels + channel] = a;
            dbeta_parts[(q / groups) * channels + channel] = b;
            sum_gx += gm * a;
            sum_g += gm * b;
        }
        const float mean_g = sum_g / (float)m, mean_gx = sum_gx / (float)m;
        for (long c = 0; c < per_group; c++) {
            const long channel = (q % groups) * per_group + c, affine = (q / groups) * affine_stride + channel;
            const float gm = gamma ? gamma[affine] : 1.0f;
            float *d = dxs + c * spatial;
            const float *xc = xs + c * spatial, *gc = gs + c * spatial;
            // With SiLU the gradient of y is in d already. Two loops, so that the compiler sees d read
            // and written in place: through a second pointer equal to d, its overlap check sent the
            // loop down the one-float-at-a-time path.
            if (silu)
                for (long i = 0; i < spatial; i++) d[i] = r * (d[i] * gm - mean_g - (xc[i] - mu) * r * mean_gx);
            else
                for (long i = 0; i < spatial; i++) d[i] = r * (gc[i] * gm - mean_g - (xc[i] - mu) * r * mean_gx);
        }
    }
}

// Output columns ox whose input column ox*s - left + j lies inside [0, w): [*lo, *hi).
static inline void valid_columns(long j, long w, long wo, long stride, long left, long *lo, long *hi) {
    long l = (left - j + stride - 1) / stride;
    if (l < 0) l = 0;
    const long last = w - 1 + left - j;
    long h = last < 0 ? 0 : last / stride + 1;
    if (h > wo) h = wo;
    *lo = l;
    *hi = h < l ? l : h;
}

// Narrow outputs (fewer than 16 columns, e.g. the 7×7 and 14×14 planes of a U-Net's lower
// levels): the row loops below would run a few iterations each. Instead each kernel offset (i, j)
// gets a table of input offsets for the whole output plane (haze_plane_offsets.h), and the plane
// is moved as one vector loop.
static inline int narrow_output(long wo) { return wo < 16; }

static int *offset_tables(long h, long w, long kh, long kw, long stride, long top, long left, long ho, long wo) {
    int *at = malloc(sizeof(int) * (size_t)(kh * kw * ho * wo));
    plane_offsets(at, ho * wo, h, w, kh, kw, stride, top, left, ho, wo);
    return at;
}

int haze_permutes_enabled = 1;
void haze_avx512_permutes(int enabled) { haze_permutes_enabled = enabled; }

MULTIVERSION void haze_im2col(const float *x, float *cols, long first_image, long images, long c, long h, long w,
                              long kh, long kw, long stride, long top, long left, long ho, long wo) {
#ifdef HAZE_AVX512
    if (has_avx512() && im2col_avx512_applies(w, wo, kw))
        return im2col_avx512(x, cols, first_image, images, c, h, w, kh, kw, stride, top, left, ho, wo);
#endif
    const long p = ho * wo, ld = images * p, k = c * kh * kw;
    if (narrow_output(wo)) {
        int *at = offset_tables(h, w, kh, kw, stride, top, left, ho, wo);
        for (long row = 0; row < k; row++) {
            const int *restrict offsets = at + (row % (kh * kw)) * p;
            for (long b = 0; b < images; b++) {
                const float *restrict plane = x + ((first_image + b) * c + row / (kh * kw)) * h * w;
                float *restrict dst = cols + row * ld + b * p;
                // Every lane reads a pixel inside the plane (the padding's lanes read pixel 0 and
                // drop it), and the tail is scalar: no masked gather or predicated access whose
                // masked-off lanes an emulator might still touch (a qemu AVX2 run faulted here).
#pragma clang loop vectorize(assume_safety) vectorize_width(16)
                for (long q = 0; q < p; q++) {
                    const int at_q = offsets[q];
                    const float v = plane[at_q >= 0 ? at_q : 0];
                    dst[q] = at_q >= 0 ? v : 0.0f;
                }
            }
        }
        free(at);
        return;
    }
    for (long row = 0; row < k; row++) {
        const long ci = row / (kh * kw), i = (row / kw) % kh, j = row % kw;
        long lo, hi;
        valid_columns(j, w, wo, stride, left, &lo, &hi);
        for (long b = 0; b < images; b++) {
            const float *plane = x + ((first_image + b) * c + ci) * h * w;
            for (long oy = 0; oy < ho; oy++) {
                float *dst = cols + row * ld + b * p + oy * wo;
                const long y = oy * stride - top + i;
                if (y < 0 || y >= h || lo >= hi) {
                    for (long ox = 0; ox < wo; ox++) dst[ox] = 0;
                    continue;
                }
                const float *src = plane + y * w - left + j;
                for (long ox = 0; ox < lo; ox++) dst[ox] = 0;
                if (stride == 1) {
                    for (long ox = lo; ox < hi; ox++) dst[ox] = src[ox];
                } else {
                    for (long ox = lo; ox < hi; ox++) dst[ox] = src[ox * stride];
                }
                for (long ox = hi; ox < wo; ox++) dst[ox] = 0;
            }
        }
    }
}

MULTIVERSION void haze_col2im(const float *cols, float *dx, long first_image, long images, long c, long h, long w,
                              long kh, long kw, long stride, long top, long left, long ho, long wo) {
#ifdef HAZE_AVX512
    if (has_avx512() && im2col_avx512_applies(w, wo, kw))
        return col2im_avx512(cols, dx, first_image, images, c, h, w, kh, kw, stride, top, left, ho, wo);
#endif
    const long p = ho * wo, ld = images * p;
    if (narrow_output(wo)) {
        int *at = offset_tables(h, w, kh, kw, stride, top, left, ho, wo);
        for (long bc = 0; bc < images * c; bc++) {
            const long b = bc / c, ci = bc % c;
            float *restrict plane = dx + ((first_image + b) * c + ci) * h * w;
            for (long q = 0; q < h * w; q++) plane[q] = 0;
            for (long ij = 0; ij < kh * kw; ij++) {
                const int *restrict offsets = at + ij * p;
                const float *restrict src = cols + (ci * kh * kw + ij) * ld + b * p;
                // For one (i, j) the outputs read distinct pixels: no two lanes add to the same place.
                // No predicated tail (see haze_im2col: an emulator faulted on masked-off lanes).
#pragma clang loop vectorize(assume_safety) vectorize_width(16)
                for (long q = 0; q < p; q++)
                    if (offsets[q] >= 0) plane[offsets[q]] += src[q];
            }
        }
        free(at);
        return;
    }
    for (long bc = 0; bc < images * c; bc++) {
        const long b = bc / c, ci = bc % c;
        float *plane = dx + ((first_image + b) * c + ci) * h * w;
        for (long q = 0; q < h * w; q++) plane[q] = 0;
        for (long i = 0; i < kh; i++) {
            for (long j = 0; j < kw; j++) {
                long lo, hi;
                valid_columns(j, w, wo, stride, left, &lo, &hi);
                const float *src = cols + ((ci * kh + i) * kw + j) * ld + b * p;
                for (long oy = 0; oy < ho; oy++) {
                    const long y = oy * stride - top + i;
                    if (y < 0 || y >= h) continue;
                    const float *row = src + oy * wo;
                    float *dst = plane + y * w - left + j;
                    if (stride == 1) {
                        for (long ox = lo; ox < hi; ox++) dst[ox] += row[ox];
                    } else {
                        for (long ox = lo; ox < hi; ox++) dst[ox * stride] += row[ox];
                    }
                }
            }
        }
    }
}
