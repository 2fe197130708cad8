// Winograd F(4×4, 3×3) for 3×3, stride-1, padding-1 convolutions, AVX-512: on small images (at
// most 8×8, the lower levels of a U-Net, 16 images along the lanes) and on planes 5–8, 9–16, 25–32
// or 64 wide (16 consecutive tiles along the lanes, at the end of this file). Each 4×4 output tile is
//   Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A
// over the 6×6 input tiles d_c (stride 4, starting one pixel up-left, zero outside the image), with
//   Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1],
//   G = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1/24 1/12 ⅙; 1/24 −1/12 ⅙; 0 0 1],
//   Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1]
// (Lavin & Gray 2016). On a 7×7 or 8×8 image that is 2 × 2 tiles of 36 positions: 144 products per
// channel pair and image where F(2×2, 3×3) needs 16 tiles of 16 positions, 256 — 44 % fewer
// multiply-adds in the 36 matrix products M[ξ] [O, T] = U[ξ] [O, C] · V[ξ] [C, T]. A 7×7 image's
// second tile row and column take F(3, 3) instead (split tiles, below): 121 products.
// On small images the vector lanes hold 16 images: column t = tile · 16 + image of V and M, so every transform
// reads and writes whole vectors. x and y move between their planes and the lanes by 16 × 16
// transposes: each image's plane of a channel is read (or written) whole, not by a gather or
// scatter per pixel (7×7 convolutions ~6 % faster on AMD Zen 4; Documentation/speed.md).
// The input transforms can read x through a group norm and SiLU (haze_input_activation), so that
// a U-Net block's normalised activations are never written out.
// The weight gradient is the adjoint: with the output gradient ḡ of a tile, M̄ = A ḡ Aᵀ,
// ∂U[ξ] [O, C] = Σ_t M̄[ξ] [O, T] · V[ξ] [C, T]ᵀ (BLAS) and ∂g = Gᵀ ∂U G.

#include "haze_kernels.h"
#include "haze_avx512.h"
#ifdef HAZE_AVX512
#define HAZE_X16_TARGET AVX512
#endif
#include "haze_exp.h"

long haze_winograd43_tiles(long h, long w) { return ((h + 3) / 4) * ((w + 3) / 4) * 16; }

// Split tiles on 7×7 images: a 4-output and a 3-output tile in each direction instead of two
// 4-output tiles over 8 (one row and column of which fall outside the image). The 3-output tiles
// take F(3, 3) on five points, 0, ±1, 2 and ∞ — F(4, 3)'s points without −2, and G's rows for
// them, so that their products are F(4×4)'s U[ξ] with the columns of the tiles that have both of
// ξ's points. With
//   B₃ᵀ = [4 −2 −4 2 0; 0 −6 −3 3 0; 0 2 −3 1 0; 0 −4 0 4 0; 0 2 −1 −2 1],
//   A₃ᵀ = [1 1 1 1 0; 0 1 −1 2 0; 0 1 1 4 1]
// (G₃ = G's rows 0, 1, 2, 3 and 5) a 3 × 3 tile is A₃ᵀ [(G₃ g G₃ᵀ) ⊙ (B₃ᵀ d B₃)] A₃, a 4 × 3 one
// Aᵀ [(G g G₃ᵀ) ⊙ (Bᵀ d B₃)] A₃. An image's four tiles make 36 + 30 + 30 + 25 = 121 products per
// channel pair instead of 144. Their columns are ordered (0, 1), (0, 0), (1, 0), (1, 1) (tile row,
// tile column), so that the tiles of every position are consecutive: all four where neither of
// its points is −2 (index 4), (0, 1) and (0, 0) where the row's is, (0, 0) and (1, 0) where the
// column's is, (0, 0) alone where both are.
int haze_winograd43_splits(long h, long w) { return h == 7 && w == 7; }

long haze_winograd43_columns(long h, long w, int split, int xi, long *first) {
    if (!(split && haze_winograd43_splits(h, w))) {
        *first = 0;
        return haze_winograd43_tiles(h, w);
    }
    const int row_only = xi / 6 == 4, column_only = xi % 6 == 4;
    *first = column_only ? 16 : 0;
    return 16 * (row_only && column_only ? 1 : row_only || column_only ? 2 : 4);
}

#if defined(__x86_64__) && defined(__clang__)
#define INLINE static inline __attribute__((always_inline)) AVX512

int haze_winograd43_available(void) { return __builtin_cpu_supports("avx512f"); }


// r = Bᵀ d for six vectors d[0..6) `stride` apart.
INLINE void input_1d(const __m512 *d, long stride, __m512 *r, long rstride) {
    const __m512 d0 = d[0], d1 = d[stride], d2 = d[2 * stride], d3 = d[3 * stride], d4 = d[4 * stride],
                 d5 = d[5 * stride];
    const __m512 four = _mm512_set1_ps(4), five = _mm512_set1_ps(5), two = _mm512_set1_ps(2);
    const __m512 a = _mm512_fnmadd_ps(four, d2, d4), b = _mm512_fnmadd_ps(four, d1, d3);  // d4 − 4d2, d3 − 4d1
    const __m512 c = _mm512_sub_ps(d4, d2), e = _mm512_mul_ps(two, _mm512_sub_ps(d3, d1));  // d4 − d2, 2(d3 − d1)
    r[0] = _mm512_add_ps(_mm512_fnmadd_ps(five, d2, d4), _mm512_mul_ps(four, d0));
    r[rstride] = _mm512_add_ps(a, b);
    r[2 * rstride] = _mm512_sub_ps(a, b);
    r[3 * rstride] = _mm512_add_ps(c, e);
    r[4 * rstride] = _mm512_sub_ps(c, e);
    r[5 * rstride] = _mm512_add_ps(_mm512_fnmadd_ps(five, d3, d5), _mm512_mul_ps(four, d1));
}

