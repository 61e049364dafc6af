// AVX-512 gemm(): register tiles of R rows x V 16-float vectors (at most 6 x 4, 24 of the
// 32 zmm registers as accumulators). For each p, V vector loads of B's row p and R
// broadcasts of A's column p feed R*V FMAs. The column tail is a masked vector, so widths
// like 10 classes cost one vector, not a scalar loop. The epilogue (bias, ReLU, or the fused
// SGD update of a weight tile) runs on the accumulators before they leave the registers.
// 6 x 4 tiles beat 8 x 3 on prediction and training; k is not cut into blocks (B's tile column in
// L1), because B streams from L2 fast enough and the partial sums cost more than they saved
// (bench/README.md, "Measured choices"). A product with one output column (a regression head)
// takes a kernel of its own, one_column, whose lanes are rows: the tiles would use one lane of 16.
//
// CMake compiles this file alone with AVX-512 enabled, and only in builds with SEGFAST_WITH_AVX512;
// it must not use the standard library, whose inline functions instantiated here could be picked
// by the linker for other files. dispatch.cpp runs it only on CPUs with every feature it is built for.
#include <immintrin.h>

#include "kernel_sets.h"

namespace segfast {

namespace {

constexpr int kRows = 6;  // R: rows of a register tile
constexpr int kVecs = 4;  // V: 16-float vectors per tile row

struct Tile {
    int k;
    const float* a;  // tile's first row of A
    std::ptrdiff_t a_rs, a_ks;
    const float* b;  // tile's first column of B
    std::ptrdiff_t ldb;
    float* c;
    std::ptrdiff_t ldc;
    const float* bias;    // tile's first column of bias
    float* velocity;      // tile's first element of velocity
    const float* anchor;  // tile's first element of the proximal anchor
    __mmask16 tail;       // lanes in use in the last vector
    SgdStep sgd;
};

// What a product's accumulator becomes (gemm.h's epilogues) on up to 16 elements of c (lanes m),
// shared by the register tiles and the one-column kernel so that both give the same bits.
struct Finish {
    __m512 zero, lr, mu, wd, prox;
    explicit Finish(const SgdStep& s)
        : zero(_mm512_setzero_ps()),
          lr(_mm512_set1_ps(s.lr)),
          mu(_mm512_set1_ps(s.momentum)),
          wd(_mm512_set1_ps(s.weight_decay)),
          prox(_mm512_set1_ps(s.prox)) {}

    template <Epilogue E>
    void apply(__m512 x, __mmask16 m, __m512 bias, float* c, float* velocity, const float* anchor) const {
        if (E == Epilogue::Add) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, c));
        if (E == Epilogue::Bias || E == Epilogue::BiasRelu) x = _mm512_add_ps(x, bias);
        if (E == Epilogue::BiasRelu) x = _mm512_max_ps(x, zero);
        if (E == Epilogue::Sgd) {
            const __m512 w = _mm512_maskz_loadu_ps(m, c);
            __m512 step = _mm512_fmadd_ps(wd, w, x);
            if (anchor) step = _mm512_fmadd_ps(prox, _mm512_sub_ps(w, _mm512_maskz_loadu_ps(m, anchor)), step);
            if (velocity) {
                step = _mm512_fmadd_ps(mu, _mm512_maskz_loadu_ps(m, velocity), step);
                _mm512_mask_storeu_ps(velocity, m, step);
            }
            x = _mm512_fnmadd_ps(lr, step, w);
        }
        _mm512_mask_storeu_ps(c, m, x);
    }
};

