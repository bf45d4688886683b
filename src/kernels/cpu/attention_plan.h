// The attention work of one step, planned once and run for every layer: which query
// heads go together, which row tiles are split by key segment over the threads
// (split-K), and the list of work items the pool hands out. The kernels are
// attention.h's; this is how a runner spreads a batch of sequences over them.
//
//   AttentionPlan plan(shape, max_seqs, max_tokens);      // buffers sized once
//   plan.plan(seqs, pool.size());                          // per step
//   for each layer: plan.run(layer_inputs, pool);          // writes every row's output
//
// Results are bit-identical whatever the plan: split tiles are folded exactly as
// attention_paged folds segments.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/attention.h"

namespace kvserve {

struct AttentionShape {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int q_dim() const { return n_heads * head_dim; }
};

// One sequence of the step: its new rows are stacked rows [row, row + n_new).
struct AttentionSeq {
  const int32_t* block_table = nullptr;  // KV group g's row at block_table + g * group_stride
  int64_t n_past = 0;                    // keys before its first new row
  int32_t n_new = 0;
  int32_t row = 0;
  int32_t group_stride = 0;
};

// One layer's inputs: queries and outputs of every stacked row ([rows, q_dim]), and its
// paged cache (one KV head's layout at k_base / v_base + head * head_stride elements).
struct AttentionLayerInputs {
  const float* q = nullptr;
  float* out = nullptr;
  const void* k_base = nullptr;
  const void* v_base = nullptr;
  int64_t block_stride = 0;  // elements between consecutive blocks (all KV heads)
  int64_t head_stride = 0;   // elements between KV heads within a block
  int block_size = 0;
  KvDtype dtype = KvDtype::F32;
  int64_t window = 0;  // sliding window (0: full causal)
  int kv_group = 0;    // which row of each sequence's block table (AttentionSeq::group_stride)
  float scale = 1.0f;
};

class AttentionPlan {
 public:
  AttentionPlan(const AttentionShape& shape, int max_seqs, int max_tokens);

  // Plans a step over `seqs` (valid until the next plan) for a pool of n_threads.
  void plan(std::span<const AttentionSeq> seqs, int n_threads);
  // Runs one layer's attention for every stacked row of the planned step.
  void run(const AttentionLayerInputs& in, ThreadPool& pool);

  int64_t split_tiles() const { return int64_t(split_tiles_.size()); }  // this step's split tiles
  int64_t split_items() const { return split_items_; }                  // the items they became

 private:
  struct Item {
    int32_t seq;   // index in the step
    int32_t unit;  // query head / group
    int32_t row0;  // first new row of the sequence in this item
    int32_t rows;
    int32_t seg = -1;    // split-K: this segment of the keys only (-1: all of them)
    int32_t split = -1;  // split-K: the split tile it belongs to
  };
  // A row tile whose keys are split into segments across items.
  struct SplitTile {
    int64_t row;  // first stacked row
    int32_t rows;
    int32_t n_seg;   // key segments
    int64_t n_past;  // keys before the tile's first row
    size_t acc_off;  // segments 1..: [segment - 1][row][q_dim] floats at split_acc_ + acc_off
    size_t ml_off;   // every segment: [segment][head * 2 * rows ..] max then sum, at split_ml_ + ml_off
  };

  void merge_segments(const SplitTile& st, int unit, float* out);

  AttentionShape shape_;
  std::span<const AttentionSeq> seqs_;
  std::vector<Item> items_;  // capacity set at construction; grows only for longer contexts
  int group_ = 1;            // query heads per item (this step)
  int64_t work_ = 0;         // this step's multiply-adds of q.k and p.v, roughly
  int64_t split_items_ = 0;
  std::vector<SplitTile> split_tiles_;  // capacity max_seqs
  std::vector<float> split_acc_, split_ml_;
  std::unique_ptr<std::atomic<int>[]> split_left_;  // [tile * n_heads + unit] segments not yet done
};

}  // namespace kvserve