// r = Aᵀ m for six vectors m[0..6) `stride` apart.
INLINE void output_1d(const __m512 *m, long stride, __m512 *r, long rstride) {
    const __m512 m0 = m[0], m1 = m[stride], m2 = m[2 * stride], m3 = m[3 * stride], m4 = m[4 * stride],
                 m5 = m[5 * stride];
    const __m512 s12 = _mm512_add_ps(m1, m2), d12 = _mm512_sub_ps(m1, m2);
    const __m512 s34 = _mm512_add_ps(m3, m4), d34 = _mm512_sub_ps(m3, m4);
    r[0] = _mm512_add_ps(_mm512_add_ps(m0, s12), s34);
    r[rstride] = _mm512_fmadd_ps(_mm512_set1_ps(2), d34, d12);
    r[2 * rstride] = _mm512_fmadd_ps(_mm512_set1_ps(4), s34, s12);
    r[3 * rstride] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8), d34, d12), m5);
}

// r = B₃ᵀ e for five vectors e[0..5) `stride` apart (split tiles, above).
INLINE void input3_1d(const __m512 *e, long stride, __m512 *r, long rstride) {
    const __m512 e0 = e[0], e1 = e[stride], e2 = e[2 * stride], e3 = e[3 * stride], e4 = e[4 * stride];
    const __m512 two = _mm512_set1_ps(2), three = _mm512_set1_ps(3), four = _mm512_set1_ps(4);
    const __m512 t = _mm512_sub_ps(e3, e1), u = _mm512_sub_ps(e3, e2);
    r[0] = _mm512_fmadd_ps(four, _mm512_sub_ps(e0, e2), _mm512_mul_ps(two, t));    // 4e0 − 2e1 − 4e2 + 2e3
    r[rstride] = _mm512_fnmadd_ps(_mm512_set1_ps(6), e1, _mm512_mul_ps(three, u));  // −6e1 − 3e2 + 3e3
    r[2 * rstride] = _mm512_fmadd_ps(two, e1, _mm512_fnmadd_ps(two, e2, u));        // 2e1 − 3e2 + e3
    r[3 * rstride] = _mm512_mul_ps(four, t);                                          // −4e1 + 4e3
    r[4 * rstride] = _mm512_fnmadd_ps(two, t, _mm512_sub_ps(e4, e2));                // 2e1 − e2 − 2e3 + e4
}

// r = A₃ᵀ m for five vectors m[0..5) `stride` apart.
INLINE void output3_1d(const __m512 *m, long stride, __m512 *r, long rstride) {
    const __m512 m0 = m[0], m1 = m[stride], m2 = m[2 * stride], m3 = m[3 * stride], m4 = m[4 * stride];
    const __m512 s12 = _mm512_add_ps(m1, m2);
    r[0] = _mm512_add_ps(_mm512_add_ps(m0, s12), m3);
    r[rstride] = _mm512_fmadd_ps(_mm512_set1_ps(2), m3, _mm512_sub_ps(m1, m2));
    r[2 * rstride] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(4), m3, s12), m4);
}

// The positions (0–5, index 4 being −2) of F(3, 3)'s five points among F(4, 3)'s six.
static const int points3[5] = {0, 1, 2, 3, 5};
// Where tile (ti, tj) of a split 7×7 image goes among its four columns (above).
static const int split_slot[2][2] = {{1, 0}, {2, 3}};

// u = G g Gᵀ for sixteen 3 × 3 kernels at once: g[k] holds entry k of each (lanes: kernels), the 36
// results go to dst[ξ · stride].
INLINE void weights_16(const __m512 *g, float *dst, long stride, __mmask16 lanes) {
    const __m512 quarter = _mm512_set1_ps(0.25f), sixth = _mm512_set1_ps(1.0f / 6), minus_sixth = _mm512_set1_ps(-1.0f / 6),
                 twelfth = _mm512_set1_ps(1.0f / 12), twentyfourth = _mm512_set1_ps(1.0f / 24);
    __m512 t[6][3];
    // r = G a for a 3-vector: (a0/4, −(a0+a1+a2)/6, −(a0−a1+a2)/6, a0/24 + a1/12 + a2/6, a0/24 − a1/12 + a2/6, a2).
#define HAZE_G(a0, a1, a2, r, i)                                                                      \
    {                                                                                                 \
        const __m512 s02 = _mm512_add_ps(a0, a2), even = _mm512_fmadd_ps(a0, twentyfourth, _mm512_mul_ps(a2, sixth)); \
        r[0] i = _mm512_mul_ps(a0, quarter);                                                          \
        r[1] i = _mm512_mul_ps(_mm512_add_ps(s02, a1), minus_sixth);                                     \
        r[2] i = _mm512_mul_ps(_mm512_sub_ps(s02, a1), minus_sixth);                                     \
        r[3] i = _mm512_fmadd_ps(a1, twelfth, even);                                                  \
        r[4] i = _mm512_fnmadd_ps(a1, twelfth, even);                                                 \
        r[5] i = a2;                                                                                  \
    }
    for (int j = 0; j < 3; j++) HAZE_G(g[j], g[3 + j], g[6 + j], t, [j])
    for (int i = 0; i < 6; i++) {
        __m512 u[6];
        HAZE_G(t[i][0], t[i][1], t[i][2], u, )
        for (int j = 0; j < 6; j++) _mm512_mask_storeu_ps(dst + (6 * i + j) * stride, lanes, u[j]);
    }
#undef HAZE_G
}

