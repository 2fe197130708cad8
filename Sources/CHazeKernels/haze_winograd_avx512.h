// Winograd F(2×2, 3×3) transforms with AVX-512 permutes, one tile per vector lane. Included by
// haze_winograd.c (the formulas and layouts are described there); used when `has_avx512()`
// says the CPU has AVX-512.
// - Small planes (h·w ≤ 64, at most 16 tiles: 7×7, 8×8 and smaller): the whole plane fits in four
//   registers; pixel k of the 16 tiles is picked out of them by two two-source permutes and a
//   blend, the padding lanes zeroed by the masks — a few dozen instructions per plane where the 16
//   gathers of the portable path cost ~20 cycles per pixel. The outputs go back the same way: each
//   16-pixel register of an output plane is permuted out of the four result registers.
// - Planes at most 32 wide (14×14, 16×16, 28×28, 32×32): one tile row per vector; each image row
//   is two registers and column 2tx + j − 1 of the tiles is one permute of them, the padding
//   columns zeroed by its mask. No padded copy of the plane, no stride-2 shuffles, and the stores
//   are masked to the row's tiles. Output rows are interleaved back by permutes too.
// The input transforms read x through a group norm and SiLU where `activation` has a scale (each
// pixel once per tile row pair: a tile row's first two rows are the last two of the row above),
// and the output transforms add `terms` (haze_output_terms), as the F(4×4) kernels do.
#ifndef HAZE_WINOGRAD_AVX512_H
#define HAZE_WINOGRAD_AVX512_H

#include "haze_avx512.h"
#ifdef HAZE_AVX512
#define HAZE_X16_TARGET AVX512
#endif
#include "haze_exp.h"
#ifdef HAZE_AVX512

// v through `activation` for plane `at` (image · C + channel) where it has a scale, zero outside `lanes`.
static inline AVX512 __m512 activated(__m512 v, haze_input_activation activation, long at, __mmask16 lanes) {
    if (!activation.scale) return v;
    return _mm512_maskz_mov_ps(lanes, (__m512)silu_affine_x16((haze_x16)v, activation.scale[at], activation.shift[at]));
}

// value + terms.shifts[at] + terms.residual[offset…] (haze_output_terms; the bias is in value
// already), each where it is given: the value of plane `at` that goes to y + offset.
static inline AVX512 __m512 add_terms(__m512 value, haze_output_terms terms, long at, long offset, __mmask16 lanes) {
    if (terms.shifts) value = _mm512_add_ps(value, _mm512_set1_ps(terms.shifts[at]));
    if (terms.residual) value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(lanes, terms.residual + offset));
    return value;
}

// The per-tile formulas of haze_winograd.c on 16 tiles at once, lanes masked to the tiles present.
// The 4×4 input tiles d[4i + j] → (Bᵀ d B)[ξ], stored at dst + ξ · stride.
static inline AVX512 void store_input_transform(const __m512 d[16], float *dst, long stride, __mmask16 lanes) {
    __m512 bt[4][4];  // Bᵀ d
    for (int j = 0; j < 4; j++) {
        bt[0][j] = d[j] - d[8 + j];
        bt[1][j] = d[4 + j] + d[8 + j];
        bt[2][j] = d[8 + j] - d[4 + j];
        bt[3][j] = d[4 + j] - d[12 + j];
    }
    for (int i = 0; i < 4; i++) {  // (Bᵀ d) B, row i → positions 4i…4i+3
        _mm512_mask_storeu_ps(dst + (4 * i + 0) * stride, lanes, bt[i][0] - bt[i][2]);
        _mm512_mask_storeu_ps(dst + (4 * i + 1) * stride, lanes, bt[i][1] + bt[i][2]);
        _mm512_mask_storeu_ps(dst + (4 * i + 2) * stride, lanes, bt[i][2] - bt[i][1]);
        _mm512_mask_storeu_ps(dst + (4 * i + 3) * stride, lanes, bt[i][1] - bt[i][3]);
    }
}

