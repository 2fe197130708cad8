#ifndef HAZE_KERNELS_H
#define HAZE_KERNELS_H

#include <stdint.h>

// Vectorised elementwise kernels that need exp: C loops that the compiler vectorises for the
// widest instruction set the CPU has (AVX-512, AVX2 or SSE2, chosen at load time on Linux).
// Each works on n contiguous floats; callers split the work over threads.

/// y = e^x
void haze_exp(const float *x, float *y, long n);
/// y = 1 / (1 + e^-x)
void haze_sigmoid(const float *x, float *y, long n);
/// y = x / (1 + e^-x)
void haze_silu(const float *x, float *y, long n);
/// Nearest-neighbour 2× upsampling of `rows` image rows w wide (of any planes): x [rows, w] →
/// y [2·rows, 2w], each value copied to a 2×2 block.
void haze_upsample_nearest2x(const float *x, float *y, long rows, long w);
/// dx = g * s * (1 + x * (1 - s)),  s = sigmoid(x)
void haze_silu_backward(const float *x, const float *g, float *dx, long n);
/// Softmax (or log-softmax when log_softmax != 0) of each of `rows` rows of length d.
void haze_softmax_rows(const float *x, float *y, long rows, long d, int log_softmax);
/// Σ x[0..<n], in 16 interleaved partial sums (vectorised; a fixed order, so reproducible).
float haze_sum(const float *x, long n);
/// Σ x[i]² in double, in 8 interleaved partial sums (vectorised; a fixed order, so reproducible).
double haze_sum_squares(const float *x, long n);



/// C[m,n] = alpha * A[m,k] B[k,n], all row-major and contiguous: for matrices too small for
/// a BLAS call to pay off (attention heads of a few dozen tokens).
void haze_small_matmul(const float *a, const float *b, float *c, long m, long n, long k, float alpha);
/// The worker pool of Parallel.forEach (haze_parallel.c): fn(context, chunk) for every chunk in
/// 0..<chunks, on the calling thread and up to threads − 1 workers that spin a moment between jobs.
/// Returns 1 when done; 0 (nothing run) inside a chunk of another job or for fewer than 2 chunks or
/// threads; −1 (nothing run) while another thread's job runs.
typedef void (*haze_chunk_fn)(void *context, long chunk);
int haze_parallel_run(long chunks, long threads, haze_chunk_fn fn, void *context);
/// y[cols, rows] = x[rows, cols]ᵀ
void haze_transpose(const float *x, float *y, long rows, long cols);
/// y[j·ldy + i] = x[i·ldx + j] for i < rows, j < cols, in cache-sized tiles (large transposes).
void haze_transpose_tiled(const float *x, long ldx, float *y, long ldy, long rows, long cols);

/// Layer norm over the channels of one image's NCHW planes x [C, S], positions [first, first +
/// count) (haze_channel_norm.c). Forward: y, and per position mean and 1/std (S floats each).
/// Backward: ∂x for those positions, and ∂γ, ∂β [C] accumulated (+=); scratch: 2·count floats.
/// With residual non-NULL (x's layout), the forward's y is that plus residual.
void haze_channel_norm_forward(const float *x, const float *residual, float *y, const float *gamma, const float *beta,
                               long c, long s, long first, long count, float eps, float *mean, float *rstd);
void haze_channel_norm_backward(const float *x, const float *g, const float *gamma, const float *mean,
                                const float *rstd, float *dx, float *dgamma, float *dbeta, long c, long s,
                                long first, long count, float *scratch);
/// The TensorFlow notebook's linear attention between its two 1×1 convolutions, per head
/// (haze_linear_attention.c): qkv [B, 3P, N] (NCHW planes of q, k, v; P = heads·d channels, N
/// positions, N a multiple of heads) → y [B, P, N], for heads `first ..< first + count` counted
/// over (image, head). The backward writes ∂qkv for those heads from ∂y, recomputing the forward.
/// `work`: haze_linear_attention_work_size(N, d, backward) floats per calling thread.
long haze_linear_attention_work_size(long n, long d, int backward);
void haze_linear_attention_forward(const float *qkv, float *y, long p, long n, long heads, long d, float alpha,
                                   long first, long count, float *work);