AVX512 void haze_winograd43_packed_weights(const float *w, float *packed, long o, long c, long first_block,
                                           long block_count) {
    // Lane l: row r0 + l % 8, column p + l / 8 — two columns of an 8-row block of the packed layout
    // (packed[(r / 8) · C · 8 + p · 8 + r % 8], haze_gemm.c), so every result is one 16-float store.
    const long matrix = haze_gemm_packed_size(o, c);
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i row = _mm512_and_si512(lane, _mm512_set1_epi32(7)), column = _mm512_srli_epi32(lane, 3);
    const __m512i offset = _mm512_mullo_epi32(_mm512_add_epi32(_mm512_mullo_epi32(row, _mm512_set1_epi32((int)c)), column),
                                              _mm512_set1_epi32(9));
    for (long block = first_block; block < first_block + block_count; block++) {
        const long r0 = 8 * block;
        const __mmask16 rows = (__mmask16)(0x0101u * ((1u << (o - r0 < 8 ? o - r0 : 8)) - 1));
        for (long p = 0; p < c; p += 2) {
            const __mmask16 lanes = p + 1 < c ? (__mmask16)0xFFFF : (__mmask16)0x00FF;
            const float *base = w + (r0 * c + p) * 9;
            __m512 g[9];
            for (int k = 0; k < 9; k++) g[k] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), rows & lanes, offset, base + k, 4);
            weights_16(g, packed + r0 * c + p * 8, matrix, lanes);
        }
    }
}

AVX512 void haze_winograd43_input(const float *x, haze_input_activation activation, float *v, long first_image, long images,
                                  long c, long h, long w, int split, long block) {
    const long th = (h + 3) / 4, tw = (w + 3) / 4, hp = 4 * th + 2, wp = 4 * tw + 2, T = th * tw * 16;
    split = split && haze_winograd43_splits(h, w);
    _Alignas(64) float planes[16][64] = {{0}};  // planes[l]: image l's plane of the channel (zero past the images)
    __m512 pixels[64];                            // lane l of pixels[p]: planes[l][p]
    __m512 plane[10 * 10];                        // the channel's pixels zero-padded: [hp][wp]
    for (long ci = 0; ci < c; ci++) {
        for (long l = 0; l < images; l++) {
            const float *src = haze_input_plane(x, activation, first_image + l, ci, c, h * w);
            const long at = (first_image + l) * c + ci;
            for (long p0 = 0; p0 < h * w; p0 += 16) {
                const __mmask16 lanes = first_lanes(h * w - p0);
                __m512 pixels = _mm512_maskz_loadu_ps(lanes, src + p0);
                if (activation.scale)
                    pixels = _mm512_maskz_mov_ps(lanes, (__m512)silu_affine_x16((haze_x16)pixels, activation.scale[at], activation.shift[at]));
                _mm512_store_ps(planes[l] + p0, pixels);
            }
        }
        for (long p0 = 0; p0 < h * w; p0 += 16) transpose16(planes[0] + p0, 64, (float *)(pixels + p0), 16);
        for (long r = 0; r < hp; r++)
            for (long q = 0; q < wp; q++) {
                const long sr = r - 1, sq = q - 1;
                plane[r * wp + q] = sr >= 0 && sr < h && sq >= 0 && sq < w ? pixels[sr * w + sq] : _mm512_setzero_ps();
            }
        for (long ti = 0; ti < th; ti++)
            for (long tj = 0; tj < tw; tj++) {
                __m512 rows[36], out[36];
                const __m512 *d = plane + 4 * ti * wp + 4 * tj;
                if (split && (ti || tj)) {
                    // Bᵀ d B₃, B₃ᵀ d B or B₃ᵀ d B₃: the points of each direction.
                    const int nr = ti ? 5 : 6, nc = tj ? 5 : 6;
                    for (int j = 0; j < nc; j++) (ti ? input3_1d : input_1d)(d + j, wp, rows + j, 6);
                    for (int i = 0; i < nr; i++) (tj ? input3_1d : input_1d)(rows + 6 * i, 1, out + 6 * i, 1);
                    float *dst = v + ci * T + split_slot[ti][tj] * 16;
                    for (int i = 0; i < nr; i++)
                        for (int j = 0; j < nc; j++)
                            _mm512_storeu_ps(dst + (6 * (ti ? points3[i] : i) + (tj ? points3[j] : j)) * block, out[6 * i + j]);
                    continue;
                }
                for (int j = 0; j < 6; j++) input_1d(d + j, wp, rows + j, 6);        // Bᵀ d: columns
                for (int i = 0; i < 6; i++) input_1d(rows + 6 * i, 1, out + 6 * i, 1);  // (Bᵀ d) B: rows
                float *dst = v + ci * T + (split ? split_slot[ti][tj] : ti * tw + tj) * 16;
                for (int xi = 0; xi < 36; xi++) _mm512_storeu_ps(dst + xi * block, out[xi]);
            }
    }
}

