#include "kernels/cpu/matmul_pack.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cassert>
#include <cstdlib>
#include <cstring>

#include "core/cpu_features.h"
#include "gguf/dequantize.h"
#include "gguf/quant_blocks.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve {

bool matmul_packable(const WeightView& w) {
  // The types the best ISA has packed kernels for (matmul_packed_*.cpp).
  static const detail::MatmulKernels k = detail::kMatmulKernels[best_isa()];
  const bool type_ok = k.packed(w.type) != nullptr;
  return type_ok && w.n_out > 0 && w.n_out % 16 == 0 && w.n_in % detail::packed_elems(w.type) == 0 &&
         w.data != nullptr;
}

size_t matmul_packed_bytes(const WeightView& w) {
  return size_t(w.n_out / 16) * size_t(w.n_in / detail::packed_elems(w.type)) *
         size_t(detail::packed_cell_bytes(w.type));
}

namespace {
// Visits every (cell, row r of its 16, that row's super-block) of a K-quant weight:
// cell (g, b) holds super-block b of rows 16g .. 16g + 15.
template <class Block, class Fill>
void pack_super_blocks(const WeightView& w, uint8_t* out, Fill fill) {
  const int64_t nb = w.n_in / QK_K;
  const size_t row_bytes = ggml_row_bytes(w.type, w.n_in);
  const int64_t cell = detail::packed_cell_bytes(w.type);
  const auto* src = static_cast<const uint8_t*>(w.data);
  for (int64_t g = 0; g < w.n_out / 16; ++g)
    for (int64_t b = 0; b < nb; ++b)
      for (int r = 0; r < 16; ++r)
        fill(out + (g * nb + b) * cell, r,
             *(reinterpret_cast<const Block*>(src + size_t(16 * g + r) * row_bytes) + b));
}

void pack_q4_k(const WeightView& w, uint8_t* out) {
  pack_super_blocks<BlockQ4_K>(w, out, [](uint8_t* c, int r, const BlockQ4_K& s) {
    std::memcpy(c + 2 * r, &s.d, 2);
    std::memcpy(c + 32 + 2 * r, &s.dmin, 2);
    for (int v = 0; v < 3; ++v) std::memcpy(c + 64 + 64 * v + 4 * r, s.scales + 4 * v, 4);
    for (int k = 0; k < 32; ++k) std::memcpy(c + 256 + 64 * k + 4 * r, s.qs + 4 * k, 4);
  });
}

void pack_q6_k(const WeightView& w, uint8_t* out) {
  pack_super_blocks<BlockQ6_K>(w, out, [](uint8_t* c, int r, const BlockQ6_K& s) {
    std::memcpy(c + 2 * r, &s.d, 2);
    for (int v = 0; v < 4; ++v) std::memcpy(c + 32 + 64 * v + 4 * r, s.scales + 4 * v, 4);
    for (int k = 0; k < 32; ++k) std::memcpy(c + 288 + 64 * k + 4 * r, s.ql + 4 * k, 4);
    for (int k = 0; k < 16; ++k) std::memcpy(c + 288 + 2048 + 64 * k + 4 * r, s.qh + 4 * k, 4);
  });
}
}  // namespace

void matmul_pack(const WeightView& w, void* dst) {
  assert(w.n_out % 16 == 0 && w.n_in % detail::packed_elems(w.type) == 0);
  if (w.type == GgmlType::Q4_K) return pack_q4_k(w, static_cast<uint8_t*>(dst));
  if (w.type == GgmlType::Q6_K) return pack_q6_k(w, static_cast<uint8_t*>(dst));
  const int64_t nb = w.n_in / 32;
  const int64_t blk = int64_t(ggml_traits(w.type).block_bytes);  // bytes of one block
  const size_t row_bytes = ggml_row_bytes(w.type, w.n_in);
  const bool min = detail::packed_has_min(w.type), qh = detail::packed_has_qh(w.type);
  // Offsets in a file block: d, then m (with min), then qh (Q5_x), then the quants.
  const int qh_in = min ? 4 : 2;
  const int qs_in = qh_in + (qh ? 4 : 0);
  const int qs_len = int(blk) - qs_in;  // 16 nibble bytes or 32 int8
  const int64_t cell = detail::packed_cell_bytes(w.type);
  const auto* src = static_cast<const uint8_t*>(w.data);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t g = 0; g < w.n_out / 16; ++g)
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* c = out + (g * nb + b) * cell;
      uint8_t* qs = c + detail::packed_qs_offset(w.type);
      uint64_t masks[8] = {};
      for (int r = 0; r < 16; ++r) {
        const uint8_t* s = src + size_t(16 * g + r) * row_bytes + size_t(b * blk);
        std::memcpy(c + 2 * r, s, 2);                    // d
        if (min) std::memcpy(c + 32 + 2 * r, s + 2, 2);  // m
        if (qh) {
          uint32_t h;
          std::memcpy(&h, s + qh_in, 4);
          for (int k = 0; k < 4; ++k)
            for (int i = 0; i < 4; ++i) {
              masks[k] |= uint64_t((h >> (4 * k + i)) & 1) << (4 * r + i);
              masks[4 + k] |= uint64_t((h >> (16 + 4 * k + i)) & 1) << (4 * r + i);
            }
        }
        for (int k = 0; k < qs_len / 4; ++k) {
          uint8_t* q = qs + 64 * k + 4 * r;
          std::memcpy(q, s + qs_in + 4 * k, 4);
          if (w.type == GgmlType::Q8_0)
            for (int i = 0; i < 4; ++i) q[i] ^= 0x80;
        }
      }
      if (qh) std::memcpy(c + detail::packed_qh_offset(w.type), masks, sizeof(masks));
    }
}