// The 2×2 output gradients → (A ḡ Aᵀ)[ξ] at dst + ξ · stride: rows of A ḡ are (ḡ0, ḡ0 + ḡ1,
// ḡ0 − ḡ1, −ḡ1), each row (x0, x1) → (x0, x0 + x1, x0 − x1, −x1).
static inline AVX512 void store_output_gradient_transform(__m512 g00, __m512 g01, __m512 g10, __m512 g11, float *dst,
                                                          long stride, __mmask16 lanes) {
    const __m512 a[4][2] = {{g00, g01}, {g00 + g10, g01 + g11}, {g00 - g10, g01 - g11}, {-g10, -g11}};
    for (int i = 0; i < 4; i++) {
        _mm512_mask_storeu_ps(dst + (4 * i + 0) * stride, lanes, a[i][0]);
        _mm512_mask_storeu_ps(dst + (4 * i + 1) * stride, lanes, a[i][0] + a[i][1]);
        _mm512_mask_storeu_ps(dst + (4 * i + 2) * stride, lanes, a[i][0] - a[i][1]);
        _mm512_mask_storeu_ps(dst + (4 * i + 3) * stride, lanes, -a[i][1]);
    }
}

// The 16 products at src + ξ · stride → y = Aᵀ M A + shift as (y00, y01, y10, y11).
static inline AVX512 void output_transform(const float *src, long stride, __mmask16 lanes, __m512 shift, __m512 y[4]) {
    __m512 s[4][2];  // M A, row by row
    for (int i = 0; i < 4; i++) {
        const __m512 m0 = _mm512_maskz_loadu_ps(lanes, src + (4 * i + 0) * stride);
        const __m512 m1 = _mm512_maskz_loadu_ps(lanes, src + (4 * i + 1) * stride);
        const __m512 m2 = _mm512_maskz_loadu_ps(lanes, src + (4 * i + 2) * stride);
        const __m512 m3 = _mm512_maskz_loadu_ps(lanes, src + (4 * i + 3) * stride);
        s[i][0] = m0 + m1 + m2;
        s[i][1] = m1 - m2 - m3;
    }
    y[0] = s[0][0] + s[1][0] + s[2][0] + shift;
    y[1] = s[0][1] + s[1][1] + s[2][1] + shift;
    y[2] = s[1][0] - s[2][0] - s[3][0] + shift;
    y[3] = s[1][1] - s[2][1] - s[3][1] + shift;
}

// The h·w ≤ 64 pixels of plane `at` of x in four registers, through `activation` (zero past the
// plane; nothing read past it).
static inline AVX512 void load_plane(const float *x, haze_input_activation activation, long at, long pixels, __m512 r[4]) {
    for (int q = 0; q < 4; q++) {
        const __mmask16 lanes = plane_mask(pixels, q);
        r[q] = 16 * q < pixels ? activated(_mm512_maskz_loadu_ps(lanes, x + at * pixels + 16 * q), activation, at, lanes)
                               : _mm512_setzero_ps();
    }
}

static AVX512 void input_small_avx512(const float *x, haze_input_activation activation, float *v, long first_image, long images,
                                      long c, long h, long w, long tiles_h, long tiles_w) {
    const long per_image = tiles_h * tiles_w, tiles = images * per_image, stride = haze_winograd_block(c, tiles);
    int at[16][16];  // the 4×4 input tiles, stride 2, starting one pixel up-left
    plane_offsets(&at[0][0], 16, h, w, 4, 4, 2, 1, 1, tiles_h, tiles_w);
    selection pixel[16];
    for (int k = 0; k < 16; k++) pixel[k] = make_selection(at[k], per_image);
    const __mmask16 lanes = first_lanes(per_image);
    for (long ci = 0; ci < c; ci++)
        for (long b = 0; b < images; b++) {
            __m512 r[4];
            load_plane(x, activation, (first_image + b) * c + ci, h * w, r);
            __m512 d[16];
            for (int k = 0; k < 16; k++) d[k] = select_lanes(pixel[k], r[0], r[1], r[2], r[3]);
            store_input_transform(d, v + ci * tiles + b * per_image, stride, lanes);
        }
}