/// The notebook's whole attention block for inference, one head (image b, head h) at a time:
/// y = x + LayerNorm_C(W_out · attention(W_qkv · x) + b_out) at the head's positions, with the
/// q/k/v convolution computed per head. haze_linear_attention_project writes the head's q̃, k̃, ṽ
/// into `work` as the products [N/heads, P] = Xᵀ · Wᵀ_part, from the head's positions of x [C, N]
/// packed by haze_gemm_pack_transposed (x_packed) and the projection's transpose wt [C, 3P];
/// haze_linear_attention_block_forward runs the head, its output convolution (out_packed: W_out
/// [C, P] packed by haze_gemm_pack) and the channel layer norm (γ, β, ε) plus x, into y [B, C, N].
/// Both need haze_gemm_packed_available(). The projection writes q̃, k̃, ṽ part_stride floats apart
/// (for the block forward: at work + 2·d², d·N apart).
void haze_linear_attention_project(const float *x_packed, const float *wt, long c, long p, long n, long heads,
                                   float *qkv, long part_stride);
void haze_linear_attention_block_forward(const float *x, float *y, const float *out_packed, const float *out_bias,
                                         const float *gamma, const float *beta, float eps, long channels, long p, long n,
                                         long heads, long d, float alpha, long b, long h, float *work);
/// The same block for training, head h of one image, keeping what the backward needs: qkv [3, N, P]
/// holds the image's projected q̃, k̃, ṽ in the head layout (haze_linear_attention_project with
/// part_stride N·P), and the head's q and k are softmaxed there in place; c [d, d] gets α k vᵀ,
/// o [N, P] the head's output rows, z [C, N] the output convolution plus bias, mean and rstd [N]
/// the norm's statistics; x, y: the image's [C, N]. work: d·N floats.
void haze_linear_attention_block_train_forward(const float *x, float *y, float *qkv, float *c, float *o, float *z,
                                               float *mean, float *rstd, const float *out_packed, const float *out_bias,
                                               const float *gamma, const float *beta, float eps, long channels, long p,
                                               long n, long heads, long d, float alpha, long h, float *work);
/// One head's backward in the head layout: ∂q̃, ∂k̃, ∂ṽ [d, N] (before the softmaxes) from the saved
/// q, k (softmaxed), v, c = α k vᵀ and ∂o [d, N]. scratch: d·d + N floats.
void haze_linear_attention_head_backward(const float *q, const float *k, const float *v, const float *c,
                                         const float *dout, float *dq, float *dk, float *dv, long d, long n,
                                         float alpha, float *scratch);
void haze_linear_attention_backward(const float *qkv, const float *dy, float *dqkv, long p, long n, long heads,
                                    long d, float alpha, long first, long count, float *work);
/// One attention head, o [L, DV] = softmax(α q kᵀ) v for q [L, D], k [S, D], v [S, DV]
/// (haze_attention.c), or with `channels_first` the same for the transposes q [D, L], k [D, S],
/// v [DV, S] → o [DV, L]. With pt non-NULL also writes the probabilities transposed, pt [S, L].
/// work: 16·(S + 1) floats.
void haze_attention_head(const float *q, const float *k, const float *v, float *o, float *pt, float *work,
                         long l, long s, long d, long dv, float alpha, int channels_first);
/// The softmax backward on transposed probabilities pt [S, L] (column i = query i): overwrites
/// dpt [S, L] (∂Pᵀ) with ∂Sᵀ = Pᵀ ⊙ (∂Pᵀ − dot), dot[i] = Σ_j P[i][j] ∂P[i][j] (dot: L floats).
void haze_softmax_columns_backward(const float *pt, float *dpt, float *dot, long s, long l);

/// Group norm forward for groups q in [first, first + count): x, y are [N·G groups, per_group, spatial];
/// channel of (q, c) = (q mod groups)·per_group + c; gamma/beta may be NULL, else read at
/// (q / groups)·affine_stride + channel: per channel [C] (affine_stride 0) or per image and
/// channel [N, C] (affine_stride C). With silu != 0, y is SiLU of the normalised values. With
/// residual non-NULL (x's layout), y is that plus residual (a ResNet block's skip). Writes
/// mean, rstd [N·G].
void haze_group_norm_forward(const float *x, const float *residual, float *y, const float *gamma, const float *beta,
                             long affine_stride, long first, long count, long groups, long per_group,
                             long spatial, float eps, int silu, float *mean_out, float *rstd_out);