AVX512 void haze_winograd43_output(const float *m, float *y, haze_output_terms terms, long first_image, long images,
                                   long o, long h, long w, int split, long block) {
    const long th = (h + 3) / 4, tw = (w + 3) / 4, T = th * tw * 16;
    split = split && haze_winograd43_splits(h, w);
    const __mmask16 lanes = first_lanes(images);
    __m512 pixels[64];                   // lane l of pixels[p]: pixel p of image l's output plane
    _Alignas(64) float planes[16][64];  // planes[l]: image l's plane
    for (long p = 0; p < 64; p++) pixels[p] = _mm512_setzero_ps();
    for (long oc = 0; oc < o; oc++) {
        const __m512 shift = _mm512_set1_ps(terms.bias ? terms.bias[oc] : 0.0f);
        const __m512 image_shift = terms.shifts ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, lane_offsets(o),
                                                                           terms.shifts + first_image * o + oc, 4)
                                                : _mm512_setzero_ps();
        for (long ti = 0; ti < th; ti++)
            for (long tj = 0; tj < tw; tj++) {
                __m512 in[36], cols[24], out[16];
                if (split && (ti || tj)) {
                    // Aᵀ m A₃, A₃ᵀ m A or A₃ᵀ m A₃ over the positions the tile has.
                    const int nr = ti ? 5 : 6, nc = tj ? 5 : 6;
                    const float *src = m + oc * T + split_slot[ti][tj] * 16;
                    for (int i = 0; i < nr; i++)
                        for (int j = 0; j < nc; j++)
                            in[6 * i + j] = _mm512_loadu_ps(src + (6 * (ti ? points3[i] : i) + (tj ? points3[j] : j)) * block);
                    for (int j = 0; j < nc; j++) (ti ? output3_1d : output_1d)(in + j, 6, cols + j, 6);
                    for (int i = 0; i < (ti ? 3 : 4); i++) (tj ? output3_1d : output_1d)(cols + 6 * i, 1, out + 4 * i, 1);
                } else {
                    const float *src = m + oc * T + (split ? split_slot[ti][tj] : ti * tw + tj) * 16;
                    for (int xi = 0; xi < 36; xi++) in[xi] = _mm512_loadu_ps(src + xi * block);
                    for (int j = 0; j < 6; j++) output_1d(in + j, 6, cols + j, 6);        // Aᵀ m: [4][6]
                    for (int i = 0; i < 4; i++) output_1d(cols + 6 * i, 1, out + 4 * i, 1);  // (Aᵀ m) A: [4][4]
                }
                for (int i = 0; i < 4 && 4 * ti + i < h; i++)
                    for (int j = 0; j < 4 && 4 * tj + j < w; j++) {
                        __m512 value = _mm512_add_ps(out[4 * i + j], shift);
                        if (terms.shifts) value = _mm512_add_ps(value, image_shift);
                        pixels[(4 * ti + i) * w + 4 * tj + j] = value;
                    }
            }
        // The 16 images' planes apart again (16 × 16 transposes), each stored whole with its residual.
        for (long p0 = 0; p0 < h * w; p0 += 16) transpose16((const float *)(pixels + p0), 16, planes[0] + p0, 64);
        for (long l = 0; l < images; l++) {
            const long plane = ((first_image + l) * o + oc) * h * w;
            for (long p0 = 0; p0 < h * w; p0 += 16) {
                const __mmask16 valid = first_lanes(h * w - p0);
                __m512 value = _mm512_load_ps(planes[l] + p0);
                if (terms.residual) value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(valid, terms.residual + plane + p0));
                _mm512_mask_storeu_ps(y + plane + p0, valid, value);
            }
        }
    }
}
// r = A q for four vectors q[0..4) `stride` apart (A = (Aᵀ)ᵀ, 6 × 4): the adjoint of output_1d.
INLINE void output_gradient_1d(const __m512 *q, long stride, __m512 *r, long rstride) {
    const __m512 q0 = q[0], q1 = q[stride], q2 = q[2 * stride], q3 = q[3 * stride];
    const __m512 e = _mm512_add_ps(q0, q2), e4 = _mm512_fmadd_ps(_mm512_set1_ps(4), q2, q0);
    const __m512 o = _mm512_add_ps(q1, q3), o8 = _mm512_fmadd_ps(_mm512_set1_ps(4), q3, q1);  // q1 + 4q3
    const __m512 two = _mm512_set1_ps(2);
    r[0] = q0;
    r[rstride] = _mm512_add_ps(e, o);
    r[2 * rstride] = _mm512_sub_ps(e, o);
    r[3 * rstride] = _mm512_fmadd_ps(two, o8, e4);   // q0 + 2q1 + 4q2 + 8q3
    r[4 * rstride] = _mm512_fnmadd_ps(two, o8, e4);  // q0 − 2q1 + 4q2 − 8q3
    r[5 * rstride] = q3;
}

AVX512 void haze_winograd43_output_gradient(const float *g, float *mbar, long first_image, long images, long o, long h,
                                            long w, long block) {
    const long th = (h + 3) / 4, tw = (w + 3) / 4, hp = 4 * th, wp = 4 * tw, T = th * tw * 16;
    const __mmask16 lanes = first_lanes(images);
    const __m512i apart = lane_offsets(o * h * w);
    __m512 plane[8 * 8];  // one channel of ḡ for the 16 images, zero past the image: [hp][wp]
    for (long oc = 0; oc < o; oc++) {
        const float *src = g + (first_image * o + oc) * h * w;
        for (long r = 0; r < hp; r++)
            for (long q = 0; q < wp; q++)
                plane[r * wp + q] = r < h && q < w ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, apart, src + r * w + q, 4)
                                                   : _mm512_setzero_ps();
        for (long ti = 0; ti < th; ti++)
            for (long tj = 0; tj < tw; tj++) {
                __m512 cols[24], out[36];
                const __m512 *d = plane + 4 * ti * wp + 4 * tj;
                for (int j = 0; j < 4; j++) output_gradient_1d(d + j, wp, cols + j, 4);       // A ḡ: [6][4]
                for (int i = 0; i < 6; i++) output_gradient_1d(cols + 4 * i, 1, out + 6 * i, 1);  // (A ḡ) Aᵀ: [6][6]
                float *dst = mbar + oc * T + (ti * tw + tj) * 16;
                for (int xi = 0; xi < 36; xi++) _mm512_storeu_ps(dst + xi * block, out[xi]);
            }
    }
}