static AVX512 void output_gradient_small_avx512(const float *g, float *gt, long first_image, long images, long o,
                                                long h, long w, long tiles_h, long tiles_w) {
    const long per_image = tiles_h * tiles_w, tiles = images * per_image, stride = haze_winograd_block(o, tiles);
    int at[4][16];  // the 2×2 output tiles
    plane_offsets(&at[0][0], 16, h, w, 2, 2, 2, 0, 0, tiles_h, tiles_w);
    selection pixel[4];
    for (int k = 0; k < 4; k++) pixel[k] = make_selection(at[k], per_image);
    const __mmask16 lanes = first_lanes(per_image);
    for (long oc = 0; oc < o; oc++)
        for (long b = 0; b < images; b++) {
            __m512 r[4];
            load_plane(g, (haze_input_activation){0}, (first_image + b) * o + oc, h * w, r);
            store_output_gradient_transform(select_lanes(pixel[0], r[0], r[1], r[2], r[3]), select_lanes(pixel[1], r[0], r[1], r[2], r[3]),
                                            select_lanes(pixel[2], r[0], r[1], r[2], r[3]), select_lanes(pixel[3], r[0], r[1], r[2], r[3]),
                                            gt + oc * tiles + b * per_image, stride, lanes);
        }
}

static AVX512 void output_small_avx512(const float *m, float *y, haze_output_terms terms, long first_image, long images,
                                       long o, long h, long w, long tiles_h, long tiles_w) {
    const long per_image = tiles_h * tiles_w, tiles = images * per_image, stride = haze_winograd_block(o, tiles), pixels = h * w;
    int at[4][16];  // the 2×2 output tiles: pixel at[k][t] is output k of tile t
    plane_offsets(&at[0][0], 16, h, w, 2, 2, 2, 0, 0, tiles_h, tiles_w);
    // The inverse: pixel p of the plane is source k·16 + t of the four result registers.
    int source[64];
    for (int p = 0; p < 64; p++) source[p] = -1;
    for (int k = 0; k < 4; k++)
        for (long t = 0; t < per_image; t++)
            if (at[k][t] >= 0) source[at[k][t]] = k * 16 + (int)t;
    selection part[4];
    for (int r = 0; r < 4; r++) part[r] = make_selection(source + 16 * r, 16);
    const __mmask16 lanes = first_lanes(per_image);
    for (long b = 0; b < images; b++)
        for (long oc = 0; oc < o; oc++) {
            __m512 r[4];  // y00, y01, y10, y11 of the tiles
            output_transform(m + oc * tiles + b * per_image, stride, lanes, _mm512_set1_ps(terms.bias ? terms.bias[oc] : 0), r);
            const long at = (first_image + b) * o + oc;
            for (int q = 0; q < 4 && 16 * q < pixels; q++) {
                const long first = at * pixels + 16 * q;
                const __m512 value = add_terms(select_lanes(part[q], r[0], r[1], r[2], r[3]), terms, at, first, plane_mask(pixels, q));
                _mm512_mask_storeu_ps(y + first, plane_mask(pixels, q), value);
            }
        }
}

// Planes at most 32 wide: one tile row per vector.
static inline int rows_avx512(long w) { return w <= 32; }

