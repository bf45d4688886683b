// Weights repacked once at load into a 16-row interleaved layout of the same byte size
// as the file's, for the AVX-512 VNNI kernels (matmul_packed_avx512.cpp) and, for Q4_0,
// Q4_1, Q5_0, Q5_1 and Q4_K, the AVX2 ones (matmul_packed_avx2.cpp, a 64-byte vector read as
// two halves of 8 rows): per group of 16 rows and 32-element block, the 16 rows' scales
// lie side by side and dword r of each quant vector holds 4 bytes of row r, so one
// vpdpbusd advances 16 rows against a broadcast of 4 activation bytes with no gathers, no
// transposing reductions and no per-call repacking. Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K
// and Q6_K with n_out % 16 == 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cpu/matmul.h"

namespace kvserve {

namespace detail {
// Bytes of one (16-row group, block) cell:
//   [16 x fp16 d][16 x fp16 m (Q4_1, Q5_1)][8 x u64 5th-bit masks (Q5_0, Q5_1)][quants]
// quants as vectors of 64 bytes whose dword r holds 4 quant bytes of row r: for nibble
// types 4 vectors, vector k = the stored bytes 4k..4k+3 (low nibbles: elements 4k + i,
// high: 16 + 4k + i); for Q8_0 8 vectors of the bytes flipped to unsigned q + 128. The
// masks are those vectors' 5th bits: mask k (low) / 4 + k (high), bit 4r + i.
constexpr bool packed_has_min(GgmlType t) {
  return t == GgmlType::Q4_1 || t == GgmlType::Q5_1;
}
constexpr bool packed_has_qh(GgmlType t) {
  return t == GgmlType::Q5_0 || t == GgmlType::Q5_1;
}
// Q4_K cells cover a super-block (256 elements):
//   [16 x fp16 d][16 x fp16 dmin][3 vectors of the 12 packed scale bytes][32 quant vectors]
// scale vector v: dword r = scale bytes 4v..4v+3 of row r; quant vector 8c + j: dword
// r = qs[32c + 4j..32c + 4j + 3] of row r (low nibbles: sub-block 2c, high: 2c + 1).
// Q6_K cells likewise:
//   [16 x fp16 d][4 vectors of the 16 int8 scales][32 ql vectors][16 qh vectors]
// scale vector v: dword r = scales 4v..4v+3; ql vector 16h + 8jj + l4: dword r =
// ql[64h + 32jj + 4 l4..+3]; qh vector 8h + l4: dword r = qh[32h + 4 l4..+3] (of row r).
constexpr int64_t packed_elems(GgmlType t) {
  return t == GgmlType::Q4_K || t == GgmlType::Q6_K ? 256 : 32;
}
constexpr int64_t packed_cell_bytes(GgmlType t) {
  return t == GgmlType::Q4_K   ? 16 * 144
         : t == GgmlType::Q6_K ? 16 * 210
         : t == GgmlType::Q8_0 ? 16 * 34
                               : 32 + 256 + (packed_has_min(t) ? 32 : 0) + (packed_has_qh(t) ? 64 : 0);
}
constexpr int64_t packed_qh_offset(GgmlType t) {
  return packed_has_min(t) ? 64 : 32;
}
constexpr int64_t packed_qs_offset(GgmlType t) {
  return packed_qh_offset(t) + (packed_has_qh(t) ? 64 : 0);
}
}  // namespace detail

// Whether matmul has a packed layout for w (type, shape) on this CPU.
bool matmul_packable(const WeightView& w);
// Bytes of the packed copy of w (== the file's bytes).
size_t matmul_packed_bytes(const WeightView& w);
// Writes the packed copy of w (matmul_packable) into dst (matmul_packed_bytes(w) bytes,
// 64-byte aligned).
void matmul_pack(const WeightView& w, void* dst);
// dst: [w.n_in], row `row` (< w.n_out) of w dequantized from its packed copy w.packed
// (written by matmul_pack), bit-identical to dequantize_row on the file's row; lets a
// matrix that is also read by rows (a tied token embedding) keep only the packed copy.
// Scalar, any ISA.
void dequantize_packed_row(const WeightView& w, int64_t row, float* dst);

// Owns packed copies of weight matrices: pack(view) points view.packed at its copy. With
// release_source (only for read-only file mappings: anonymous memory would be zeroed)
// the original's resident pages are dropped (they fault back in from the file if read),
// so memory stays about the file size.
class PackedWeights {
 public:
  // Returns whether w was packed (otherwise it is left unchanged).
  bool pack(WeightView& w, bool release_source);
  size_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::vector<std::unique_ptr<uint8_t, Free>> bufs_;
  size_t bytes_ = 0;
};

}  // namespace kvserve