/// The group norm of the same groups as a per-image affine transform, without writing y: for
/// each (n, channel) of those groups, scale = γ·rstd and shift = β − μ·scale into scale_out and
/// shift_out [N, C], so that the forward's y = x·scale + shift (then SiLU) to the bit (see
/// haze_input_activation). gamma, beta and affine_stride as in the forward.
/// Where second is not NULL, x is the concatenation along the channels of x [N, first_channels, S]
/// and second (the rest), read in place (see haze_input_activation); a group with channels in both
/// is copied into one piece first, so the sums are those of the concatenation.
void haze_group_norm_affine(const float *x, const float *second, long first_channels, const float *gamma,
                            const float *beta, long affine_stride, long first, long count, long groups, long per_group,
                            long spatial, float eps, float *scale_out, float *shift_out);
/// Group norm backward for the same groups: dx, and per (n, channel) partial sums
/// dgamma_parts = Σ g·x̂, dbeta_parts = Σ g, both [N, C]. With silu != 0, g is the gradient of
/// the SiLU output (the forward's silu), and beta must be the forward's; gamma, beta and
/// affine_stride as in the forward.
void haze_group_norm_backward(const float *x, const float *g, const float *gamma,
                              const float *mean, const float *rstd, float *dx,
                              float *dgamma_parts, float *dbeta_parts, const float *beta, int silu,
                              long affine_stride, long first, long count, long groups, long per_group, long spatial);

/// im2col for images [first_image, first_image + images) of x: [N, C, H, W] into cols: [C·KH·KW, images·HO·WO]
/// (zero padding top/left as given; the bottom/right padding is implied by HO, WO).
void haze_im2col(const float *x, float *cols, long first_image, long images, long c, long h, long w,
                 long kh, long kw, long stride, long top, long left, long ho, long wo);
/// The adjoint of haze_im2col: overwrites those images' planes of dx with the summed columns.
void haze_col2im(const float *cols, float *dx, long first_image, long images, long c, long h, long w,
                 long kh, long kw, long stride, long top, long left, long ho, long wo);

/// Products with a packed left-hand matrix (haze_gemm.c). haze_gemm_packed_size: floats of the
/// packed form of an M × K matrix. haze_gemm_pack: A [M, K] (row stride lda) → packed;
/// haze_gemm_pack_transposed: the same for A = aᵀ, a [K, M] (row stride lda).
/// haze_gemm_packed: C [M, N] (row stride ldc) = A · B, or C += A · B with `accumulate`, for
/// B [K, N] (row stride ldb). Fast where haze_gemm_packed_available() (AVX-512); elsewhere a plain
/// loop (use BLAS instead).
long haze_gemm_packed_size(long m, long k);
void haze_gemm_pack(const float *a, long lda, float *packed, long m, long k);
void haze_gemm_pack_transposed(const float *a, long lda, float *packed, long m, long k);
int haze_gemm_packed_available(void);
void haze_gemm_packed(const float *packed, const float *b, long ldb, float *c, long ldc, long m, long n, long k,
                      int accumulate);
/// haze_gemm_packed for B the concatenation of b's rows [0, split) and second's [split, K) (the
/// same row stride): a 1×1 convolution of two tensors concatenated along the channels, read in
/// place. The same bits as haze_gemm_packed on B in one piece.
void haze_gemm_packed_concatenated(const float *packed, const float *b, const float *second, long split, long ldb,
                                   float *c, long ldc, long m, long n, long k, int accumulate);
/// Reads x[0..<count] once, in address order (one load per 64-byte line), so that a product which
/// then walks it in 32-column panels finds it in L2. The panels' rows are strided lines, which the
/// hardware prefetchers follow poorly: a 1×1 convolution's product on a cold 300 KB image ran at
/// 55–70 % of its rate from L2.
void haze_read_into_cache(const float *x, long count);
/// The same product for A [M, K] row-major (row stride lda), not packed: for a left-hand matrix used
/// in one product only (a Winograd weight gradient's M̄[ξ]).
void haze_gemm_rows(const float *a, long lda, const float *b, long ldb, float *c, long ldc, long m, long n, long k,
                    int accumulate);

