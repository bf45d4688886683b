// Layer lists for self-speculation (--speculative-skip-layers): "3,5-9,12" -> flags per
// layer, checked against the model's depth; and the default when none is given.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace kvserve {

// [n_layers] flags, 1 = skipped. Errors name the offending item: a layer out of
// [0, n_layers), a malformed item, or a list that skips every layer.
Result<std::vector<uint8_t>> parse_skip_layers(std::string_view list, int n_layers);

// The default: every other layer of the middle half ([n/4, 3n/4), odd offsets), keeping
// the first and last layers, which transform the embeddings and feed the head.
std::vector<uint8_t> default_skip_layers(int n_layers);

}  // namespace kvserve
