#include "spec/layer_list.h"

#include <fmt/format.h>

#include <charconv>

namespace kvserve {

namespace {
bool parse_int(std::string_view s, int& out) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}
}  // namespace

Result<std::vector<uint8_t>> parse_skip_layers(std::string_view list, int n_layers) {
  std::vector<uint8_t> skip(size_t(std::max(n_layers, 0)), 0);
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string_view::npos) end = list.size();
    const std::string_view item = list.substr(start, end - start);
    int lo = 0, hi = 0;
    const size_t dash = item.find('-');
    const bool ok = dash == std::string_view::npos
                        ? parse_int(item, lo) && (hi = lo, true)
                        : parse_int(item.substr(0, dash), lo) && parse_int(item.substr(dash + 1), hi);
    if (!ok || lo > hi)
      return Error{
          fmt::format("--speculative-skip-layers: '{}' is not a layer or a range a-b (in '{}')", item, list)};
    if (lo < 0 || hi >= n_layers)
      return Error{fmt::format("--speculative-skip-layers: '{}' is outside the model's layers 0-{}", item,
                               n_layers - 1)};
    for (int l = lo; l <= hi; ++l) skip[size_t(l)] = 1;
    start = end + 1;
  }
  int kept = 0;
  for (uint8_t f : skip) kept += !f;
  if (kept == 0)
    return Error{
        fmt::format("--speculative-skip-layers '{}' skips every one of the {} layers", list, n_layers)};
  return skip;
}

std::vector<uint8_t> default_skip_layers(int n_layers) {
  std::vector<uint8_t> skip(size_t(std::max(n_layers, 0)), 0);
  for (int l = n_layers / 4; l < 3 * n_layers / 4; ++l)
    if ((l - n_layers / 4) % 2 == 1) skip[size_t(l)] = 1;
  return skip;
}

}  // namespace kvserve
