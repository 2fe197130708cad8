// The bf16 products on AMX-BF16 (Sapphire Rapids and later): TDPBF16PS multiplies a tile of
// 16 rows × 16 bf16 pairs of A by one of 16 pairs × 16 columns of B into 16 × 16 float32 sums,
// 16 × 16 × 32 multiply-adds an instruction. Blocks of 32 rows × 32 columns: four sum tiles, two
// of A, two of B. A is packed for it (haze_gemm_pack_bf16 when this kernel is chosen) as tiles of
// 16 rows × 16 pairs, 1 KB each and contiguous; B's panels are haze_bf16_pack_panel's, whose
// 16-column halves are B tiles at a 128-byte row stride. Depths past K are zero on both sides, so
// every tile is whole; the sums go through a buffer to the ragged edges of C.
//
// Compile-checked only: no CPU this project runs on has AMX. haze_gemm_bf16.c uses it only after it
// has agreed with the AVX512_BF16 kernel on a test product.

#include "haze_kernels.h"
#include "haze_avx512.h"
#include "haze_gemm_bf16.h"

#if defined(__x86_64__) && defined(__clang__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

enum { TILE = 16, ROWS = 32, COLUMNS = 32, DEPTH = 256 };

#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f")))

int haze_amx_bf16_usable(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    const unsigned amx_bf16 = 1u << 22, amx_tile = 1u << 24;
    if ((edx & (amx_bf16 | amx_tile)) != (amx_bf16 | amx_tile)) return 0;
#if defined(__linux__)
    // Linux grants the 8 KB tile data state to a process only on request (ARCH_REQ_XCOMP_PERM,
    // XFEATURE_XTILEDATA); it refuses where the kernel or the hypervisor does not support it.
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
    return 0;
#endif
}

long haze_gemm_packed_bf16_amx_size(long m, long k) {
    const long pairs = (k + 1) / 2;
    return (m + TILE - 1) / TILE * TILE * ((pairs + TILE - 1) / TILE * TILE);
}

void haze_gemm_pack_bf16_amx(const float *packed, uint32_t *out, long m, long k) {
    // out[((r / 16) · chunks + q / 16) · 256 + (r % 16) · 16 + q % 16] = (A[r, 2q], A[r, 2q + 1]),
    // chunks = ⌈⌈K/2⌉ / 16⌉; zero for the rows past M and the pairs past K.
    const long chunks = ((k + 1) / 2 + TILE - 1) / TILE, rows = (m + TILE - 1) / TILE * TILE;
    for (long r = 0; r < rows; r++)
        for (long q = 0; q < chunks * TILE; q++)
            out[(r / TILE * chunks + q / TILE) * TILE * TILE + r % TILE * TILE + q % TILE] =
                r < m ? bf16_bits(packed_element(packed, k, r, 2 * q)) | bf16_bits(packed_element(packed, k, r, 2 * q + 1)) << 16 : 0;
}

// The palette-1 tile configuration of ldtilecfg: 64 bytes.
struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
};

AMX void haze_gemm_packed_bf16_amx(const uint32_t *packed, const float *b, long ldb, float *c, long ldc, long m, long n,
                                   long k, int accumulate) {
    // Tiles 0–3: sums (rows 0–15 and 16–31 × columns 0–15 and 16–31); 4, 5: A; 6, 7: B. All 16 × 64 bytes.
    struct tile_config config = {.palette = 1};
    for (int t = 0; t < 8; t++) config.bytes_per_row[t] = 64, config.rows[t] = TILE;
    _tile_loadconfig(&config);
    uint32_t panel[DEPTH / 2 * COLUMNS] __attribute__((aligned(64)));
    float sums[ROWS * COLUMNS] __attribute__((aligned(64)));
    const long chunks = ((k + 1) / 2 + TILE - 1) / TILE;
    for (long p0 = 0; p0 < k; p0 += DEPTH) {
        const long depth = k - p0 < DEPTH ? k - p0 : DEPTH, pairs = (depth + 1) / 2;
        const long depth_chunks = (pairs + TILE - 1) / TILE, first_chunk = p0 / 2 / TILE;
        for (long n0 = 0; n0 < n; n0 += COLUMNS) {
            const __mmask16 left = first_lanes(n - n0), right = first_lanes(n - n0 - 16);
            haze_bf16_pack_panel(b + p0 * ldb + n0, ldb, depth, left, right, panel);
            memset(panel + pairs * COLUMNS, 0, sizeof(uint32_t) * (depth_chunks * TILE - pairs) * COLUMNS);
            for (long m0 = 0; m0 < m; m0 += ROWS) {
                const int lower = m - m0 > TILE;  // rows 16–31 of the block exist
                const uint32_t *a0 = packed + (m0 / TILE * chunks + first_chunk) * TILE * TILE, *a1 = a0 + chunks * TILE * TILE;
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (long ch = 0; ch < depth_chunks; ch++) {
                    _tile_loadd(4, a0 + ch * TILE * TILE, 64);
                    _tile_loadd(6, panel + ch * TILE * COLUMNS, COLUMNS * 4);
                    _tile_loadd(7, panel + ch * TILE * COLUMNS + TILE, COLUMNS * 4);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 7);
                    if (lower) {
                        _tile_loadd(5, a1 + ch * TILE * TILE, 64);
                        _tile_dpbf16ps(2, 5, 6);
                        _tile_dpbf16ps(3, 5, 7);
                    }
                }
                _tile_stored(0, sums, COLUMNS * 4);
                _tile_stored(1, sums + TILE, COLUMNS * 4);
                _tile_stored(2, sums + TILE * COLUMNS, COLUMNS * 4);
                _tile_stored(3, sums + TILE * COLUMNS + TILE, COLUMNS * 4);
                const long rows = m - m0 < ROWS ? m - m0 : ROWS;
                for (long r = 0; r < rows; r++) {
                    float *row = c + (m0 + r) * ldc + n0;
                    __m512 s0 = _mm512_load_ps(sums + r * COLUMNS), s1 = _mm512_load_ps(sums + r * COLUMNS + TILE);
                    if (accumulate || p0 > 0) {
                        s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(left, row));
                        s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(right, row + TILE));
                    }
                    _mm512_mask_storeu_ps(row, left, s0);
                    _mm512_mask_storeu_ps(row + TILE, right, s1);
                }
            }
        }
    }
    _tile_release();
}
#endif
