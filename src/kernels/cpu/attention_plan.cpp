#include "kernels/cpu/attention_plan.h"

#include <algorithm>

namespace kvserve {
namespace {

constexpr int kRowTile = 32;                   // query rows per work item
constexpr int64_t kMinParallelWork = 1 << 16;  // multiply-adds worth waking the pool for

// Steps with at most this many (row tile, KV head) units per thread split their lone
// tiles of long contexts by key segment: few items are too coarse to balance. So does a
// lone tile whose keys are more than 1 / kSplitShareOfThread of a thread's fair share of
// the step's attention (one long conversation among short ones).
constexpr int64_t kSplitMaxUnitsPerThread = 8;
constexpr int64_t kSplitShareOfThread = 4;

}  // namespace

AttentionPlan::AttentionPlan(const AttentionShape& shape, int max_seqs, int max_tokens) : shape_(shape) {
  // Each sequence splits into ceil(len / tile) <= len / tile + 1 tiles per head.
  items_.reserve(size_t(shape.n_heads) * size_t(max_tokens / kRowTile + max_seqs));
  split_tiles_.reserve(size_t(max_seqs));
  split_left_ = std::make_unique<std::atomic<int>[]>(size_t(max_seqs) * size_t(shape.n_heads));
}

void AttentionPlan::plan(std::span<const AttentionSeq> seqs, int n_threads) {
  seqs_ = seqs;
  const AttentionShape& c = shape_;
  // Query heads sharing a KV head are attended together (each K/V block read once for
  // the group, about half the cost per head) unless that would leave a thread idle.
  const int group = c.n_heads / c.n_kv_heads;
  int64_t n_tiles = 0;
  for (const AttentionSeq& seq : seqs) n_tiles += (int64_t(seq.n_new) + kRowTile - 1) / kRowTile;
  group_ = group > 1 && (n_threads == 1 || n_tiles * c.n_kv_heads >= n_threads) ? group : 1;
  // Split-K: in a step with few items (decode of a few sequences), a sequence's lone row
  // tile over more than one segment of keys is split by key segment too, so that long
  // contexts spread evenly over the threads (3 KV heads of one sequence on 2 threads:
  // one thread did two while the other waited) while each K/V byte is still read once.
  // The segments are folded as attention_paged does: the results are the same bits.
  split_tiles_.clear();
  split_items_ = 0;
  if (n_threads > 1) {
    const bool few_units = n_tiles * c.n_kv_heads <= kSplitMaxUnitsPerThread * int64_t(n_threads);
    int64_t keys_per_thread = 0;  // the step's keys summed over its row tiles, per thread
    for (const AttentionSeq& seq : seqs)
      for (int64_t r = 0; r < seq.n_new; r += kRowTile)
        keys_per_thread += seq.n_past + std::min<int64_t>(seq.n_new, r + kRowTile);
    keys_per_thread /= n_threads;
    size_t acc_need = 0, ml_need = 0;
    for (const AttentionSeq& seq : seqs) {
      const int32_t n = seq.n_new;
      const int64_t n_keys = seq.n_past + n;
      if (n > 0 && n <= kRowTile && n_keys > kAttentionSegmentKeys &&
          (few_units || n_keys * kSplitShareOfThread > keys_per_thread)) {
        const int32_t n_seg = int32_t((n_keys + kAttentionSegmentKeys - 1) / kAttentionSegmentKeys);
        split_tiles_.push_back({seq.row, n, n_seg, seq.n_past, acc_need, ml_need});
        acc_need += size_t(n_seg - 1) * size_t(n) * size_t(c.q_dim());
        ml_need += size_t(n_seg) * size_t(c.n_heads) * 2 * size_t(n);
      }
    }
    if (split_acc_.size() < acc_need) split_acc_.resize(acc_need);
    if (split_ml_.size() < ml_need) split_ml_.resize(ml_need);
    if (!split_tiles_.empty()) group_ = group;  // segments give the threads enough items
  }
  const int n_units = c.n_heads / group_;  // work items per tile: KV heads or query heads

  items_.clear();
  size_t n_split_seen = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const AttentionSeq& seq = seqs[s];
    const int32_t n = seq.n_new;
    if (n_split_seen < split_tiles_.size() && split_tiles_[n_split_seen].row == seq.row && n > 0) {
      // Unit-major: a thread's items stream one head's blocks in order.
      const int32_t j = int32_t(n_split_seen++), n_seg = split_tiles_[size_t(j)].n_seg;
      items_.reserve(items_.size() + size_t(n_units) * size_t(n_seg));  // grows only for longer contexts
      for (int h = 0; h < n_units; ++h)
        for (int32_t sg = 0; sg < n_seg; ++sg) items_.push_back({int32_t(s), h, 0, n, sg, j});
      split_items_ += int64_t(n_units) * n_seg;
      continue;
    }
    // Last tiles first: under the causal mask they see the most keys, and handing out the
    // heaviest items first evens out the threads' finishing times.
    const int32_t tiles = (n + kRowTile - 1) / kRowTile;
    for (int32_t t = tiles - 1; t >= 0; --t)
      for (int h = 0; h < n_units; ++h)
        items_.push_back({int32_t(s), h, t * kRowTile, std::min(kRowTile, n - t * kRowTile)});
  }
  work_ = 0;
  for (const AttentionSeq& seq : seqs)
    work_ += int64_t(seq.n_new) * (seq.n_past + seq.n_new) * 2 * c.head_dim * c.n_heads;
}

