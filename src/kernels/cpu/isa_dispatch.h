// How kernels/cpu chooses an implementation per ISA: one idiom for every kernel family.
//
//   1. Each family (activation, attention, quant_act, matmul) has a small table struct of
//      function pointers below (ActivationKernels, ...), the same fields on every ISA.
//   2. Each ISA's table is a `constinit` object defined in that ISA's file
//      (kActivationAvx2 in activation_avx2.cpp, ...; the scalar one in the family's plain
//      .cpp) and declared only here. The functions it points to have internal linkage
//      in their file; no other header names a per-ISA symbol. Functions that one ISA's
//      table gathers from several of its files (the "parts" at the end) are declared
//      here too, and only here.
//   3. kFooKernels[isa] (an IsaTables) is that ISA's table. A dispatched entry point
//      resolves it once per process: `static const FooKernels k = kFooKernels[best_isa()];`
//      (best_isa() honours KVSERVE_ISA), then calls through k, so a hot loop pays one
//      indirect call, never a switch. Tests compare ISAs through kFooKernels[Isa::X] or
//      the family's `*_for(Isa)` / `*_isa(Isa, ...)` hook built on it (the CPU must
//      have that ISA).
//   4. An entry may be nullptr (or, for a per-type entry, return nullptr): then the next
//      lower ISA's serves; the scalar table is complete and is the reference.
// Public headers (activation.h, attention.h, matmul.h, quant_act.h) declare the
// dispatched entry points and, where tests use it, the scalar reference only.
#pragma once

#include <cstdint>

#include "core/cpu_features.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/quant_act.h"

namespace kvserve::detail {

// One family's per-ISA tables, indexed by Isa.
template <class T>
struct IsaTables {
  const T* by_isa[3];  // Scalar, Avx2, Avx512
  constexpr const T& operator[](Isa isa) const { return *by_isa[int(isa)]; }
  // isa's entry e, or where that is nullptr the next lower ISA's.
  template <class Fn>
  Fn entry(Isa isa, Fn T::*e) const {
    for (int i = int(isa); i > 0; --i)
      if (Fn f = by_isa[i]->*e) return f;
    return by_isa[0]->*e;
  }
};

// activation.h: element-wise gated activations (complete on every ISA).
struct ActivationKernels {
  void (*silu_mul)(const float* gate, const float* up, float* out, int64_t n);
  void (*gelu_tanh_mul)(const float* gate, const float* up, float* out, int64_t n);
};
extern const ActivationKernels kActivationScalar, kActivationAvx2, kActivationAvx512;
inline constexpr IsaTables<ActivationKernels> kActivationKernels{
    {&kActivationScalar, &kActivationAvx2, &kActivationAvx512}};

// attention.h: the segment kernel (attention_paged_partial's contract) and the f16 KV
// store (kv_store_token's, dtype F16; nullptr: the lower ISA's).
using AttentionPartialFn = void (*)(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                                    const PagedKvHead& kv, int head_dim, float scale, int64_t key_begin,
                                    int64_t key_end, float* acc, int64_t acc_stride, float* m, float* l);
using KvStoreF16Fn = void (*)(void* k_head, void* v_head, int block_size, int head_dim, int slot,
                              const float* k, const float* v);
struct AttentionKernels {
  AttentionPartialFn partial;
  KvStoreF16Fn kv_store_f16;
};
extern const AttentionKernels kAttentionScalar, kAttentionAvx2, kAttentionAvx512;
inline constexpr IsaTables<AttentionKernels> kAttentionKernels{
    {&kAttentionScalar, &kAttentionAvx2, &kAttentionAvx512}};

// quant_act.h: the row converter per activation format; nullptr where the lower ISA's
// code serves.
using QuantizeActFn = void (*)(const float* x, int64_t n, void* dst);
struct QuantActKernels {
  QuantizeActFn (*row)(ActFormat f);
};
extern const QuantActKernels kQuantActScalar, kQuantActAvx2, kQuantActAvx512;
inline constexpr IsaTables<QuantActKernels> kQuantActKernels{
    {&kQuantActScalar, &kQuantActAvx2, &kQuantActAvx512}};
// The converter quantize_act_row(isa, f, ...) runs, for callers that convert many rows.
QuantizeActFn quantize_act_fn(Isa isa, ActFormat f);

// matmul_internal.h: kernels per weight type (each entry is a function, never nullptr;
// the kernel it returns is nullptr where the ISA has none for the type).
struct MatmulKernels {
  // On the file's rows; nullptr: the next lower ISA's kernel serves.
  MatmulRangeFn (*range)(GgmlType type);
  // On weights in the packed layout (matmul_pack.h); nullptr: use the file's rows.
  MatmulRangeFn (*packed)(GgmlType type);
  // Non-null for the types (beyond those with Q8_0/Q8_1 activations, whose SIMD kernels
  // always do) whose kernels read the dense activation views of MatmulArgs.
  MatmulRangeFn (*dense_views)(GgmlType type);
};
extern const MatmulKernels kMatmulScalar, kMatmulAvx2, kMatmulAvx512;
inline constexpr IsaTables<MatmulKernels> kMatmulKernels{{&kMatmulScalar, &kMatmulAvx2, &kMatmulAvx512}};

// Parts of one ISA's matmul table, defined in that ISA's files (one type family each).
MatmulRangeFn matmul_kquant_fn_avx2(GgmlType type);                  // K-quants (matmul_kquant_avx2.cpp)
MatmulRangeFn matmul_packed_fn_avx2(GgmlType type);                  // matmul_packed_avx2.cpp
void matmul_q8_0_avx2(const MatmulArgs& a, int64_t o0, int64_t o1);  // matmul_q8_avx2.cpp
MatmulRangeFn matmul_q32_fn_avx512(GgmlType type);                   // Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
MatmulRangeFn matmul_float_fn_avx512(GgmlType type);                 // F32, F16, BF16
MatmulRangeFn matmul_kquant_fn_avx512(GgmlType type);                // K-quants
MatmulRangeFn matmul_packed_fn_avx512(GgmlType type);                // matmul_packed_avx512.cpp
// The AVX-512 panel GEMM for block types (needs the dense activation views), used
// from kPanelMinTokens tokens on: below that, repacking costs more than it saves, and
// matmul_direct_avx512.cpp does the same float operations per (row, token) so results
// never depend on the token count (batch invariance).
MatmulRangeFn matmul_panel_fn_avx512(GgmlType type);
constexpr int64_t kPanelMinTokens = 12;
// The AVX-512 F16 kernel (matmul_f16_avx512.cpp), in the float table of
// matmul_float_avx512.cpp: y[t, o] for o in [o0, o1) and every t < a.n_tokens;
// activations in fp16.
void matmul_f16_avx512(const MatmulArgs& a, int64_t o0, int64_t o1);
// Attention's AVX-512 kernel for head_dim <= 256 (attention_fast_avx512.cpp), behind
// kAttentionAvx512.partial (attention_avx512.cpp).
void attention_fast_avx512(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                           const PagedKvHead& kv, int head_dim, float scale, int64_t key_begin,
                           int64_t key_end, float* out, int64_t out_stride, float* m_out, float* l_out);

}  // namespace kvserve::detail