static AVX512 void input_rows_avx512(const float *x, haze_input_activation activation, float *v, long first_image, long images,
                                     long c, long h, long w, long tiles_h, long tiles_w) {
    const long per_image = tiles_h * tiles_w, tiles = images * per_image, stride = haze_winograd_block(c, tiles);
    selection columns[4];  // the 4 columns of the tiles, starting one pixel left
    column_selections(columns, 4, 2, -1, w, tiles_w);
    const __mmask16 lanes = (__mmask16)((1u << tiles_w) - 1);
    for (long ci = 0; ci < c; ci++)
        for (long b = 0; b < images; b++) {
            const long at = (first_image + b) * c + ci;
            const float *plane = x + at * h * w;
            float *dst = v + ci * tiles + b * per_image;
            __m512 lo[4], hi[4];  // the tile row's four image rows; the last two are the next tile row's first two
            for (long ty = 0; ty < tiles_h; ty++, dst += tiles_w) {
                for (int i = ty == 0 ? 0 : 2; i < 4; i++) {
                    const long y = 2 * ty - 1 + i;
                    load_row(plane, y, h, w, &lo[i], &hi[i]);
                    if (y < 0 || y >= h) continue;  // zero rows stay zero
                    lo[i] = activated(lo[i], activation, at, plane_mask(w, 0));
                    hi[i] = activated(hi[i], activation, at, plane_mask(w, 1));
                }
                __m512 d[16];
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++)
                        d[4 * i + j] = _mm512_maskz_permutex2var_ps(columns[j].low, lo[i], columns[j].index, hi[i]);
                store_input_transform(d, dst, stride, lanes);
                lo[0] = lo[2], hi[0] = hi[2], lo[1] = lo[3], hi[1] = hi[3];
            }
        }
}

// Planes wider than 32: each tile row in segments of 16 tiles (32 columns). Segment s reads the row's
// columns [32s − 1, 32s + 47) as three registers loaded at that offset, zero outside the plane, so
// every segment picks its tiles' columns 2t + j from them alike. Columns [first, first + 16) of
// `row` (first ≥ −1) of plane `at`, through `activation`: at first = −1 the load starts at column
// 0 and its lanes move up one, so that no address before the row is formed.
static inline AVX512 __m512 load_columns(const float *row, long first, long w, haze_input_activation activation, long at) {
    const long lo = first < 0 ? 1 : 0, hi = w - first < 16 ? w - first : 16;
    if (hi <= lo) return _mm512_setzero_ps();
    const __mmask16 mask = (__mmask16)(first_lanes(hi) & ~first_lanes(lo));
    __m512 values = _mm512_maskz_loadu_ps((__mmask16)(mask >> lo), row + first + lo);
    if (lo) values = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(values), _mm512_setzero_si512(), 15));
    return activated(values, activation, at, mask);
}

static AVX512 void input_wide_avx512(const float *x, haze_input_activation activation, float *v, long first_image, long images,
                                     long c, long h, long w, long tiles_h, long tiles_w) {
    const long per_image = tiles_h * tiles_w, tiles = images * per_image, stride = haze_winograd_block(c, tiles);
    selection columns[4];  // column j of tile t: window lane 2t + j
    for (int j = 0; j < 4; j++) {
        int source[16];
        for (int t = 0; t < 16; t++) source[t] = 2 * t + j;
        columns[j] = make_selection(source, 16);
    }
    const __m512 zero = _mm512_setzero_ps();
    for (long ci = 0; ci < c; ci++)
        for (long b = 0; b < images; b++) {
            const long at = (first_image + b) * c + ci;
            const float *plane = x + at * h * w;
            for (long s = 0; 16 * s < tiles_w; s++) {
                float *dst = v + ci * tiles + b * per_image + 16 * s;
                __m512 window[4][3];  // the tile row's four image rows; the last two are the next tile row's first two
                for (long ty = 0; ty < tiles_h; ty++, dst += tiles_w) {
                    for (int i = ty == 0 ? 0 : 2; i < 4; i++) {
                        const long y = 2 * ty - 1 + i;
                        for (int k = 0; k < 3; k++)
                            window[i][k] = y >= 0 && y < h ? load_columns(plane + y * w, 32 * s - 1 + 16 * k, w, activation, at) : zero;
                    }
                    __m512 d[16];
                    for (int i = 0; i < 4; i++)
                        for (int j = 0; j < 4; j++) d[4 * i + j] = select_lanes(columns[j], window[i][0], window[i][1], window[i][2], zero);
                    store_input_transform(d, dst, stride, first_lanes(tiles_w - 16 * s));
                    for (int k = 0; k < 3; k++) window[0][k] = window[2][k], window[1][k] = window[3][k];
                }
            }
        }
}