// Folds the segments of one unit (group_ query heads) of a split tile, in segment order,
// exactly as attention_paged does.
void AttentionPlan::merge_segments(const SplitTile& st, int unit, float* out_rows) {
  const AttentionShape& c = shape_;
  const int hd = c.head_dim, n_group = group_, head = unit * n_group, rows = st.rows;
  const float* ml0 = split_ml_.data() + st.ml_off + size_t(head) * 2 * size_t(rows);
  for (int i = 0; i < rows * n_group; ++i) {
    const int r = i / n_group, g = i % n_group;
    float* out = out_rows + (st.row + r) * c.q_dim() + int64_t(head + g) * hd;
    float m = ml0[i], l = ml0[rows * n_group + i];
    for (int s = 1; s < st.n_seg; ++s) {
      if (s * kAttentionSegmentKeys > st.n_past + r) break;  // the row sees none of segment s on
      const float* ml = ml0 + int64_t(s) * c.n_heads * 2 * rows;
      const float* acc = split_acc_.data() + st.acc_off + size_t((int64_t(s - 1) * rows + r) * c.q_dim()) +
                         size_t(head + g) * size_t(hd);
      if (ml[rows * n_group + i] > 0.0f) attention_merge(out, &m, &l, acc, ml[i], ml[rows * n_group + i], hd);
    }
    attention_finish(out, l, hd);
  }
}

void AttentionPlan::run(const AttentionLayerInputs& in, ThreadPool& pool) {
  const AttentionShape& c = shape_;
  const int hd = c.head_dim, qd = c.q_dim();
  const size_t esize = kv_dtype_size(in.dtype);
  const char* k_base = static_cast<const char*>(in.k_base);
  const char* v_base = static_cast<const char*>(in.v_base);
  const int group = c.n_heads / c.n_kv_heads;
  const int n_group = group_;
  auto kv_head = [&](size_t i) {
    const Item& it = items_[i];
    PagedKvHead pk;
    const int kvh = it.unit * n_group / group;
    pk.k = k_base + kvh * in.head_stride * int64_t(esize);
    pk.v = v_base + kvh * in.head_stride * int64_t(esize);
    pk.block_stride = in.block_stride;
    const AttentionSeq& seq = seqs_[size_t(it.seq)];
    pk.block_table = seq.block_table + int64_t(in.kv_group) * seq.group_stride;
    pk.block_size = in.block_size;
    pk.dtype = in.dtype;
    pk.window = in.window;
    return pk;
  };
  auto keys = [&](size_t i) {  // keys the item's last row sees
    const Item& it = items_[i];
    const int64_t n = seqs_[size_t(it.seq)].n_past + it.row0 + it.rows;
    return it.seg < 0 ? n : std::min(n, (it.seg + 1) * kAttentionSegmentKeys);
  };
  auto first_key = [&](size_t i) { return std::max(0, items_[i].seg) * kAttentionSegmentKeys; };
  auto first_visible_key = [&](size_t i) {  // for prefetching: nothing before the window
    const Item& it = items_[i];
    const int64_t window_begin =
        in.window > 0 ? seqs_[size_t(it.seq)].n_past + it.row0 - in.window + 1 : int64_t(0);
    return std::max(first_key(i), window_begin);
  };
  auto run_items = [&](int64_t b, int64_t e, int) {
    for (size_t i = size_t(b); i < size_t(e); ++i) {
      const Item& it = items_[i];
      const AttentionSeq& seq = seqs_[size_t(it.seq)];
      const int head = it.unit * n_group;  // first query head of the item
      PagedKvHead pk = kv_head(i), next;
      if (i + 1 < items_.size()) {  // a thread's items come in order: fetch ahead into the next
        next = kv_head(i + 1);
        pk.prefetch_next = &next;
        pk.prefetch_next_keys = keys(i + 1);
        pk.prefetch_next_begin = first_visible_key(i + 1);
      }
      const int64_t row = seq.row + it.row0;
      if (it.split >= 0) {  // one segment of a split tile
        const SplitTile& st = split_tiles_[size_t(it.split)];
        const int64_t k0 = first_key(i);
        const int r0 = int(std::max<int64_t>(0, k0 - (seq.n_past + it.row0)));  // rows that see none: skipped
        const int64_t acc_row = row + r0;
        float* acc = it.seg == 0
                         ? in.out + acc_row * qd
                         : split_acc_.data() + st.acc_off + size_t((int64_t(it.seg - 1) * it.rows + r0) * qd);
        float* ml = split_ml_.data() + st.ml_off + size_t((int64_t(it.seg) * c.n_heads + head) * 2 * it.rows);
        attention_paged_partial(in.q + acc_row * qd + int64_t(head) * hd, qd, it.rows - r0, n_group,
                                seq.n_past + it.row0 + r0, pk, hd, in.scale, k0, keys(i),
                                acc + int64_t(head) * hd, qd, ml + r0 * n_group,
                                ml + (it.rows + r0) * n_group);
        if (split_left_[size_t(it.split) * size_t(c.n_heads) + size_t(it.unit)].fetch_sub(
                1, std::memory_order_acq_rel) == 1)
          merge_segments(st, it.unit, in.out);
        continue;
      }
      attention_paged(in.q + row * qd + int64_t(head) * hd, qd, it.rows, n_group, seq.n_past + it.row0, pk,
                      hd, in.scale, in.out + row * qd + int64_t(head) * hd, qd);
    }
  };
  for (size_t t = 0; t < split_tiles_.size(); ++t)
    for (int u = 0; u < c.n_heads / n_group; ++u)
      split_left_[t * size_t(c.n_heads) + size_t(u)].store(split_tiles_[t].n_seg, std::memory_order_relaxed);
  if (work_ < kMinParallelWork || pool.size() == 1)
    run_items(0, int64_t(items_.size()), 0);
  else
    pool.parallel_ranges(int64_t(items_.size()), 1, run_items);  // a descheduled worker's items are taken
}

}  // namespace kvserve
