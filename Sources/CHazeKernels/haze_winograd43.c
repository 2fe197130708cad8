// Winograd F(4×4, 3×3) for 3×3, stride-1, padding-1 convolutions on small images (at most 8×8:
// the lower levels of a U-Net), AVX-512. Each 4×4 output tile is
//   Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A
// over the 6×6 input tiles d_c (stride 4, starting one pixel up-left, zero outside the image), with
//   Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1],
//   G = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1/24 1/12 ⅙; 1/24 −1/12 ⅙; 0 0 1],
//   Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1]
// (Lavin & Gray 2016). On a 7×7 or 8×8 image that is 2 × 2 tiles of 36 positions: 144 products per
// channel pair and image where F(2×2, 3×3) needs 16 tiles of 16 positions, 256 — 44 % fewer
// multiply-adds in the 36 matrix products M[ξ] [O, T] = U[ξ] [O, C] · V[ξ] [C, T].
// The vector lanes hold 16 images: column t = tile · 16 + image of V and M, so every transform
// reads and writes whole vectors; x is read by gathers (one per pixel and channel, images
// C·H·W apart) and y written by scatters.

#include "haze_kernels.h"
#include "haze_multiversion.h"

long haze_winograd43_tiles(long h, long w) { return ((h + 3) / 4) * ((w + 3) / 4) * 16; }

MULTIVERSION void haze_winograd43_weights(const float *w, float *u, long o, long c, long first_row, long row_count) {
    const long plane = o * c;
    for (long r = first_row; r < first_row + row_count; r++) {
        float *restrict dst = u + r * c;
        const float *restrict k = w + r * c * 9;
#pragma clang loop vectorize(assume_safety) vectorize_width(8) interleave_count(1)
        for (long s = 0; s < c; s++) {
            const float *g = k + s * 9;
            // G g, column j: G (g0j, g1j, g2j) (HAZE_G: the six rows of G times a 3-vector); then
            // (G g) Gᵀ, row i: G times row i of G g, at positions ξ = 6i + j.
#define HAZE_G(a0, a1, a2, r0, r1, r2, r3, r4, r5)                                            \
            const float r0 = (a0) / 4, r1 = -((a0) + (a1) + (a2)) / 6, r2 = -((a0) - (a1) + (a2)) / 6, \
                        r3 = (a0) / 24 + (a1) / 12 + (a2) / 6, r4 = (a0) / 24 - (a1) / 12 + (a2) / 6, r5 = (a2);
            HAZE_G(g[0], g[3], g[6], t00, t10, t20, t30, t40, t50)
            HAZE_G(g[1], g[4], g[7], t01, t11, t21, t31, t41, t51)
            HAZE_G(g[2], g[5], g[8], t02, t12, t22, t32, t42, t52)
#define HAZE_ROW(i, a0, a1, a2)                                                                   \
            {                                                                                     \
                HAZE_G(a0, a1, a2, u0, u1, u2, u3, u4, u5)                                        \
                dst[(6 * i + 0) * plane + s] = u0;                                                \
                dst[(6 * i + 1) * plane + s] = u1;                                                \
                dst[(6 * i + 2) * plane + s] = u2;                                                \
                dst[(6 * i + 3) * plane + s] = u3;                                                \
                dst[(6 * i + 4) * plane + s] = u4;                                                \
                dst[(6 * i + 5) * plane + s] = u5;                                                \
            }
            HAZE_ROW(0, t00, t01, t02)
            HAZE_ROW(1, t10, t11, t12)
            HAZE_ROW(2, t20, t21, t22)
            HAZE_ROW(3, t30, t31, t32)
            HAZE_ROW(4, t40, t41, t42)
            HAZE_ROW(5, t50, t51, t52)
#undef HAZE_ROW
#undef HAZE_G
        }
    }
}

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
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

static __mmask16 image_lanes(long images) { return images >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << images) - 1); }

AVX512 void haze_winograd43_input(const float *x, float *v, long first_image, long images, long c, long h, long w,
                                  long block) {
    const long th = (h + 3) / 4, tw = (w + 3) / 4, hp = 4 * th + 2, wp = 4 * tw + 2, T = th * tw * 16;
    const __mmask16 lanes = image_lanes(images);
    const __m512i apart = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32((int)(c * h * w)));
    __m512 plane[10 * 10];  // one channel of the 16 images, zero-padded: [hp][wp]
    for (long ci = 0; ci < c; ci++) {
        const float *src = x + (first_image * c + ci) * h * w;
        for (long r = 0; r < hp; r++)
            for (long q = 0; q < wp; q++) {
                const long sr = r - 1, sq = q - 1;
                plane[r * wp + q] = sr >= 0 && sr < h && sq >= 0 && sq < w
                    ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, apart, src + sr * w + sq, 4)
                    : _mm512_setzero_ps();
            }
        for (long ti = 0; ti < th; ti++)
            for (long tj = 0; tj < tw; tj++) {
                __m512 rows[36], out[36];
                const __m512 *d = plane + 4 * ti * wp + 4 * tj;
                for (int j = 0; j < 6; j++) input_1d(d + j, wp, rows + j, 6);        // Bᵀ d: columns
                for (int i = 0; i < 6; i++) input_1d(rows + 6 * i, 1, out + 6 * i, 1);  // (Bᵀ d) B: rows
                float *dst = v + ci * T + (ti * tw + tj) * 16;
                for (int xi = 0; xi < 36; xi++) _mm512_storeu_ps(dst + xi * block, out[xi]);
            }
    }
}

AVX512 void haze_winograd43_output(const float *m, float *y, const float *bias, long first_image, long images,
                                   long o, long h, long w, long block) {
    const long th = (h + 3) / 4, tw = (w + 3) / 4, T = th * tw * 16;
    const __mmask16 lanes = image_lanes(images);
    const __m512i apart = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32((int)(o * h * w)));
    for (long oc = 0; oc < o; oc++) {
        float *dst = y + (first_image * o + oc) * h * w;
        const __m512 shift = _mm512_set1_ps(bias ? bias[oc] : 0.0f);
        for (long ti = 0; ti < th; ti++)
            for (long tj = 0; tj < tw; tj++) {
                __m512 in[36], cols[24], out[16];
                const float *src = m + oc * T + (ti * tw + tj) * 16;
                for (int xi = 0; xi < 36; xi++) in[xi] = _mm512_loadu_ps(src + xi * block);
                for (int j = 0; j < 6; j++) output_1d(in + j, 6, cols + j, 6);        // Aᵀ m: [4][6]
                for (int i = 0; i < 4; i++) output_1d(cols + 6 * i, 1, out + 4 * i, 1);  // (Aᵀ m) A: [4][4]
                for (int i = 0; i < 4 && 4 * ti + i < h; i++)
                    for (int j = 0; j < 4 && 4 * tj + j < w; j++)
                        _mm512_mask_i32scatter_ps(dst + (4 * ti + i) * w + 4 * tj + j, lanes, apart,
                                                  _mm512_add_ps(out[4 * i + j], shift), 4);
            }
    }
}
#else
int haze_winograd43_available(void) { return 0; }
// Callers use F(2×2, 3×3) where haze_winograd43_available() is 0; these are never reached.
void haze_winograd43_input(const float *x, float *v, long first_image, long images, long c, long h, long w,
                           long block) {}
void haze_winograd43_output(const float *m, float *y, const float *bias, long first_image, long images,
                            long o, long h, long w, long block) {}
#endif