// Any width: each tile row in segments of 16 tiles (32 columns of the plane), one segment where the
// plane is at most 32 wide.
static AVX512 void output_rows_avx512(const float *m, float *y, haze_output_terms terms, long first_image, long images,
                                      long o, long h, long w, long tiles_h, long tiles_w) {
    const long tiles = images * tiles_h * tiles_w, stride = haze_winograd_block(o, tiles);
    int interleave[32];  // output column q of a segment's row pair: tile q/2's left (q even) or right value
    for (int q = 0; q < 32; q++) interleave[q] = (q % 2) * 16 + q / 2;
    const __m512i left = _mm512_loadu_si512(interleave), right = _mm512_loadu_si512(interleave + 16);
    for (long b = 0; b < images; b++)
        for (long oc = 0; oc < o; oc++) {
            const long at = (first_image + b) * o + oc;
            const __m512 shift = _mm512_set1_ps(terms.bias ? terms.bias[oc] : 0);
            for (long ty = 0; ty < tiles_h; ty++)
                for (long s = 0; 16 * s < tiles_w; s++) {
                    __m512 r[4];  // y00, y01, y10, y11 of the segment's tiles
                    output_transform(m + oc * tiles + (b * tiles_h + ty) * tiles_w + 16 * s, stride,
                                     first_lanes(tiles_w - 16 * s), shift, r);
                    const __mmask16 lo = first_lanes(w - 32 * s), hi = first_lanes(w - 32 * s - 16);
                    for (long k = 0; k < 2 && 2 * ty + k < h; k++) {
                        const long first = (at * h + 2 * ty + k) * w + 32 * s;  // the row's first column in y
                        const __m512 even = _mm512_permutex2var_ps(r[2 * k], left, r[2 * k + 1]);
                        const __m512 odd = _mm512_permutex2var_ps(r[2 * k], right, r[2 * k + 1]);
                        _mm512_mask_storeu_ps(y + first, lo, add_terms(even, terms, at, first, lo));
                        _mm512_mask_storeu_ps(y + first + 16, hi, add_terms(odd, terms, at, first + 16, hi));
                    }
                }
        }
}

static AVX512 void output_gradient_rows_avx512(const float *g, float *gt, long first_image, long images, long o,
                                               long h, long w, long tiles_h, long tiles_w) {
    const long per_image = tiles_h * tiles_w, tiles = images * per_image, stride = haze_winograd_block(o, tiles);
    selection columns[2];  // the 2 columns of the output tiles
    column_selections(columns, 2, 2, 0, w, tiles_w);
    const __mmask16 lanes = (__mmask16)((1u << tiles_w) - 1);
    for (long oc = 0; oc < o; oc++)
        for (long b = 0; b < images; b++) {
            const float *plane = g + ((first_image + b) * o + oc) * h * w;
            float *dst = gt + oc * tiles + b * per_image;
            for (long ty = 0; ty < tiles_h; ty++, dst += tiles_w) {
                __m512 lo0, hi0, lo1, hi1;
                load_row(plane, 2 * ty, h, w, &lo0, &hi0);
                load_row(plane, 2 * ty + 1, h, w, &lo1, &hi1);
                store_output_gradient_transform(_mm512_maskz_permutex2var_ps(columns[0].low, lo0, columns[0].index, hi0),
                                                _mm512_maskz_permutex2var_ps(columns[1].low, lo0, columns[1].index, hi0),
                                                _mm512_maskz_permutex2var_ps(columns[0].low, lo1, columns[0].index, hi1),
                                                _mm512_maskz_permutex2var_ps(columns[1].low, lo1, columns[1].index, hi1),
                                                dst, stride, lanes);
            }
        }
}

#endif
#endif