template <int R, int V, Epilogue E>
void tile_kernel(const Tile& t) {
    __m512 acc[R][V];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();

    const float* a = t.a;
    const float* b = t.b;
    for (int p = 0; p < t.k; ++p, a += t.a_ks, b += t.ldb) {
        __m512 bv[V];
#pragma GCC unroll 4
        for (int v = 0; v < V - 1; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
        bv[V - 1] = _mm512_maskz_loadu_ps(t.tail, b + 16 * (V - 1));
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const __m512 ar = _mm512_set1_ps(a[r * t.a_rs]);
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
        }
    }

    const Finish finish(t.sgd);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) {
            const __mmask16 m = (v == V - 1) ? t.tail : static_cast<__mmask16>(0xFFFF);
            const std::ptrdiff_t at = r * t.ldc + 16 * v;
            const __m512 bias = (E == Epilogue::Bias || E == Epilogue::BiasRelu)
                                    ? _mm512_maskz_loadu_ps(m, t.bias + 16 * v)
                                    : finish.zero;
            finish.apply<E>(acc[r][v], m, bias, t.c + at, t.velocity ? t.velocity + at : nullptr,
                            t.anchor ? t.anchor + at : nullptr);
        }
    }
}

// One 16 x 16 block: in rows p < rows (masked to cols lanes) become out rows i < cols (masked
// to rows lanes). Three rounds of interleaving: 32-bit pairs, 64-bit pairs, 128-bit lanes.
void transpose_block(const float* in, std::ptrdiff_t ld_in, int rows, int cols, float* out, std::ptrdiff_t ld_out) {
    const __mmask16 load = static_cast<__mmask16>(cols >= 16 ? 0xFFFF : (1u << cols) - 1u);
    const __mmask16 store = static_cast<__mmask16>(rows >= 16 ? 0xFFFF : (1u << rows) - 1u);
    __m512 r[16], t[16];
#pragma GCC unroll 16
    for (int p = 0; p < 16; ++p) r[p] = p < rows ? _mm512_maskz_loadu_ps(load, in + p * ld_in) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int p = 0; p < 16; p += 2) {  // t[p]: r[p], r[p+1] elements 0, 1 of each 4-lane; t[p+1]: 2, 3
        t[p] = _mm512_unpacklo_ps(r[p], r[p + 1]);
        t[p + 1] = _mm512_unpackhi_ps(r[p], r[p + 1]);
    }
