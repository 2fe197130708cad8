// Shared pieces of the AVX-512 kernels: lane masks and offsets (all of them), and for the permute
// kernels (haze_winograd_avx512.h, haze_im2col_avx512.h) registers of 16 floats whose lanes are
// picked out of one to four source registers by two-source permutes, with the lanes that fall
// into padding zeroed by masks. Compiled with target("avx512f") and called only where the CPU has
// AVX-512 (the permute kernels: where has_avx512() says so); elsewhere the portable loops run.
#ifndef HAZE_AVX512_H
#define HAZE_AVX512_H

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
#define HAZE_AVX512 1
#define AVX512 __attribute__((target("avx512f")))

// Whether to run the AVX-512 kernels: the CPU has them and haze_avx512_permutes has not turned
// them off (haze_kernels.c).
extern int haze_permutes_enabled;
static inline int has_avx512(void) { return haze_permutes_enabled && __builtin_cpu_supports("avx512f"); }

// The first n lanes (none for n ≤ 0, all for n ≥ 16).
static inline __mmask16 first_lanes(long n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

// Lane l: l · distance (the offsets of a gather or scatter whose lanes are `distance` floats apart).
static inline AVX512 __m512i lane_offsets(long distance) {
    return _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                              _mm512_set1_epi32((int)distance));
}

// 16 × 16 transpose in registers: y[j·ldy + i] = x[i·ldx + j].
static inline AVX512 void transpose16(const float *x, long ldx, float *y, long ldy) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(x + i * ldx);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xDD);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
    for (int j = 0; j < 16; j++) _mm512_storeu_ps(y + j * ldy, r[j]);
}

// Where each lane of a 16-lane register comes from, out of 64 sources held in four registers:
// `index` (bit 4 picks the register of a pair), the lanes taken from the first pair (sources
// 0–31) and from the second (32–63); the other lanes are zero.
typedef struct {
    __m512i index;
    __mmask16 low, high;
} selection;

// Lane t < lanes takes source sources[t] (−1: zero); the lanes past `lanes` are zero.
static inline AVX512 selection make_selection(const int *sources, long lanes) {
    int index[16] = {0};
    __mmask16 low = 0, high = 0;
    for (long t = 0; t < lanes; t++) {
        const int source = sources[t];
        if (source < 0) continue;
        index[t] = source;
        if (source < 32) low |= (__mmask16)(1u << t);
        else high |= (__mmask16)(1u << t);
    }
    selection s = {_mm512_loadu_si512(index), low, high};
    return s;
}

static inline AVX512 __m512 select_lanes(selection s, __m512 r0, __m512 r1, __m512 r2, __m512 r3) {
    const __m512 low = _mm512_maskz_permutex2var_ps(s.low, r0, s.index, r1);
    return _mm512_mask_blend_ps(s.high, low, _mm512_permutex2var_ps(r2, s.index, r3));
}

static inline __mmask16 plane_mask(long pixels, int part) { return first_lanes(pixels - 16 * part); }

// Row y of a plane h × w (w ≤ 32) as two registers, zero outside 0..<h and past w.
static inline AVX512 void load_row(const float *plane, long y, long h, long w, __m512 *lo, __m512 *hi) {
    if (y >= 0 && y < h) {
        *lo = _mm512_maskz_loadu_ps(plane_mask(w, 0), plane + y * w);
        *hi = _mm512_maskz_loadu_ps(plane_mask(w, 1), plane + y * w + 16);
    } else {
        *lo = *hi = _mm512_setzero_ps();
    }
}

// columns[j], j < count: lane t < lanes takes column stride · t + j + offset of a row held in two
// registers (load_row), zero where that column is outside 0..<w.
static inline AVX512 void column_selections(selection *columns, int count, long stride, long offset, long w,
                                            long lanes) {
    for (int j = 0; j < count; j++) {
        int source[16];
        for (long t = 0; t < lanes; t++) {
            const long column = stride * t + j + offset;
            source[t] = column >= 0 && column < w ? (int)column : -1;
        }
        columns[j] = make_selection(source, lanes);
    }
}

// Lane x of the result: the sum of acc[x]'s 16 lanes, for 16 accumulators at once (a tree of
// 128-bit and 32-bit lane shuffles, 16 adds instead of 16 horizontal reductions).
static inline AVX512 __m512 haze_sum16(const __m512 *acc) {
    // Lane x of the tree's sums comes from acc[order[x]] before the last permute (and back).
    static const int order[16] = {0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15};
    __m512 v[8], q[4], z[2];
    for (int i = 0; i < 8; i++)  // lanes 0–7: acc[i]'s halves added; 8–15: acc[i + 8]'s
        v[i] = _mm512_add_ps(_mm512_shuffle_f32x4(acc[i], acc[i + 8], 0x44), _mm512_shuffle_f32x4(acc[i], acc[i + 8], 0xEE));
    for (int i = 0; i < 4; i++)  // quarters
        q[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[i], v[i + 4], 0x88), _mm512_shuffle_f32x4(v[i], v[i + 4], 0xDD));
    for (int i = 0; i < 2; i++)
        z[i] = _mm512_add_ps(_mm512_shuffle_ps(q[i], q[i + 2], 0x44), _mm512_shuffle_ps(q[i], q[i + 2], 0xEE));
    const __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(z[0], z[1], 0x88), _mm512_shuffle_ps(z[0], z[1], 0xDD));
    return _mm512_permutexvar_ps(_mm512_loadu_si512(order), sums);
}

#endif
#endif
