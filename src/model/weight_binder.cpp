#include "model/weight_binder.h"

#include <fmt/format.h>

namespace kvserve {
namespace {

std::string shape_str(const WeightTensor& t) {
  std::string s = "[";
  for (size_t i = 0; i < t.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  return s + "]";
}

}  // namespace

Result<WeightView> WeightBinder::matrix(const std::string& name, int64_t n_in, int64_t n_out) const {
  const auto t = source_.find(name);
  if (!t) return Error{fmt::format("missing tensor '{}'", name)};
  if (t->shape.size() != 2 || t->ne(0) != n_in || t->ne(1) != n_out)
    return Error{
        fmt::format("tensor '{}' has shape {}, expected [{}, {}]", name, shape_str(*t), n_in, n_out)};
  if (!matmul_supports(t->type))
    return Error{
        fmt::format("tensor '{}' has type {}, which matmul does not support", name, ggml_type_name(t->type))};
  if (n_in % ggml_traits(t->type).block_size != 0)
    return Error{fmt::format("tensor '{}': row length {} is not a multiple of the {} block size", name, n_in,
                             ggml_type_name(t->type))};
  return WeightView{t->type, t->data, n_in, n_out};
}

Result<std::vector<WeightView>> WeightBinder::expert_matrices(const std::string& name, int64_t n_in,
                                                              int64_t n_out, int64_t n_expert) const {
  const auto t = source_.find(name);
  if (!t) return Error{fmt::format("missing tensor '{}'", name)};
  if (t->shape.size() != 3 || t->ne(0) != n_in || t->ne(1) != n_out || t->ne(2) != n_expert)
    return Error{fmt::format("tensor '{}' has shape {}, expected [{}, {}, {}]", name, shape_str(*t), n_in,
                             n_out, n_expert)};
  if (!matmul_supports(t->type))
    return Error{
        fmt::format("tensor '{}' has type {}, which matmul does not support", name, ggml_type_name(t->type))};
  if (n_in % ggml_traits(t->type).block_size != 0)
    return Error{fmt::format("tensor '{}': row length {} is not a multiple of the {} block size", name, n_in,
                             ggml_type_name(t->type))};
  const size_t per_expert = ggml_row_bytes(t->type, n_in) * size_t(n_out);
  std::vector<WeightView> views;
  for (int64_t e = 0; e < n_expert; ++e)
    views.push_back(
        WeightView{t->type, static_cast<const uint8_t*>(t->data) + size_t(e) * per_expert, n_in, n_out});
  return views;
}

Result<const float*> WeightBinder::vector(const std::string& name, int64_t n) const {
  const auto t = source_.find(name);
  if (!t) return Error{fmt::format("missing tensor '{}'", name)};
  if (t->shape.size() != 1 || t->ne(0) != n)
    return Error{fmt::format("tensor '{}' has shape {}, expected [{}]", name, shape_str(*t), n)};
  if (t->type != GgmlType::F32)
    return Error{fmt::format("tensor '{}' has type {}, expected f32", name, ggml_type_name(t->type))};
  return static_cast<const float*>(t->data);
}

Result<const float*> WeightBinder::optional_vector(const std::string& name, int64_t n) const {
  if (!has(name)) return static_cast<const float*>(nullptr);
  return vector(name, n);
}

}  // namespace kvserve