namespace {
// Writes row r's block of cell c back in the file's layout (the inverse of matmul_pack
// for one row): blk gets ggml_traits(t).block_bytes bytes.
void unpack_block(GgmlType t, const uint8_t* c, int r, uint8_t* blk) {
  if (t == GgmlType::Q4_K) {
    BlockQ4_K b;
    std::memcpy(&b.d, c + 2 * r, 2);
    std::memcpy(&b.dmin, c + 32 + 2 * r, 2);
    for (int v = 0; v < 3; ++v) std::memcpy(b.scales + 4 * v, c + 64 + 64 * v + 4 * r, 4);
    for (int k = 0; k < 32; ++k) std::memcpy(b.qs + 4 * k, c + 256 + 64 * k + 4 * r, 4);
    std::memcpy(blk, &b, sizeof(b));
    return;
  }
  if (t == GgmlType::Q6_K) {
    BlockQ6_K b;
    std::memcpy(&b.d, c + 2 * r, 2);
    for (int v = 0; v < 4; ++v) std::memcpy(b.scales + 4 * v, c + 32 + 64 * v + 4 * r, 4);
    for (int k = 0; k < 32; ++k) std::memcpy(b.ql + 4 * k, c + 288 + 64 * k + 4 * r, 4);
    for (int k = 0; k < 16; ++k) std::memcpy(b.qh + 4 * k, c + 288 + 2048 + 64 * k + 4 * r, 4);
    std::memcpy(blk, &b, sizeof(b));
    return;
  }
  const bool min = detail::packed_has_min(t), qh = detail::packed_has_qh(t);
  const int qh_in = min ? 4 : 2;  // file block offsets, as in matmul_pack
  const int qs_in = qh_in + (qh ? 4 : 0);
  const int qs_len = int(ggml_traits(t).block_bytes) - qs_in;
  std::memcpy(blk, c + 2 * r, 2);                    // d
  if (min) std::memcpy(blk + 2, c + 32 + 2 * r, 2);  // m
  if (qh) {
    uint64_t masks[8];
    std::memcpy(masks, c + detail::packed_qh_offset(t), sizeof(masks));
    uint32_t h = 0;
    for (int k = 0; k < 4; ++k)
      for (int i = 0; i < 4; ++i) {
        h |= uint32_t((masks[k] >> (4 * r + i)) & 1) << (4 * k + i);
        h |= uint32_t((masks[4 + k] >> (4 * r + i)) & 1) << (16 + 4 * k + i);
      }
    std::memcpy(blk + qh_in, &h, 4);
  }
  const uint8_t* qs = c + detail::packed_qs_offset(t);
  for (int k = 0; k < qs_len / 4; ++k) {
    uint8_t* q = blk + qs_in + 4 * k;
    std::memcpy(q, qs + 64 * k + 4 * r, 4);
    if (t == GgmlType::Q8_0)
      for (int i = 0; i < 4; ++i) q[i] ^= 0x80;
  }
}
}  // namespace

void dequantize_packed_row(const WeightView& w, int64_t row, float* dst) {
  assert(w.packed && row >= 0 && row < w.n_out);
  const int64_t elems = detail::packed_elems(w.type);
  const int64_t nb = w.n_in / elems;
  const int64_t cell = detail::packed_cell_bytes(w.type);
  const auto* cells = static_cast<const uint8_t*>(w.packed) + (row / 16) * nb * cell;
  alignas(8) uint8_t blk[sizeof(BlockQ6_K)];  // the largest packed block
  static_assert(sizeof(BlockQ6_K) >= sizeof(BlockQ4_K) && sizeof(BlockQ6_K) >= sizeof(BlockQ8_0));
  for (int64_t b = 0; b < nb; ++b) {
    unpack_block(w.type, cells + b * cell, int(row % 16), blk);
    dequantize_row(w.type, blk, dst + b * elems, elems);
  }
}

void PackedWeights::Free::operator()(uint8_t* p) const {
  std::free(p);
}

bool PackedWeights::pack(WeightView& w, bool release_source) {
  if (!matmul_packable(w) || w.packed) return false;
  const size_t n = matmul_packed_bytes(w);
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64));
  if (!p) return false;  // keep the original layout
  matmul_pack(w, p);
  bufs_.emplace_back(p);
  bytes_ += n;
  // The original is no longer read by this CPU's kernels: drop its resident pages
  // (whole pages inside it only; the mapping stays valid).
  if (release_source) {
    const auto page = uintptr_t(sysconf(_SC_PAGESIZE));
    const auto b = (uintptr_t(w.data) + page - 1) / page * page;
    const auto e = (uintptr_t(w.data) + n) / page * page;
    if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
  }
  w.packed = p;
  return true;
}

}  // namespace kvserve
