// Binds named tensors to the views the model keeps, checking each one's shape and type:
// errors name the tensor and say what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"
#include "kernels/cpu/matmul.h"
#include "model/weight_source.h"

namespace kvserve {

class WeightBinder {
 public:
  explicit WeightBinder(const WeightSource& source) : source_(source) {}

  bool has(const std::string& name) const { return source_.find(name).has_value(); }
  // A matrix mapping n_in -> n_out features (ggml shape [n_in, n_out]) of a type matmul reads.
  Result<WeightView> matrix(const std::string& name, int64_t n_in, int64_t n_out) const;
  // n_expert matrices n_in -> n_out stored as one tensor (ggml shape [n_in, n_out,
  // n_expert], as GGUF stores experts): one view per expert.
  Result<std::vector<WeightView>> expert_matrices(const std::string& name, int64_t n_in, int64_t n_out,
                                                  int64_t n_expert) const;
  // A float vector of n elements (norm weights, biases; converters store these as f32).
  Result<const float*> vector(const std::string& name, int64_t n) const;
  // As vector(), or nullptr when the tensor is absent.
  Result<const float*> optional_vector(const std::string& name, int64_t n) const;

  const WeightSource& source() const { return source_; }

 private:
  const WeightSource& source_;
};

}  // namespace kvserve
