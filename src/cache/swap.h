// Swap-mode preemption, for backends where recomputing a long sequence costs more than
// copying its KV out and back (the GPU backend: device <-> pinned host memory). The
// scheduler, on preempting in swap mode, asks the swap space to take copies of the
// sequence's blocks, frees the device blocks, and keeps num_computed_tokens; on resume
// it allocates fresh device blocks and swaps the copies in before the step's forward.
// Recompute mode (free the blocks, re-prefill later, usually from the prefix cache) needs
// none of this and is what the CPU backend uses.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kvserve {

enum class PreemptionMode : uint8_t { Recompute, Swap };

class KvSwapSpace {
 public:
  virtual ~KvSwapSpace() = default;
  virtual int num_free_host_blocks() const = 0;
  // Copies device blocks out; appends one host block id per device block to host_blocks.
  // Returns false (copying nothing) if the host space is full: the caller recomputes.
  virtual bool swap_out(std::span<const int32_t> device_blocks, std::vector<int32_t>& host_blocks) = 0;
  // Copies host blocks into (freshly allocated) device blocks and releases the host blocks.
  virtual void swap_in(std::span<const int32_t> host_blocks, std::span<const int32_t> device_blocks) = 0;
  // Drops host copies without restoring them (the request was aborted while swapped out).
  virtual void release(std::span<const int32_t> host_blocks) = 0;
};

}  // namespace kvserve