/// The bf16 products (haze_gemm_bf16.c): A packed as pairs of bf16 along K from haze_gemm_pack's
/// float layout (haze_gemm_pack_bf16, haze_gemm_packed_bf16_size 32-bit words, a layout that
/// depends on the kernel), B float32 rounded to bf16 as it is read, float32 sums. Fast where
/// haze_gemm_bf16_available(): AMX-BF16, AVX512_BF16 or ARMv8.6 BF16, which haze_gemm_bf16_kernel
/// names ("AMX-BF16", "AVX512_BF16", "Arm BF16"; NULL where there is none).
long haze_gemm_packed_bf16_size(long m, long k);
void haze_gemm_pack_bf16(const float *packed, uint32_t *out, long m, long k);
/// The same words straight from A [M, K] row-major (row stride lda), without haze_gemm_pack's float
/// copy; an 8-row block of A may be packed alone, into out + r0 · ⌈K/2⌉. Only where
/// haze_gemm_bf16_packs_rows(): every kernel's layout but AMX's tiles.
void haze_gemm_pack_bf16_rows(const float *a, long lda, uint32_t *out, long m, long k);
int haze_gemm_bf16_packs_rows(void);
int haze_gemm_bf16_available(void);
const char *haze_gemm_bf16_kernel(void);
void haze_gemm_packed_bf16(const uint32_t *packed, const float *b, long ldb, float *c, long ldc, long m, long n, long k,
                           int accumulate);

/// Direct convolution for strided convolutions (haze_direct_conv.c), AVX-512 only
/// (haze_direct_conv_available()). haze_direct_pack: w [O, K] (K = C·KH·KW) → packed
/// (haze_direct_packed_size floats). haze_conv_direct: y for images [first_image, first_image + images)
/// of x [N, C, H, W] into y [N, O, HO, WO], plus bias [O] (may be NULL), zero padding top/left as
/// given (bottom/right implied by HO, WO); `scratch` holds haze_direct_scratch_size floats.
long haze_direct_packed_size(long o, long k);
void haze_direct_pack(const float *w, float *packed, long o, long k);
long haze_direct_scratch_size(long images, long c, long kh, long kw, long stride, long ho, long wo);
int haze_direct_conv_available(void);
void haze_conv_direct(const float *x, const float *packed, const float *bias, float *y, float *scratch,
                      long first_image, long images, long c, long h, long w, long o, long kh, long kw,
                      long stride, long top, long left, long ho, long wo);

/// Winograd F(2×2, 3×3) for 3×3, stride-1, padding-1 convolutions (see haze_winograd.c).
/// Weights w [O, C, 3, 3] → u [16, O, C]; writes rows [first_row, first_row + row_count) of
/// each of the 16 blocks.
void haze_winograd_weights(const float *w, float *u, long o, long c, long first_row, long row_count);
/// The kernels of the input-gradient convolution, w [O, C, 3, 3] flipped in space with the
/// channels swapped → wf [C, O, 3, 3]; writes rows [first_row, first_row + row_count) of wf.
void haze_flipped_kernels(const float *w, float *wf, long o, long c, long first_row, long row_count);
/// Floats between the 16 position blocks ξ of a transformed buffer of `rows` rows of `tiles`
/// floats (v, m, gt below): rows · tiles rounded up to 4 KB, plus one cache line, so that the 16
/// streams of a transform fall into different L1 sets.
long haze_winograd_block(long rows, long tiles);
/// CPU features the kernels dispatch on (haze_cpu.c): bits of HAZE_CPU_*, from CPUID.
#define HAZE_CPU_AVX2_FMA 1
#define HAZE_CPU_AVX512 2
#define HAZE_CPU_AVX512_BF16 4
int haze_cpu_features(void);
/// The multiply-add ceiling of one core (haze_cpu.c, for haze-bench): `rounds` rounds of 24
/// independent 16-lane FMAs (haze_fma_ceiling_f32, AVX-512) or VDPBF16PS (haze_fma_ceiling_bf16,
/// AVX512_BF16), registers only. Returns the floating-point operations done; 0 without the instructions.
double haze_fma_ceiling_f32(long rounds);
double haze_fma_ceiling_bf16(long rounds);
/// One Adam update in place of elements [first, first + count) (haze_adam.c): AdamW (decoupled),
/// Keras' Adam (keras: ε on √v) or Adam, with step_size and correction2_root as AdamOptimizer
/// computes them for the step.
struct haze_adam_rule {
    float beta1, beta2, learning_rate, weight_decay, epsilon, step_size, correction2_root;
    int decoupled, keras;
};
void haze_adam_update(float *theta, float *m, float *v, const float *g, long first, long count,
                      const struct haze_adam_rule *rule);
