// Where a model's tensors come from, by their GGUF names: a GGUF file today; a
// safetensors directory (its names mapped to these) next. Binding (names, shapes, types:
// weight_binder.h) and backend preparation (packing) read tensors through this
// interface only, never through the file format.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "gguf/ggml_type.h"

namespace kvserve {

class GgufFile;

struct WeightTensor {
  GgmlType type = GgmlType::F32;
  const void* data = nullptr;  // valid while the source lives
  std::vector<int64_t> shape;  // innermost (contiguous) dimension first, as ggml
  int64_t ne(size_t i) const { return i < shape.size() ? shape[i] : 1; }
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual std::optional<WeightTensor> find(std::string_view name) const = 0;
  // True when the data is a read-only file mapping: once a packed copy of a tensor
  // exists, its pages may be dropped.
  virtual bool file_backed() const = 0;
};

// The tensors of an open GGUF file (which must outlive the source).
class GgufWeightSource final : public WeightSource {
 public:
  explicit GgufWeightSource(const GgufFile& file) : file_(file) {}
  std::optional<WeightTensor> find(std::string_view name) const override;
  bool file_backed() const override;

 private:
  const GgufFile& file_;
};

}  // namespace kvserve