// r = Gᵀ u for six vectors u[0..6) `stride` apart: the adjoint of G.
INLINE void weights_gradient_1d(const __m512 *u, long stride, __m512 *r, long rstride) {
    const __m512 u0 = u[0], u1 = u[stride], u2 = u[2 * stride], u3 = u[3 * stride], u4 = u[4 * stride],
                 u5 = u[5 * stride];
    const __m512 s12 = _mm512_add_ps(u1, u2), d12 = _mm512_sub_ps(u2, u1);
    const __m512 s34 = _mm512_add_ps(u3, u4), d34 = _mm512_sub_ps(u3, u4);
    const __m512 sixth = _mm512_set1_ps(1.0f / 6);
    r[0] = _mm512_fmadd_ps(s34, _mm512_set1_ps(1.0f / 24), _mm512_fnmadd_ps(s12, sixth, _mm512_mul_ps(u0, _mm512_set1_ps(0.25f))));
    r[rstride] = _mm512_fmadd_ps(d34, _mm512_set1_ps(1.0f / 12), _mm512_mul_ps(d12, sixth));
    r[2 * rstride] = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(s34, s12), sixth), u5);
}

AVX512 void haze_winograd43_weights_gradient(float *const *slots, long count, float *dw, long o, long c, long first_row,
                                             long row_count) {
    const long plane = o * c;
    const __m512i nine = lane_offsets(9);
    for (long r = first_row; r < first_row + row_count; r++) {
        haze_winograd_sum_slots(slots, count, 36, o, c, r);
        // ∂g = Gᵀ ∂U G for 16 input channels at once; lane l's 9 values go to dw[r, s + l, ·, ·].
        for (long s = 0; s < c; s += 16) {
            const __mmask16 lanes = first_lanes(c - s);
            __m512 du[36], rows[18], out[9];
            for (int xi = 0; xi < 36; xi++) du[xi] = _mm512_maskz_loadu_ps(lanes, slots[0] + xi * plane + r * c + s);
            for (int j = 0; j < 6; j++) weights_gradient_1d(du + j, 6, rows + j, 6);          // Gᵀ ∂U: [3][6]
            for (int i = 0; i < 3; i++) weights_gradient_1d(rows + 6 * i, 1, out + 3 * i, 1);  // (Gᵀ ∂U) G: [3][3]
            for (int k = 0; k < 9; k++) _mm512_mask_i32scatter_ps(dw + (r * c + s) * 9 + k, lanes, nine, out[k], 4);
        }
    }
}

// Tiles along the lanes, for larger planes: planes W = 32 or 64 wide with H a multiple of 256 / W
// (32×32, 64×64 images), planes 9–16 wide and over 8 high, laid out as W = 16 (14×14, 16×16,
// 16×48 images), planes 25–31 wide and over 16 high, laid out as W = 32 (28×28), and planes 5–8
// wide, laid out as W = 8 (8×8 and 7×7 images in batches too small for 16 images in the lanes);
// a narrower plane's missing columns read as zeros and are not written. A group is 16 consecutive
// tiles in raster order: R = 64 / W tile rows of W / 4 tiles. The tile rows run on from one image to the
// next (the batch's ⌈H/4⌉ · N tile rows one after the other), so a group may end in the next image:
// on 28×28 planes (7 tile rows) that is 3.5 groups an image, 56 tiles where 49 would do (one empty
// tile column), not 64. (Even 64 is 27 % fewer products than F(2×2, 3×3)'s 196 tiles of 16; below
// 25 columns the empty tiles would cost more than that.) Each of the six input rows under a
// group's tiles spans R image rows of W pixels, 64 floats in four registers (at W = 8 each
// register holds two of them, in its two halves: `register_segments`), and two-source
// permutes pick every tile's six columns out of them (zero where a column falls into the padding),
// so x is read by whole-vector loads and y written by whole-vector stores (masked to the plane's
// width), with no gathers or scatters. Column `16 (g − first_group) + l` of an item's V and M (rows
// `ld` floats apart) holds tile l of group g. n, h, w: the images and the plane's own height and
// width (its row stride); the tile rows past the last image read as zeros and are not written.
int haze_winograd43_rows_fit(long h, long w) {
    return ((w == 32 || w == 64) && h % (256 / w) == 0) || (w > 8 && w <= 16 && h > 8) || (w > 24 && w < 32 && h > 16) ||
           (w > 4 && w <= 8);
}

// The layout width W of a plane w wide.
static inline long layout_width(long w) { return w <= 8 ? 8 : w <= 16 ? 16 : w <= 32 ? 32 : 64; }

long haze_winograd43_rows_groups(long n, long h, long w) {
    const long tile_rows = 64 / layout_width(w);  // tile rows per group
    return (n * ((h + 3) / 4) + tile_rows - 1) / tile_rows;
}

// The first column of register s (of four) of a group's image rows, in a layout W ≥ 16 wide, and
// the group's tile row it belongs to.
static inline long register_column(long s, long layout) { return 16 * s % layout; }
static inline long register_tile_row(long s, long layout) { return 16 * s / layout; }

// The parts of register s of a group's image rows that lie in one image row each: at W ≥ 16 the
// whole register, 16 pixels of tile row 16s / W from column 16s mod W; at W = 8 its two halves,
// pixels 0–7 of tile rows 2s (lanes 0–7) and 2s + 1 (lanes 8–15).
typedef struct {
    long count, tile_row[2], column[2], first_lane[2], lanes[2];
} segments;

static inline segments register_segments(long s, long layout) {
    if (layout >= 16) return (segments){1, {register_tile_row(s, layout)}, {register_column(s, layout)}, {0}, {16}};
    return (segments){2, {2 * s, 2 * s + 1}, {0, 0}, {0, 8}, {8, 8}};
}

