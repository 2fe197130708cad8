// One Adam / AdamW / Keras-Adam update of n parameters in place (HazeNN's AdamOptimizer, through
// HazeTensor's Tensor.adamUpdate), for elements [first, first + count): the rule of
// AdamOptimizer's documentation, operation for operation as its Swift loop was written, so the
// bits are the same; only now in vector registers (the Swift loop ran scalar divisions and square
// roots). No multiply-add contraction: a fused a·b + c rounds once, and would change the bits.
#pragma STDC FP_CONTRACT OFF

#include "haze_kernels.h"
#include "haze_multiversion.h"
#include <math.h>

// √x without errno (v ≥ 0 here), so that the loops vectorise; IEEE square roots, as sqrtf.
#if defined(__clang__) && __has_builtin(__builtin_elementwise_sqrt)
#define SQRT(x) __builtin_elementwise_sqrt(x)
#else
#define SQRT(x) sqrtf(x)
#endif

MULTIVERSION void haze_adam_update(float *restrict theta, float *restrict m, float *restrict v, const float *restrict g,
                                   long first, long count, const struct haze_adam_rule *rule) {
    const float b1 = rule->beta1, b2 = rule->beta2, lr = rule->learning_rate, wd = rule->weight_decay, eps = rule->epsilon;
    const float step = rule->step_size, root2 = rule->correction2_root;
    const long end = first + count;
    if (rule->decoupled) {  // AdamW: θ ← θ (1 − lr·λ) first
        for (long i = first; i < end; i++) {
            const float gi = g[i];
            theta[i] *= 1 - lr * wd;
            m[i] = b1 * m[i] + (1 - b1) * gi;
            v[i] = b2 * v[i] + (1 - b2) * gi * gi;
            theta[i] -= step * m[i] / (SQRT(v[i]) / root2 + eps);
        }
    } else if (rule->keras) {  // L2 penalty in the gradient, ε on √v
        for (long i = first; i < end; i++) {
            const float gi = g[i] + wd * theta[i];
            m[i] = b1 * m[i] + (1 - b1) * gi;
            v[i] = b2 * v[i] + (1 - b2) * gi * gi;
            theta[i] -= step * m[i] / (SQRT(v[i]) + eps);
        }
    } else {  // Adam: L2 penalty in the gradient
        for (long i = first; i < end; i++) {
            const float gi = g[i] + wd * theta[i];
            m[i] = b1 * m[i] + (1 - b1) * gi;
            v[i] = b2 * v[i] + (1 - b2) * gi * gi;
            theta[i] -= step * m[i] / (SQRT(v[i]) / root2 + eps);
        }
    }
}