/// Whether the Winograd transforms and im2col/col2im use their AVX-512 permute kernels on planes
/// up to 32 wide (default, where the CPU has AVX-512) or the portable loops; tests compare the two.
void haze_avx512_permutes(int enabled);
/// Winograd F(4×4, 3×3) for images of at most 8×8 (haze_winograd43.c), where
/// haze_winograd43_available() (AVX-512). haze_winograd43_packed_weights: w [O, C, 3, 3] →
/// u [36, O, C] = G g Gᵀ, written straight into haze_gemm_pack's layout (36 packed matrices
/// haze_gemm_packed_size(O, C) floats apart; 8-row blocks [first_block, first_block + block_count)).
/// T = haze_winograd43_tiles(H, W) columns per item of ≤ 16 images: column tile · 16 + image.
/// haze_winograd43_input: images [first_image, first_image + images) of x [N, C, H, W] →
/// v [36, C, T] (blocks `block` floats apart); haze_winograd43_output: m [36, O, T] → those
/// images' planes of y [N, O, H, W] plus `terms`. With `split` where haze_winograd43_splits(H, W)
/// (7×7), both take a 4- and a 3-output tile each way (haze_winograd43.c), and position ξ has
/// only the haze_winograd43_columns(H, W, split, ξ, &first) columns from `first` (all T
/// otherwise). The weight gradient's halves (split 0):
/// haze_winograd43_output_gradient: those images' planes of g [N, O, H, W] → m̄ [36, O, T],
/// m̄ = A ḡ Aᵀ per tile; haze_winograd43_weights_gradient: the sum of the `count` partial sums
/// [36, O, C] at `slots` (added in order into slots[0]) → ∂w [O, C, 3, 3] = Gᵀ ∂U G, rows
/// [first_row, first_row + row_count).
/// What an output transform adds to each value y[n, oc, i, j] of the product, in this order (each
/// may be NULL): bias[oc], shifts[n · O + oc] (a U-Net block's time embedding), residual[n, oc, i, j]
/// (its skip connection; same layout as y). Adding them here is the same sums in the same order as
/// adding them in passes of their own, without another pass over y.
typedef struct {
    const float *bias, *shifts, *residual;
} haze_output_terms;
/// What an input transform applies to each value x[n, c, i, j] as it reads it, where scale is not
/// NULL: SiLU(x · scale[n · C + c] + shift[n · C + c]), the padding staying zero. With the
/// scale and shift of haze_group_norm_affine, the convolution reads haze_group_norm_forward's
/// output with silu (the same bits) without that output being written.
/// Where second is not NULL (F(4×4) transforms only), the input is the concatenation along the
/// channels of x [N, first_channels, H, W] and second [N, C − first_channels, H, W], read in place:
/// a U-Net decoder block's input and skip connection without the copy (haze_input_plane).
typedef struct {
    const float *scale, *shift;
    const float *second;
    long first_channels;
} haze_input_activation;

/// The plane of channel c of image n of a transform's input x [N, C, ·] of `spatial` values, or of
/// the concatenation x, activation.second (see haze_input_activation).
static inline const float *haze_input_plane(const float *x, haze_input_activation activation, long n, long c,
                                            long channels, long spatial) {
    if (!activation.second) return x + (n * channels + c) * spatial;
    const long first = activation.first_channels;
    return c < first ? x + (n * first + c) * spatial : activation.second + (n * (channels - first) + c - first) * spatial;
}
void haze_winograd43_packed_weights(const float *w, float *packed, long o, long c, long first_block,
                                    long block_count);