// The lanes of segment k that hold pixels of a plane w wide.
static inline __mmask16 segment_lanes(const segments *g, long k, long w) {
    const long columns = w - g->column[k] < g->lanes[k] ? w - g->column[k] : g->lanes[k];
    return (__mmask16)(first_lanes(columns) << g->first_lane[k]);
}

// Segment k's lanes of a register from or to its image row `row` (lane first_lane + j is column
// j): the upper half (first_lane 8) is moved to or from lanes 0–7 of a load or store at the row,
// so that no address before the row is formed. `load_segment` replaces `lanes` of v.
static inline AVX512 __m512 load_segment(__m512 v, const float *row, __mmask16 lanes, long first_lane) {
    if (first_lane == 0) return _mm512_mask_loadu_ps(v, lanes, row);
    const __m512 low = _mm512_maskz_loadu_ps((__mmask16)(lanes >> 8), row);
    return _mm512_mask_mov_ps(v, lanes, _mm512_shuffle_f32x4(low, low, 0x44));  // lanes 0–7 to 8–15
}

static inline AVX512 void store_segment(float *row, __mmask16 lanes, long first_lane, __m512 v) {
    if (first_lane == 0) return _mm512_mask_storeu_ps(row, lanes, v);
    _mm512_mask_storeu_ps(row, (__mmask16)(lanes >> 8), _mm512_shuffle_f32x4(v, v, 0xEE));  // lanes 8–15 to 0–7
}

// Where a group's tile rows lie: for each of its R tile rows, its image (−1 past the last) and
// its first image row.
typedef struct {
    long image[8], row[8];
} group_place;

// The places of groups first, first + 1, …: `next_group_place` returns one and moves on.
typedef struct {
    long image, tile_row, per_image, n, tile_rows;
} group_walk;

static inline group_walk start_walk(long first_group, long n, long h, long w) {
    const long tile_rows = 64 / layout_width(w), per_image = (h + 3) / 4, t = first_group * tile_rows;
    return (group_walk){t / per_image, t % per_image, per_image, n, tile_rows};
}

static inline group_place next_group_place(group_walk *walk) {
    group_place place;
    for (long q = 0; q < walk->tile_rows; q++) {
        place.image[q] = walk->image < walk->n ? walk->image : -1;
        place.row[q] = 4 * walk->tile_row;
        if (++walk->tile_row == walk->per_image) walk->tile_row = 0, walk->image++;
    }
    return place;
}

// Lane l of selection k takes column 4·(l mod W/4) + k + shift of the group's tile row l / (W/4);
// −1 (zero) outside 0..<W.
static inline AVX512 selection tile_columns(long w, long k, long shift) {
    int sources[16];
    const long tw = w / 4;
    for (long l = 0; l < 16; l++) {
        const long column = 4 * (l % tw) + k + shift;
        sources[l] = column >= 0 && column < w ? (int)((l / tw) * w + column) : -1;
    }
    return make_selection(sources, 16);
}

// load_group_register at W = 8: the register's two image rows, possibly of two images (each
// with its own activation).
static inline AVX512 __m512 load_two_rows(const float *x, haze_input_activation activation, const group_place *place, long c,
                                          long channel, long row, long s, long h, long w) {
    const segments parts = register_segments(s, 8);
    __m512 v = _mm512_setzero_ps(), scale = _mm512_setzero_ps(), shift = _mm512_setzero_ps();
    __mmask16 valid = 0;
    for (long k = 0; k < parts.count; k++) {
        const long q = parts.tile_row[k], y = place->row[q] + row, image = place->image[q];
        if (image < 0 || y < 0 || y >= h) continue;
        const __mmask16 lanes = segment_lanes(&parts, k, w);
        v = load_segment(v, haze_input_plane(x, activation, image, channel, c, h * w) + y * w, lanes, parts.first_lane[k]);
        valid |= lanes;
        if (activation.scale) {
            const long at = image * c + channel;
            scale = _mm512_mask_mov_ps(scale, lanes, _mm512_set1_ps(activation.scale[at]));
            shift = _mm512_mask_mov_ps(shift, lanes, _mm512_set1_ps(activation.shift[at]));
        }
    }
    if (!activation.scale) return v;
    return _mm512_maskz_mov_ps(valid, (__m512)silu_affine_lanes_x16((haze_x16)v, (haze_x16)scale, (haze_x16)shift));
}

// Register s of image row `row` (counted from its tile row's first) of a group, in channel
// `channel` of x [N, C, h, w] laid out W wide, through `activation`: zero outside 0..<h, past
// column w and past the last image.
static inline AVX512 __m512 load_group_register(const float *x, haze_input_activation activation, const group_place *place,
                                                long c, long channel, long row, long s, long h, long w, long layout) {
    if (layout < 16) return load_two_rows(x, activation, place, c, channel, row, s, h, w);
    const long q = register_tile_row(s, layout), y = place->row[q] + row, column = register_column(s, layout);
    const long image = place->image[q];
    if (image < 0 || y < 0 || y >= h) return _mm512_setzero_ps();
    const __mmask16 lanes = first_lanes(w - column);
    const __m512 v = _mm512_maskz_loadu_ps(lanes, haze_input_plane(x, activation, image, channel, c, h * w) + y * w + column);
    if (!activation.scale) return v;
    const long at = image * c + channel;
    return _mm512_maskz_mov_ps(lanes, (__m512)silu_affine_x16((haze_x16)v, activation.scale[at], activation.shift[at]));
}

