// Why a completion stopped, as reported in RequestOutput / GenerateOutput. Set by the
// stop matcher (src/engine/stop_matcher.h).
#pragma once

#include <cstdint>

namespace kvserve {

enum class FinishReason : uint8_t {
  None,    // still generating
  Stop,    // a stop string, a stop token id or EOS ("stop")
  Length,  // max_tokens reached ("length")
};

const char* finish_reason_name(FinishReason r);  // "stop" / "length" / nullptr for None

}  // namespace kvserve