long haze_winograd43_tiles(long h, long w);
int haze_winograd43_available(void);
int haze_winograd43_splits(long h, long w);
long haze_winograd43_columns(long h, long w, int split, int xi, long *first);
void haze_winograd43_input(const float *x, haze_input_activation activation, float *v, long first_image, long images,
                           long c, long h, long w, int split, long block);
void haze_winograd43_output(const float *m, float *y, haze_output_terms terms, long first_image, long images,
                            long o, long h, long w, int split, long block);
void haze_winograd43_output_gradient(const float *g, float *mbar, long first_image, long images, long o, long h,
                                     long w, long block);
void haze_winograd43_weights_gradient(float *const *slots, long count, float *dw, long o, long c, long first_row,
                                      long row_count);
/// The same with the tiles along the lanes, for planes where haze_winograd43_rows_fit(H, W) (W = 32
/// or 64 with H a multiple of 256 / W; W from 9 to 16 and H over 8, laid out 16 wide; W from 25
/// to 31 and H over 16, laid out 32 wide; or W from 5 to 8, laid out 8 wide): groups of 16
/// consecutive tiles, the tile rows of the N images x [N, C, H, W] one after the other
/// (haze_winograd43_rows_groups(N, H, W) groups; a group may span several images). Groups
/// [first_group, first_group + groups) go to (or come from) columns 16 (g − first_group) + tile of
/// v [36, C, ld] / m [36, O, ld] / m̄ [36, O, ld] (blocks `block` floats apart); the input and output
/// transforms take channels [first_channel, first_channel + channels) of the C (or O).
int haze_winograd43_rows_fit(long h, long w);
long haze_winograd43_rows_groups(long n, long h, long w);
void haze_winograd43_rows_input(const float *x, haze_input_activation activation, float *v, long n, long c,
                                long first_channel, long channels, long h, long w, long first_group, long groups, long ld,
                                long block);
void haze_winograd43_rows_output(const float *m, float *y, haze_output_terms terms, long n, long o, long first_channel,
                                 long channels, long h, long w, long first_group, long groups, long ld, long block);
void haze_winograd43_rows_output_gradient(const float *g, float *mbar, long n, long o, long h, long w,
                                          long first_group, long groups, long ld, long block);
/// Input tiles of images [first_image, first_image + images) of x [N, C, H, W], read through
/// `activation` (see haze_input_activation) → v [16, C, T] (blocks haze_winograd_block(C, T)
/// apart), T = images · tiles_h · tiles_w, tiles_h = ⌈H/2⌉, tiles_w = ⌈W/2⌉.
void haze_winograd_input(const float *x, haze_input_activation activation, float *v, long first_image, long images, long c,
                         long h, long w, long tiles_h, long tiles_w);
/// m [16, O, T] → those images' planes of y [N, O, H, W] plus `terms` (haze_output_terms).
void haze_winograd_output(const float *m, float *y, haze_output_terms terms, long first_image, long images,
                          long o, long h, long w, long tiles_h, long tiles_w);
/// The weight gradient's half of the output transform: output-gradient tiles of images
/// [first_image, first_image + images) of g [N, O, H, W] → gt [16, O, T], gt = A ḡ Aᵀ per tile.
void haze_winograd_output_gradient(const float *g, float *gt, long first_image, long images, long o, long h, long w,
                                   long tiles_h, long tiles_w);
/// ∂U = slots[0] + slots[1] + … (in order), accumulated into slots[0]: row r of each of the
/// `positions` blocks [O, C] of the partial sums (for both weight gradients below).
void haze_winograd_sum_slots(float *const *slots, long count, long positions, long o, long c, long r);
/// ∂U = Σ of the `count` partial sums [16, O, C] at `slots`, added in order into slots[0] →
/// ∂w [O, C, 3, 3] = Gᵀ ∂U G (the adjoint of haze_winograd_weights without flip), for output
/// channels first_row ..< first_row + row_count.
void haze_winograd_weights_gradient(float *const *slots, long count, float *dw, long o, long c,
                                    long first_row, long row_count);

#endif