// Prefetches (into L1) what load_group_register reads for channel `channel` (or, `activation`
// zero, what the output transform writes and adds there): both cache lines a register's 16 floats
// may span; layouts ≥ 16 only. The transforms go through a channel's rows group by group, then on
// to the next channel, whose first rows the hardware prefetcher cannot foresee: where x, y or the
// residual came from L3 rather than L2, those loads stalled the transforms (`perf annotate`: the
// samples after the masked loads). Each group of a channel prefetches the same group's rows of the
// next channel.
static inline AVX512 void prefetch_group_register(const float *x, haze_input_activation activation, const group_place *place,
                                                  long c, long channel, long row, long s, long h, long w, long layout) {
    const long q = register_tile_row(s, layout), y = place->row[q] + row, column = register_column(s, layout);
    const long image = place->image[q];
    if (image < 0 || y < 0 || y >= h || column >= w) return;
    const float *at = haze_input_plane(x, activation, image, channel, c, h * w) + y * w + column;
    _mm_prefetch((const char *)at, _MM_HINT_T0);
    _mm_prefetch((const char *)(at + (w - column < 16 ? w - column - 1 : 15)), _MM_HINT_T0);
}

// The kernels below are instantiated once per layout width (`LAYOUTS`), so that each runs with
// its layout a constant: the W = 8 branches cost the wider layouts nothing.
#define LAYOUTS(call, ...)                                  \
    switch (layout_width(w)) {                              \
    case 8: call(__VA_ARGS__, 8); break;                    \
    case 16: call(__VA_ARGS__, 16); break;                  \
    case 32: call(__VA_ARGS__, 32); break;                  \
    default: call(__VA_ARGS__, 64); break;                  \
    }

