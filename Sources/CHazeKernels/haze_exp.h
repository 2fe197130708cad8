// exp(x) = 2^n · p(r), n = round(x / ln 2), r = x − n ln 2 (Cody–Waite split of ln 2), and p
// the degree-7 Taylor polynomial of e^r on |r| ≤ ln2/2 (relative error < 1e-8, below float
// rounding). The two steps as expressions of a float or of a vector of floats, shared by the
// scalar exp_approx (below: haze_kernels.c, haze_linear_attention.c) and the 16-lane exp_x16
// (haze_attention.c, and silu_affine_x16 in the Winograd input transforms): the same steps, so
// the same bits lane by lane.
#ifndef HAZE_EXP_H
#define HAZE_EXP_H

#include <math.h>
#include <string.h>

#define HAZE_EXP_REDUCED(x, n) (((x) - (n) * 0.693145751953125f) - (n) * 1.428606765330187e-6f)
#define HAZE_EXP_POLYNOMIAL(r)                                                                                 \
    (((((((1.0f / 5040 * (r) + 1.0f / 720) * (r) + 1.0f / 120) * (r) + 1.0f / 24) * (r) + 1.0f / 6) * (r) + 0.5f) * \
       (r) + 1.0f) * (r) + 1.0f)

// Always inlined, so that it is compiled for the instruction set of each multiversioned caller.
static inline __attribute__((always_inline)) float exp_approx(float x) {
    x = fminf(fmaxf(x, -87.3f), 88.7f);
    const float n = rintf(x * 1.44269504088896341f);
    const float p = HAZE_EXP_POLYNOMIAL(HAZE_EXP_REDUCED(x, n));
    const int bits = ((int)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// 16 floats (one zmm register where the caller is compiled for AVX-512). A file whose callers are
// AVX-512 functions (not target clones) defines HAZE_X16_TARGET as that target attribute before
// including this header, so that the helpers may take and return the vectors there.
#ifndef HAZE_X16_TARGET
#define HAZE_X16_TARGET
#endif
typedef float haze_x16 __attribute__((ext_vector_type(16)));
typedef int haze_int_x16 __attribute__((ext_vector_type(16)));

// exp_approx on 16 lanes.
static inline __attribute__((always_inline)) HAZE_X16_TARGET haze_x16 exp_x16(haze_x16 x) {
    x = __builtin_elementwise_min(__builtin_elementwise_max(x, (haze_x16)-87.3f), (haze_x16)88.7f);
    const haze_x16 n = __builtin_elementwise_roundeven(x * 1.44269504088896341f);
    const haze_x16 p = HAZE_EXP_POLYNOMIAL(HAZE_EXP_REDUCED(x, n));
    const haze_int_x16 bits = (__builtin_convertvector(n, haze_int_x16) + 127) << 23;
    return p * __builtin_bit_cast(haze_x16, bits);
}

// SiLU(x · scale + shift) on 16 lanes, with a scale and shift per lane (lanes of different
// images) or, silu_affine_x16, one for all: the steps of haze_group_norm_forward's loop with silu
// (a fused multiply-add, then pre / (1 + exp(−pre))), so a convolution that reads its input
// through a group norm and SiLU sees the values that kernel writes.
static inline __attribute__((always_inline)) HAZE_X16_TARGET haze_x16 silu_affine_lanes_x16(haze_x16 x, haze_x16 scale,
                                                                                         haze_x16 shift) {
    const haze_x16 pre = x * scale + shift;
    return pre / (1.0f + exp_x16(-pre));
}

static inline __attribute__((always_inline)) HAZE_X16_TARGET haze_x16 silu_affine_x16(haze_x16 x, float scale, float shift) {
    return silu_affine_lanes_x16(x, (haze_x16)scale, (haze_x16)shift);
}

#endif