#pragma GCC unroll 4
    for (int p = 0; p < 16; p += 4) {  // r[p + c]: element c of each 4-lane, from rows p..p+3
        const __m512d a = _mm512_castps_pd(t[p]), b = _mm512_castps_pd(t[p + 1]);
        const __m512d c = _mm512_castps_pd(t[p + 2]), d = _mm512_castps_pd(t[p + 3]);
        r[p] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[p + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[p + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[p + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {  // column 4 * lane + c gathers lane `lane` of r[c], r[4 + c], r[8 + c], r[12 + c]
        const __m512 even = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88),
                     odd = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
        const __m512 even2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        const __m512 odd2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
        const __m512 col[4] = {_mm512_shuffle_f32x4(even, even2, 0x88), _mm512_shuffle_f32x4(odd, odd2, 0x88),
                               _mm512_shuffle_f32x4(even, even2, 0xdd), _mm512_shuffle_f32x4(odd, odd2, 0xdd)};
#pragma GCC unroll 4
        for (int lane = 0; lane < 4; ++lane) {
            const int i = 4 * lane + c;
            if (i < cols) _mm512_mask_storeu_ps(out + i * ld_out, store, col[lane]);
        }
    }
}

// One output column (n == 1, c contiguous), as in a regression head or its SGD step: the tiles
// would use one lane of their sixteen. Here the lanes are 16 rows of c, fed with A 16 rows at a
// time, down its columns when A is stored transposed (a_rs == 1), else through 16 x 16 transposes.
// Each lane still adds its products in p order, one FMA each: the same bits as the tiles.
template <Epilogue E>
void one_column(const GemmArgs& g) {
    const Finish finish(g.sgd);
    const __m512 bias = g.bias ? _mm512_set1_ps(g.bias[0]) : finish.zero;
    alignas(64) float block[16 * 16];
    for (int i0 = 0; i0 < g.m; i0 += 16) {
        const int rows = g.m - i0 < 16 ? g.m - i0 : 16;
        const __mmask16 m = static_cast<__mmask16>(rows == 16 ? 0xFFFF : (1u << rows) - 1u);
        const float* a = g.a + i0 * g.a_rs;
        __m512 acc = finish.zero;
        if (g.a_rs == 1) {
            for (int p = 0; p < g.k; ++p)
                acc = _mm512_fmadd_ps(_mm512_set1_ps(g.b[p * g.ldb]), _mm512_maskz_loadu_ps(m, a + p * g.a_ks), acc);
        } else {
            for (int p0 = 0; p0 < g.k; p0 += 16) {
                const int depth = g.k - p0 < 16 ? g.k - p0 : 16;
                transpose_block(a + p0 * g.a_ks, g.a_rs, rows, depth, block, 16);
                for (int p = 0; p < depth; ++p)
                    acc = _mm512_fmadd_ps(_mm512_set1_ps(g.b[(p0 + p) * g.ldb]),
                                          _mm512_maskz_loadu_ps(m, block + 16 * p), acc);
            }
        }
        finish.apply<E>(acc, m, bias, g.c + i0, g.velocity ? g.velocity + i0 : nullptr,
                        g.anchor ? g.anchor + i0 : nullptr);
    }
}

using TileFn = void (*)(const Tile&);

template <Epilogue E>
struct Table {
    TileFn fn[kRows][kVecs];
    Table() { fill<1, 1>(); }
    template <int R, int V>
    void fill() {
        fn[R - 1][V - 1] = &tile_kernel<R, V, E>;
        if constexpr (V < kVecs) fill<R, V + 1>();
        else if constexpr (R < kRows) fill<R + 1, 1>();
    }
};

template <Epilogue E>
void run(const GemmArgs& g) {
    if (g.n == 1 && g.ldc == 1 && (g.a_rs == 1 || g.a_ks == 1)) return one_column<E>(g);
    static const Table<E> table;
    const int width = 16 * kVecs;
    for (int j0 = 0; j0 < g.n; j0 += width) {
        const int cols = g.n - j0 < width ? g.n - j0 : width;
        const int vecs = (cols + 15) / 16;
        const int last = cols - 16 * (vecs - 1);
        Tile t;
        t.k = g.k;
        t.a_rs = g.a_rs;
        t.a_ks = g.a_ks;
        t.b = g.b + j0;
        t.ldb = g.ldb;
        t.ldc = g.ldc;
        t.bias = g.bias ? g.bias + j0 : nullptr;
        t.tail = static_cast<__mmask16>(last == 16 ? 0xFFFF : (1u << last) - 1u);
        t.sgd = g.sgd;
        for (int i0 = 0; i0 < g.m; i0 += kRows) {
            const int rows = g.m - i0 < kRows ? g.m - i0 : kRows;
            t.a = g.a + i0 * g.a_rs;
            t.c = g.c + i0 * g.ldc + j0;
            t.velocity = g.velocity ? g.velocity + i0 * g.ldc + j0 : nullptr;
            t.anchor = g.anchor ? g.anchor + i0 * g.ldc + j0 : nullptr;
            table.fn[rows - 1][vecs - 1](t);
        }
    }
}

}  // namespace

void transpose_avx512(const float* in, std::ptrdiff_t ld_in, int rows, int cols, float* out, std::ptrdiff_t ld_out) {
    for (int p0 = 0; p0 < rows; p0 += 16)
        for (int i0 = 0; i0 < cols; i0 += 16)
            transpose_block(in + p0 * ld_in + i0, ld_in, rows - p0, cols - i0, out + i0 * ld_out + p0, ld_out);
}

void gemm_avx512(Epilogue epilogue, const GemmArgs& g) {
    switch (epilogue) {
        case Epilogue::Store: run<Epilogue::Store>(g); break;
        case Epilogue::Add: run<Epilogue::Add>(g); break;
        case Epilogue::Bias: run<Epilogue::Bias>(g); break;
        case Epilogue::BiasRelu: run<Epilogue::BiasRelu>(g); break;
        case Epilogue::Sgd: run<Epilogue::Sgd>(g); break;
    }
}

}  // namespace segfast