INLINE void rows_input(const float *x, haze_input_activation activation, float *v, long n, long c, long first_channel,
                       long channels, long h, long w, long first_group, long groups, long ld, long block, const long layout) {
    selection pick[6];
    for (long k = 0; k < 6; k++) pick[k] = tile_columns(layout, k, -1);
    // Bᵀ d down the columns is taken on the six input rows' whole registers, before the permutes
    // pick the tiles' columns (a selection commutes with it, lane by lane the same arithmetic), then
    // each transformed row's six picks go through B and out: 24 + 12 live registers, not 3 × 36.
    // A tile row's first two input rows are the last two of the tile row above it in the same
    // image: they are carried over (per register column) instead of read and activated again, so
    // each row is read once, not 1.5 times. (Not at W = 8, where a register holds two tile rows.)
    const long slots = layout >= 16 ? layout / 16 : 1;  // registers per image row
    for (long ci = first_channel; ci < first_channel + channels; ci++) {
        group_walk walk = start_walk(first_group, n, h, w);
        __m512 carried[4][2];
        long carried_image[4] = {-1, -1, -1, -1}, carried_row[4] = {0};
        for (long g = 0; g < groups; g++) {
            const group_place place = next_group_place(&walk);
            __m512 t[24];  // t[4i + s]: register s of row i of Bᵀ d
            for (long s = 0; s < 4; s++) {
                const long q = register_tile_row(s, layout), slot = s % slots, image = place.image[q];
                const int below = layout >= 16 && image >= 0 && carried_image[slot] == image && carried_row[slot] + 4 == place.row[q];
                __m512 rows[6];
                if (layout >= 16 && ci + 1 < first_channel + channels)
                    for (long r = below ? 2 : 0; r < 6; r++) prefetch_group_register(x, activation, &place, c, ci + 1, r - 1, s, h, w, layout);
                for (long r = 0; r < 6; r++)
                    rows[r] = below && r < 2 ? carried[slot][r] : load_group_register(x, activation, &place, c, ci, r - 1, s, h, w, layout);
                carried[slot][0] = rows[4], carried[slot][1] = rows[5];
                carried_image[slot] = image, carried_row[slot] = place.row[q];
                input_1d(rows, 1, t + s, 4);
            }
            float *dst = v + ci * ld + g * 16;
            for (int i = 0; i < 6; i++) {
                __m512 d[6], out[6];
                for (int k = 0; k < 6; k++) d[k] = select_lanes(pick[k], t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
                input_1d(d, 1, out, 1);  // (Bᵀ d) B: the row
                for (int k = 0; k < 6; k++) _mm512_storeu_ps(dst + (6 * i + k) * block, out[k]);
            }
        }
    }
}

AVX512 void haze_winograd43_rows_input(const float *x, haze_input_activation activation, float *v, long n, long c,
                                       long first_channel, long channels, long h, long w, long first_group, long groups,
                                       long ld, long block) {
    LAYOUTS(rows_input, x, activation, v, n, c, first_channel, channels, h, w, first_group, groups, ld, block)
}

INLINE void rows_output(const float *m, float *y, haze_output_terms terms, long n, long o, long first_channel, long channels,
                        long h, long w, long first_group, long groups, long ld, long block, const long layout) {
    // Lane e of output register s is pixel p = 16 s + e of a group's row: tile row p / W, column
    // p mod W = 4 tj + j, the lane (p / W)·(W/4) + tj of out[·][j] (source 16 j + lane).
    selection place[4];
    for (long s = 0; s < 4; s++) {
        int sources[16];
        for (long e = 0; e < 16; e++) {
            const long p = 16 * s + e, column = p % layout;
            sources[e] = (int)(16 * (column % 4) + (p / layout) * (layout / 4) + column / 4);
        }
        place[s] = make_selection(sources, 16);
    }
    for (long oc = first_channel; oc < first_channel + channels; oc++) {
        const __m512 shift = _mm512_set1_ps(terms.bias ? terms.bias[oc] : 0.0f);
        group_walk walk = start_walk(first_group, n, h, w);
        for (long g = 0; g < groups; g++) {
            const group_place tiles = next_group_place(&walk);
            // Column by column as M is read, then row by row to the image (24 live registers, not 36 + 24 + 16).
            __m512 cols[24];
            const float *src = m + oc * ld + g * 16;
            for (int j = 0; j < 6; j++) {
                __m512 in[6];
                for (int r = 0; r < 6; r++) in[r] = _mm512_loadu_ps(src + (6 * r + j) * block);
                output_1d(in, 1, cols + j, 6);  // Aᵀ m: [4][6]
            }
            for (long i = 0; i < 4; i++) {
                __m512 out[4];
                output_1d(cols + 6 * i, 1, out, 1);  // (Aᵀ m) A: row i
                for (long s = 0; s < 4; s++) {
                    if (layout >= 16 && oc + 1 < first_channel + channels) {  // as in rows_input
                        prefetch_group_register(y, (haze_input_activation){0}, &tiles, o, oc + 1, i, s, h, w, layout);
                        if (terms.residual)
                            prefetch_group_register(terms.residual, (haze_input_activation){0}, &tiles, o, oc + 1, i, s, h, w, layout);
                    }
                    const __m512 selected = _mm512_add_ps(select_lanes(place[s], out[0], out[1], out[2], out[3]), shift);
                    const segments parts = register_segments(s, layout);
                    for (long k = 0; k < parts.count; k++) {
                        const long q = parts.tile_row[k], yr = tiles.row[q] + i, image = tiles.image[q];
                        if (image < 0 || yr >= h) continue;
                        // Lane first_lane + j of the segment goes to column column + j.
                        const long at = ((image * o + oc) * h + yr) * w + parts.column[k], first = parts.first_lane[k];
                        const __mmask16 columns = segment_lanes(&parts, k, w);
                        __m512 value = selected;
                        if (terms.shifts) value = _mm512_add_ps(value, _mm512_set1_ps(terms.shifts[image * o + oc]));
                        if (terms.residual)
                            value = _mm512_add_ps(value, load_segment(_mm512_setzero_ps(), terms.residual + at, columns, first));
                        store_segment(y + at, columns, first, value);
                    }
                }
            }
        }
    }
}

AVX512 void haze_winograd43_rows_output(const float *m, float *y, haze_output_terms terms, long n, long o,
                                        long first_channel, long channels, long h, long w, long first_group, long groups,
                                        long ld, long block) {
    LAYOUTS(rows_output, m, y, terms, n, o, first_channel, channels, h, w, first_group, groups, ld, block)
}

INLINE void rows_output_gradient(const float *g, float *mbar, long n, long o, long h, long w, long first_group, long groups,
                                 long ld, long block, const long layout) {
    selection pick[4];
    for (long k = 0; k < 4; k++) pick[k] = tile_columns(layout, k, 0);
    for (long oc = 0; oc < o; oc++) {
        group_walk walk = start_walk(first_group, n, h, w);
        for (long gi = 0; gi < groups; gi++) {
            const group_place place = next_group_place(&walk);
            // As in haze_winograd43_rows_input: A ḡ down the columns on the rows' whole registers,
            // then each transformed row's picks through Aᵀ and out.
            __m512 t[24];  // t[4i + s]: register s of row i of A ḡ
            for (long s = 0; s < 4; s++) {
                __m512 rows[4];
                for (long r = 0; r < 4; r++) rows[r] = load_group_register(g, (haze_input_activation){0}, &place, o, oc, r, s, h, w, layout);
                output_gradient_1d(rows, 1, t + s, 4);
            }
            float *dst = mbar + oc * ld + gi * 16;
            for (int i = 0; i < 6; i++) {
                __m512 d[4], out[6];
                for (int k = 0; k < 4; k++) d[k] = select_lanes(pick[k], t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
                output_gradient_1d(d, 1, out, 1);  // (A ḡ) Aᵀ: the row
                for (int k = 0; k < 6; k++) _mm512_storeu_ps(dst + (6 * i + k) * block, out[k]);
            }
        }
    }
}


AVX512 void haze_winograd43_rows_output_gradient(const float *g, float *mbar, long n, long o, long h, long w,
                                                 long first_group, long groups, long ld, long block) {
    LAYOUTS(rows_output_gradient, g, mbar, n, o, h, w, first_group, groups, ld, block)
}
#undef LAYOUTS
#else
int haze_winograd43_available(void) { return 0; }
void haze_winograd43_output_gradient(const float *g, float *mbar, long first_image, long images, long o, long h,
                                     long w, long block) {}
void haze_winograd43_weights_gradient(float *const *slots, long count, float *dw, long o, long c, long first_row,
                                      long row_count) {}
void haze_winograd43_packed_weights(const float *w, float *packed, long o, long c, long first_block,
                                    long block_count) {}
// Callers use F(2×2, 3×3) where haze_winograd43_available() is 0; these are never reached.
int haze_winograd43_rows_fit(long h, long w) { return 0; }
long haze_winograd43_rows_groups(long n, long h, long w) { return 0; }
void haze_winograd43_rows_input(const float *x, haze_input_activation activation, float *v, long n, long c,
                                long first_channel, long channels, long h, long w, long first_group, long groups, long ld,
                                long block) {}
void haze_winograd43_rows_output(const float *m, float *y, haze_output_terms terms, long n, long o, long first_channel,
                                 long channels, long h, long w, long first_group, long groups, long ld, long block) {}
void haze_winograd43_rows_output_gradient(const float *g, float *mbar, long n, long o, long h, long w,
                                          long first_group, long groups, long ld, long block) {}
void haze_winograd43_input(const float *x, haze_input_activation activation, float *v, long first_image, long images,
                           long c, long h, long w, int split, long block) {}
void haze_winograd43_output(const float *m, float *y, haze_output_terms terms, long first_image, long images,
                            long o, long h, long w, int split, long block) {}
#endif
