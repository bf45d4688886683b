// The CPU forward pass over a ForwardBatch. Every new token of every sequence is stacked
// into one [n_tokens, dim] activation matrix, so each linear layer is a single matmul
// over the whole batch; only attention is per sequence (and per head), reading K/V
// through the sequence's block table. The layers are the architecture's (src/model/
// arch/): this file implements the blocks they are composed of (LayerBlocks).
#include "model/cpu_runner.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/rope.h"
#include "model/arch/arch.h"
#include "model/model.h"

namespace kvserve {
namespace {

// A violated batch contract is a bug in the caller (the engine), not a runtime condition.
#define RUNNER_CHECK(cond, ...)                                       \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::fprintf(stderr, "%s:%d: CpuRunner: ", __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                              \
      std::fputc('\n', stderr);                                       \
      std::abort();                                                   \
    }                                                                 \
  } while (0)

// Uninitialized: pages of the larger buffers (logits) are only touched when used.
std::unique_ptr<float[]> buffer(int64_t n) {
  return std::unique_ptr<float[]>(new float[size_t(n)]);
}

constexpr int kAttnRowTile = 32;                 // query rows per attention work item
constexpr int64_t kMinParallelFloats = 1 << 15;  // element-wise work worth waking the pool for
constexpr int64_t kMinParallelAttn = 1 << 16;    // attention multiply-adds worth waking the pool for

struct AttnItem {
  int32_t seq;   // index in the batch
  int32_t head;  // query head / attn_group
  int32_t row0;  // first new-token row of the sequence in this item
  int32_t rows;
  int32_t seg = -1;    // split-K: this segment of the keys only (-1: all of them)
  int32_t split = -1;  // split-K: the split tile (Impl::split_tiles) it belongs to
};

// A row tile whose keys are split into segments across items (split-K, see forward).
struct SplitTile {
  int64_t row;  // first stacked row
  int32_t rows;
  int32_t n_seg;   // key segments
  int64_t n_past;  // keys before the tile's first row
  size_t acc_off;  // segments 1..: [segment - 1][row][q_dim] floats at split_acc + acc_off
  size_t ml_off;   // every segment: [segment][head * 2 * rows ..] max then sum, at split_ml + ml_off
};

// Steps with at most this many (row tile, KV head) units per thread split their lone
// tiles of long contexts by key segment: few items are too coarse to balance. So does a
// lone tile whose keys are more than 1 / kSplitShareOfThread of a thread's fair share of
// the step's attention (one long conversation among short ones).
constexpr int64_t kSplitMaxUnitsPerThread = 8;
constexpr int64_t kSplitShareOfThread = 4;

}  // namespace

struct CpuRunner::Impl final : LayerBlocks {
  Impl(const Model& m, const RunnerOptions& o);
  const float* forward(const ForwardBatch& batch, KvCacheStorage& kv);
  void validate(const ForwardBatch& batch, const KvCacheStorage& kv) const;
  void plan_step(const ForwardBatch& batch);
  void merge_segments(const SplitTile& st, int unit);

  // LayerBlocks, over this step's batch and cache.
  void qkv(const LayerWeights& L) override;
  void qkv_fused(const LayerWeights& L) override;
  void prepare_qk(const LayerWeights& L, QkSteps s) override;
  void attention(int layer, const LayerWeights& L) override;
  void attention_out(const WeightView& wo, const float* post_norm) override;
  void mlp(const LayerWeights& L, Activation act, const float* post_norm) override;
  void mlp_fused(const LayerWeights& L, Activation act, const float* post_norm) override;
  void mlp_down(const LayerWeights& L, const float* post_norm);
  void moe(const LayerWeights& L, Activation act, const float* post_norm) override;
  void route(int64_t T);                         // moe's top-k per token and the rows grouped by expert
  void add_to_residual(const float* post_norm);  // x += post_norm(proj)

  // Row-parallel element-wise work: on the pool only when there is enough of it (each
  // pool.run is a wake-up and a barrier; a decode step's norms are too small to pay).
  template <class F>
  void rows(int64_t n, int64_t floats_per_row, F&& f) {
    if (n * floats_per_row < kMinParallelFloats || pool.size() == 1)
      f(int64_t(0), n, 0);
    else
      pool.parallel_for(n, f);
  }

  const Model& model;
  const ModelConfig& c;
  RunnerOptions opt;
  ThreadPool pool;

  // Activations; T = max_batch_tokens.
  std::unique_ptr<float[]> x;      // [T, dim] residual stream
  std::unique_ptr<float[]> xn;     // [T, dim] normed input of a sub-layer / gathered final rows
  std::unique_ptr<float[]> q;      // [T, n_heads * head_dim]
  std::unique_ptr<float[]> k;      // [T, n_kv_heads * head_dim]
  std::unique_ptr<float[]> v;      // [T, n_kv_heads * head_dim]
  std::unique_ptr<float[]> att;    // [T, n_heads * head_dim] attention output
  std::unique_ptr<float[]> proj;   // [T, dim] output of wo / w_down
  std::unique_ptr<float[]> gate;   // [T, ffn_dim]
  std::unique_ptr<float[]> fused;  // [T, max(q_dim + 2 kv_dim, 2 ffn_dim)], models with fused matrices only

  // Mixture of experts (models with experts only): router logits [T, n_expert]; each
  // token's chosen experts and weights [T, k]; the (token, choice) pairs grouped by
  // expert (expert e's at moe_order[moe_begin[e] .. moe_begin[e + 1])); the gathered rows
  // and their gate/up and down outputs [T * k, ...].
  std::unique_ptr<float[]> router;
  std::vector<int32_t> moe_expert, moe_order, moe_begin, moe_cursor;
  std::vector<float> moe_weight;
  std::unique_ptr<float[]> moe_x, moe_gate, moe_up, moe_down;
  std::unique_ptr<float[]> up;       // [T, ffn_dim]
  std::unique_ptr<float[]> rope_cs;  // [rope tables][T, n_rot / 2, 2] cos/sin per token position
  std::unique_ptr<float[]> logits;   // [T, n_vocab]
  std::vector<int32_t> tok_pos;      // [T] position of each stacked token
  std::vector<int32_t> seq_begin;    // [max_seqs + 1] first stacked row of each sequence
  std::vector<AttnItem> items;       // attention work list, capacity set at construction
  int n_tokens = 0;
  const ForwardBatch* batch = nullptr;  // this step's, while forward() runs
  KvCacheStorage* kv = nullptr;
  int attn_group = 1;     // query heads per attention work item (this step)
  int64_t attn_work = 0;  // this step's multiply-adds of q.k and p.v, roughly

  // Split-K (see forward): the split tiles of this step and their partial results (see
  // SplitTile); the last item of a (tile, unit) to finish folds its segments. The
  // buffers grow (never shrink) when a longer context first needs more.
  std::vector<SplitTile> split_tiles;  // capacity max_seqs
  std::vector<float> split_acc, split_ml;
  std::unique_ptr<std::atomic<int>[]> split_left;  // [tile * n_heads + unit] segments not yet done

  RunnerStats stats;
};

CpuRunner::Impl::Impl(const Model& m, const RunnerOptions& o)
    : model(m), c(m.config()), opt(o), pool(o.n_threads) {
  RUNNER_CHECK(o.max_batch_tokens > 0 && o.max_seqs > 0, "max_batch_tokens and max_seqs must be positive");
  const int64_t T = o.max_batch_tokens;
  x = buffer(T * c.dim);
  xn = buffer(T * c.dim);
  q = buffer(T * c.q_dim());
  k = buffer(T * c.kv_dim());
  v = buffer(T * c.kv_dim());
  att = buffer(T * c.q_dim());
  proj = buffer(T * c.dim);
  gate = buffer(T * c.ffn_dim);
  up = buffer(T * c.ffn_dim);
  if (m.layer(0).wqkv.data || m.layer(0).w_gate_up.data)
    fused = buffer(T * std::max(c.q_dim() + 2 * c.kv_dim(), 2 * c.ffn_dim));
  if (c.n_expert > 0) {
    const int64_t TK = T * c.n_expert_used;
    router = buffer(T * c.n_expert);
    moe_expert.resize(size_t(TK));
    moe_weight.resize(size_t(TK));
    moe_order.resize(size_t(TK));
    moe_begin.resize(size_t(c.n_expert) + 1);
    moe_cursor.resize(size_t(c.n_expert));
    moe_x = buffer(TK * c.dim);
    moe_gate = buffer(TK * c.expert_ffn_dim);
    moe_up = buffer(TK * c.expert_ffn_dim);
    moe_down = buffer(TK * c.dim);
  }
  rope_cs = buffer(int64_t(m.n_rope_tables()) * T * c.n_rot);
  logits = buffer(T * int64_t(c.n_vocab));
  tok_pos.resize(size_t(T));
  seq_begin.resize(size_t(o.max_seqs) + 1);
  // Each sequence splits into ceil(len / tile) <= len / tile + 1 tiles per head.
  items.reserve(size_t(c.n_heads) * size_t(T / kAttnRowTile + o.max_seqs));
  split_tiles.reserve(size_t(o.max_seqs));
  split_left = std::make_unique<std::atomic<int>[]>(size_t(o.max_seqs) * size_t(c.n_heads));
}

void CpuRunner::Impl::validate(const ForwardBatch& batch, const KvCacheStorage& kv) const {
  const KvCacheConfig& kc = kv.config();
  RUNNER_CHECK(kc.n_layers == c.n_layers && kc.n_kv_heads == c.n_kv_heads && kc.head_dim == c.head_dim,
               "KV cache layout (%d layers, %d kv heads, head dim %d) does not match the model", kc.n_layers,
               kc.n_kv_heads, kc.head_dim);
  RUNNER_CHECK(batch.seqs.size() <= size_t(opt.max_seqs), "%zu sequences > max_seqs %d", batch.seqs.size(),
               opt.max_seqs);
  int64_t total = 0;
  for (const SeqSlice& s : batch.seqs) {
    RUNNER_CHECK(s.n_past >= 0, "negative n_past");
    RUNNER_CHECK(!s.tokens.empty() || s.logits == LogitsMode::None,
                 "logits requested for a slice with no tokens");
    total += int64_t(s.tokens.size());
    const int64_t end = s.n_past + int64_t(s.tokens.size());
    RUNNER_CHECK(int64_t(s.block_table.size()) * kc.block_size >= end,
                 "block table of %zu blocks does not cover %lld positions", s.block_table.size(),
                 (long long)end);
    const int64_t used_blocks = (end + kc.block_size - 1) / kc.block_size;
    for (int64_t b = 0; b < used_blocks; ++b)
      RUNNER_CHECK(s.block_table[size_t(b)] >= 0 && s.block_table[size_t(b)] < kc.n_blocks,
                   "block id %d out of range [0, %d)", s.block_table[size_t(b)], kc.n_blocks);
    for (int32_t t : s.tokens) RUNNER_CHECK(t >= 0 && t < c.n_vocab, "token id %d out of range", t);
  }
  RUNNER_CHECK(total <= opt.max_batch_tokens, "%lld tokens > max_batch_tokens %d", (long long)total,
               opt.max_batch_tokens);
}

// Folds the segments of one unit (attn_group query heads) of a split tile, in segment
// order, exactly as attention_paged does.
void CpuRunner::Impl::merge_segments(const SplitTile& st, int unit) {
  const int hd = c.head_dim, n_group = attn_group, head = unit * n_group, rows = st.rows;
  const float* ml0 = split_ml.data() + st.ml_off + size_t(head) * 2 * size_t(rows);
  for (int i = 0; i < rows * n_group; ++i) {
    const int r = i / n_group, g = i % n_group;
    float* out = att.get() + (st.row + r) * c.q_dim() + int64_t(head + g) * hd;
    float m = ml0[i], l = ml0[rows * n_group + i];
    for (int s = 1; s < st.n_seg; ++s) {
      if (s * kAttentionSegmentKeys > st.n_past + r) break;  // the row sees none of segment s on
      const float* ml = ml0 + int64_t(s) * c.n_heads * 2 * rows;
      const float* acc = split_acc.data() + st.acc_off + size_t((int64_t(s - 1) * rows + r) * c.q_dim()) +
                         size_t(head + g) * size_t(hd);
      if (ml[rows * n_group + i] > 0.0f) attention_merge(out, &m, &l, acc, ml[i], ml[rows * n_group + i], hd);
    }
    attention_finish(out, l, hd);
  }
}

void CpuRunner::Impl::attention(int layer, const LayerWeights& L) {
  const ForwardBatch& batch = *this->batch;
  KvCacheStorage& kv = *this->kv;
  const KvCacheConfig& kc = kv.config();
  const int hd = c.head_dim;
  const int64_t block_stride = int64_t(kc.n_kv_heads) * kc.block_size * hd;  // elements per block per layer
  const int64_t head_stride = int64_t(kc.block_size) * hd;
  const size_t esize = kv_dtype_size(kc.dtype);

  // Write this layer's new K/V into each token's slot (rounded to the cache's dtype).
  for (size_t s = 0; s < batch.seqs.size(); ++s) {
    const SeqSlice& seq = batch.seqs[s];
    for (int32_t r = seq_begin[s]; r < seq_begin[s + 1]; ++r) {
      const int32_t pos = tok_pos[size_t(r)];
      const int32_t block = seq.block_table[size_t(pos / kc.block_size)];
      const int slot = pos % kc.block_size;
      char* kb = static_cast<char*>(kv.k_block(layer, block));
      char* vb = static_cast<char*>(kv.v_block(layer, block));
      for (int h = 0; h < c.n_kv_heads; ++h)
        kv_store_token(kb + h * head_stride * esize, vb + h * head_stride * esize, kc.dtype, kc.block_size,
                       hd, slot, k.get() + int64_t(r) * c.kv_dim() + h * hd,
                       v.get() + int64_t(r) * c.kv_dim() + h * hd);
    }
  }

  // Attention over (sequence, head or KV-head group, row tile), handed out dynamically:
  // causal prefill tiles differ in cost.
  const char* k_base = static_cast<const char*>(kv.k_block(layer, 0));
  const char* v_base = static_cast<const char*>(kv.v_block(layer, 0));
  const float scale = c.attn_scale;
  const int group = c.n_heads / c.n_kv_heads;
  const int n_group = attn_group;
  auto kv_head = [&](size_t i) {
    const AttnItem& it = items[i];
    PagedKvHead pk;
    const int kvh = it.head * n_group / group;
    pk.k = k_base + kvh * head_stride * esize;
    pk.v = v_base + kvh * head_stride * esize;
    pk.block_stride = block_stride;
    pk.block_table = batch.seqs[size_t(it.seq)].block_table.data();
    pk.block_size = kc.block_size;
    pk.dtype = kc.dtype;
    pk.window = L.window;
    return pk;
  };
  auto keys = [&](size_t i) {  // keys the item's last row sees
    const AttnItem& it = items[i];
    const int64_t n = batch.seqs[size_t(it.seq)].n_past + it.row0 + it.rows;
    return it.seg < 0 ? n : std::min(n, (it.seg + 1) * kAttentionSegmentKeys);
  };
  auto first_key = [&](size_t i) { return std::max(0, items[i].seg) * kAttentionSegmentKeys; };
  auto first_visible_key = [&](size_t i) {  // for prefetching: nothing before the window
    const AttnItem& it = items[i];
    const int64_t window_begin =
        L.window > 0 ? batch.seqs[size_t(it.seq)].n_past + it.row0 - L.window + 1 : int64_t(0);
    return std::max(first_key(i), window_begin);
  };
  auto run_items = [&](int64_t b, int64_t e, int) {
    for (size_t i = size_t(b); i < size_t(e); ++i) {
      const AttnItem& it = items[i];
      const SeqSlice& seq = batch.seqs[size_t(it.seq)];
      const int head = it.head * n_group;  // first query head of the item
      PagedKvHead pk = kv_head(i), next;
      if (i + 1 < items.size()) {  // a thread's items come in order: fetch ahead into the next
        next = kv_head(i + 1);
        pk.prefetch_next = &next;
        pk.prefetch_next_keys = keys(i + 1);
        pk.prefetch_next_begin = first_visible_key(i + 1);
      }
      const int64_t row = seq_begin[size_t(it.seq)] + it.row0;
      if (it.split >= 0) {  // one segment of a split tile
        const SplitTile& st = split_tiles[size_t(it.split)];
        const int64_t k0 = first_key(i);
        const int r0 = int(std::max<int64_t>(0, k0 - (seq.n_past + it.row0)));  // rows that see none: skipped
        const int64_t acc_row = row + r0;
        float* acc = it.seg == 0 ? att.get() + acc_row * c.q_dim()
                                 : split_acc.data() + st.acc_off +
                                       size_t((int64_t(it.seg - 1) * it.rows + r0) * c.q_dim());
        float* ml = split_ml.data() + st.ml_off + size_t((int64_t(it.seg) * c.n_heads + head) * 2 * it.rows);
        attention_paged_partial(q.get() + acc_row * c.q_dim() + int64_t(head) * hd, c.q_dim(), it.rows - r0,
                                n_group, seq.n_past + it.row0 + r0, pk, hd, scale, k0, keys(i),
                                acc + int64_t(head) * hd, c.q_dim(), ml + r0 * n_group,
                                ml + (it.rows + r0) * n_group);
        if (split_left[size_t(it.split) * size_t(c.n_heads) + size_t(it.head)].fetch_sub(
                1, std::memory_order_acq_rel) == 1)
          merge_segments(st, it.head);
        continue;
      }
      attention_paged(q.get() + row * c.q_dim() + int64_t(head) * hd, c.q_dim(), it.rows, n_group,
                      seq.n_past + it.row0, pk, hd, scale, att.get() + row * c.q_dim() + int64_t(head) * hd,
                      c.q_dim());
    }
  };
  for (size_t t = 0; t < split_tiles.size(); ++t)
    for (int u = 0; u < c.n_heads / n_group; ++u)
      split_left[t * size_t(c.n_heads) + size_t(u)].store(split_tiles[t].n_seg, std::memory_order_relaxed);
  if (attn_work < kMinParallelAttn || pool.size() == 1)
    run_items(0, int64_t(items.size()), 0);
  else
    pool.parallel_ranges(int64_t(items.size()), 1, run_items);  // a descheduled worker's items are taken
}

// The step's attention work: query-head grouping, split-K tiles, the work items, and the
// stacked rows' positions. Per step, not per layer: every layer has the same shape.
void CpuRunner::Impl::plan_step(const ForwardBatch& batch) {
  // Query heads sharing a KV head are attended together (each K/V block read once for
  // the group, about half the cost per head) unless that would leave a thread idle.
  const int group = c.n_heads / c.n_kv_heads;
  int64_t n_tiles = 0;
  for (const SeqSlice& seq : batch.seqs)
    n_tiles += (int64_t(seq.tokens.size()) + kAttnRowTile - 1) / kAttnRowTile;
  attn_group = group > 1 && (pool.size() == 1 || n_tiles * c.n_kv_heads >= pool.size()) ? group : 1;
  // Split-K: in a step with few items (decode of a few sequences), a sequence's lone row
  // tile over more than one segment of keys is split by key segment too, so that long
  // contexts spread evenly over the threads (3 KV heads of one sequence on 2 threads:
  // one thread did two while the other waited) while each K/V byte is still read once.
  // The segments are folded as attention_paged does: the results are the same bits.
  split_tiles.clear();
  if (pool.size() > 1) {
    const bool few_units = n_tiles * c.n_kv_heads <= kSplitMaxUnitsPerThread * int64_t(pool.size());
    int64_t keys_per_thread = 0;  // the step's keys summed over its row tiles, per thread
    for (const SeqSlice& seq : batch.seqs)
      for (int64_t r = 0; r < int64_t(seq.tokens.size()); r += kAttnRowTile)
        keys_per_thread += seq.n_past + std::min<int64_t>(int64_t(seq.tokens.size()), r + kAttnRowTile);
    keys_per_thread /= pool.size();
    size_t acc_need = 0, ml_need = 0;
    int32_t row = 0;
    for (const SeqSlice& seq : batch.seqs) {
      const int32_t n = int32_t(seq.tokens.size());
      const int64_t n_keys = seq.n_past + n;
      if (n > 0 && n <= kAttnRowTile && n_keys > kAttentionSegmentKeys &&
          (few_units || n_keys * kSplitShareOfThread > keys_per_thread)) {
        const int32_t n_seg = int32_t((n_keys + kAttentionSegmentKeys - 1) / kAttentionSegmentKeys);
        split_tiles.push_back({row, n, n_seg, seq.n_past, acc_need, ml_need});
        acc_need += size_t(n_seg - 1) * size_t(n) * size_t(c.q_dim());
        ml_need += size_t(n_seg) * size_t(c.n_heads) * 2 * size_t(n);
      }
      row += n;
    }
    if (split_acc.size() < acc_need) split_acc.resize(acc_need);
    if (split_ml.size() < ml_need) split_ml.resize(ml_need);
    if (!split_tiles.empty()) attn_group = group;  // segments give the threads enough items
  }
  const int n_units = c.n_heads / attn_group;  // work items per tile: KV heads or query heads

  // Stack the new tokens: positions and attention work items.
  int32_t T = 0;
  items.clear();
  size_t n_split_seen = 0;
  for (size_t s = 0; s < batch.seqs.size(); ++s) {
    const SeqSlice& seq = batch.seqs[s];
    seq_begin[s] = T;
    const int32_t n = int32_t(seq.tokens.size());
    for (int32_t i = 0; i < n; ++i) tok_pos[size_t(T + i)] = seq.n_past + i;
    if (n_split_seen < split_tiles.size() && split_tiles[n_split_seen].row == T && n > 0) {
      // Unit-major: a thread's items stream one head's blocks in order.
      const int32_t j = int32_t(n_split_seen++), n_seg = split_tiles[size_t(j)].n_seg;
      items.reserve(items.size() + size_t(n_units) * size_t(n_seg));  // grows only for longer contexts
      for (int h = 0; h < n_units; ++h)
        for (int32_t sg = 0; sg < n_seg; ++sg) items.push_back({int32_t(s), h, 0, n, sg, j});
      ++stats.split_tiles;
      stats.split_items += int64_t(n_units) * n_seg;
      T += n;
      continue;
    }
    // Last tiles first: under the causal mask they see the most keys, and handing out the
    // heaviest items first evens out the threads' finishing times.
    const int32_t n_tiles = (n + kAttnRowTile - 1) / kAttnRowTile;
    for (int32_t t = n_tiles - 1; t >= 0; --t)
      for (int h = 0; h < n_units; ++h)
        items.push_back({int32_t(s), h, t * kAttnRowTile, std::min(kAttnRowTile, n - t * kAttnRowTile)});
    T += n;
  }
  seq_begin[batch.seqs.size()] = T;
  n_tokens = T;
  attn_work = 0;
  for (const SeqSlice& seq : batch.seqs) {
    const int64_t n = int64_t(seq.tokens.size());
    attn_work += n * (seq.n_past + n) * 2 * c.head_dim * c.n_heads;
  }
}

const float* CpuRunner::Impl::forward(const ForwardBatch& batch, KvCacheStorage& kv) {
  validate(batch, kv);
  ++stats.steps;
  this->batch = &batch;
  this->kv = &kv;
  plan_step(batch);
  const int dim = c.dim, T = n_tokens, n_rot = c.n_rot;
  if (T == 0) return logits.get();

  const int n_tables = model.n_rope_tables();
  rows(T, dim + n_tables * n_rot, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      // Find the token: sequences are few, a linear scan is fine.
      size_t s = 0;
      while (seq_begin[s + 1] <= r) ++s;
      float* xr = x.get() + r * dim;
      model.embed(batch.seqs[s].tokens[size_t(r - seq_begin[s])], xr);
      if (c.embed_scale != 1.0f)
        for (int i = 0; i < dim; ++i) xr[i] *= c.embed_scale;
      for (int t = 0; t < n_tables; ++t)
        rope_cos_sin(tok_pos[size_t(r)], model.rope_table(t).data(), n_rot,
                     rope_cs.get() + (int64_t(t) * T + r) * n_rot);
    }
  });

  for (int l = 0; l < c.n_layers; ++l) c.arch->forward_layer(*this, l, model.layer(l));

  // Gather the hidden rows that need logits, then one norm + one matmul over them.
  int64_t n_rows = 0;
  for (size_t s = 0; s < batch.seqs.size(); ++s) {
    const SeqSlice& seq = batch.seqs[s];
    const int64_t rows = logits_rows(seq);
    const int64_t first = seq_begin[s + 1] - rows;  // Last: the final row; All: every row
    std::memcpy(xn.get() + n_rows * dim, x.get() + first * dim, sizeof(float) * size_t(rows * dim));
    n_rows += rows;
  }
  if (n_rows == 0) return logits.get();
  rows(n_rows, dim, [&](int64_t b, int64_t e, int) {
    rmsnorm_rows(xn.get() + b * dim, model.output_norm(), xn.get() + b * dim, e - b, dim, c.norm_eps);
  });
  matmul(model.output(), xn.get(), n_rows, logits.get(), pool);
  return logits.get();
}

void CpuRunner::Impl::qkv(const LayerWeights& L) {
  // q, k and v read the same normed input: one dispatch, activations normed and
  // converted once, row by row (xn is scratch for weights that take float input).
  const MatmulOutput out[] = {{&L.wq, q.get()}, {&L.wk, k.get()}, {&L.wv, v.get()}};
  matmul_multi(out, x.get(), RowNorm{L.attn_norm, c.norm_eps}, xn.get(), n_tokens, pool);
}

void CpuRunner::Impl::qkv_fused(const LayerWeights& L) {
  const int qd = c.q_dim(), kvd = c.kv_dim(), width = qd + 2 * kvd;
  const MatmulOutput out[] = {{&L.wqkv, fused.get()}};
  matmul_multi(out, x.get(), RowNorm{L.attn_norm, c.norm_eps}, xn.get(), n_tokens, pool);
  rows(n_tokens, width, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      const float* f = fused.get() + r * width;
      std::memcpy(q.get() + r * qd, f, sizeof(float) * size_t(qd));
      std::memcpy(k.get() + r * kvd, f + qd, sizeof(float) * size_t(kvd));
      std::memcpy(v.get() + r * kvd, f + qd + kvd, sizeof(float) * size_t(kvd));
    }
  });
}

void CpuRunner::Impl::prepare_qk(const LayerWeights& L, QkSteps steps) {
  const int qd = c.q_dim(), kvd = c.kv_dim(), hd = c.head_dim, T = n_tokens;
  const float* cs_table = rope_cs.get() + int64_t(L.rope_table) * T * c.n_rot;
  rows(T, qd + 2 * kvd, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      float* qr = q.get() + r * qd;   // [n_heads, head_dim]
      float* kr = k.get() + r * kvd;  // [n_kv_heads, head_dim]
      if (steps.bias) {
        float* vr = v.get() + r * kvd;
        for (int i = 0; i < qd; ++i) qr[i] += L.bq[i];
        for (int i = 0; i < kvd; ++i) kr[i] += L.bk[i];
        for (int i = 0; i < kvd; ++i) vr[i] += L.bv[i];
      }
      if (steps.qk_norm) {
        rmsnorm_rows(qr, L.q_norm, qr, c.n_heads, hd, c.norm_eps);
        rmsnorm_rows(kr, L.k_norm, kr, c.n_kv_heads, hd, c.norm_eps);
      }
      const float* cs = cs_table + r * c.n_rot;
      rope_apply(qr, c.n_heads, hd, c.n_rot, cs, c.rope_style);
      rope_apply(kr, c.n_kv_heads, hd, c.n_rot, cs, c.rope_style);
    }
  });
}

void CpuRunner::Impl::add_to_residual(const float* post_norm) {
  const int dim = c.dim;
  rows(n_tokens, dim, [&](int64_t b, int64_t e, int) {
    if (post_norm)
      rmsnorm_rows(proj.get() + b * dim, post_norm, proj.get() + b * dim, e - b, dim, c.norm_eps);
    float* xr = x.get();
    const float* pr = proj.get();
    for (int64_t i = b * dim; i < e * dim; ++i) xr[i] += pr[i];
  });
}

void CpuRunner::Impl::attention_out(const WeightView& wo, const float* post_norm) {
  matmul(wo, att.get(), n_tokens, proj.get(), pool);
  add_to_residual(post_norm);
}

namespace {

// out = act(gate) * up, element-wise.
void gated(Activation act, const float* gate, const float* up, float* out, int64_t n) {
  switch (act) {
    case Activation::Silu: silu_mul(gate, up, out, n); break;
    case Activation::GeluTanh: gelu_tanh_mul(gate, up, out, n); break;
  }
}

}  // namespace

void CpuRunner::Impl::mlp(const LayerWeights& L, Activation act, const float* post_norm) {
  const int ffn = c.ffn_dim;
  const MatmulOutput gate_up[] = {{&L.w_gate, gate.get()}, {&L.w_up, up.get()}};
  matmul_multi(gate_up, x.get(), RowNorm{L.ffn_norm, c.norm_eps}, xn.get(), n_tokens, pool);
  rows(n_tokens, ffn, [&](int64_t b, int64_t e, int) {
    gated(act, gate.get() + b * ffn, up.get() + b * ffn, gate.get() + b * ffn, (e - b) * ffn);
  });
  mlp_down(L, post_norm);
}

void CpuRunner::Impl::mlp_fused(const LayerWeights& L, Activation act, const float* post_norm) {
  const int ffn = c.ffn_dim;
  const MatmulOutput gate_up[] = {{&L.w_gate_up, fused.get()}};
  matmul_multi(gate_up, x.get(), RowNorm{L.ffn_norm, c.norm_eps}, xn.get(), n_tokens, pool);
  rows(n_tokens, 2 * ffn, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      const float* f = fused.get() + r * 2 * ffn;
      gated(act, f, f + ffn, gate.get() + r * ffn, ffn);
    }
  });
  mlp_down(L, post_norm);
}

void CpuRunner::Impl::mlp_down(const LayerWeights& L, const float* post_norm) {
  matmul(L.w_down, gate.get(), n_tokens, proj.get(), pool);
  add_to_residual(post_norm);
}

void CpuRunner::Impl::route(int64_t T) {
  const int E = c.n_expert, K = c.n_expert_used;
  std::fill(moe_begin.begin(), moe_begin.end(), 0);
  for (int64_t t = 0; t < T; ++t) {
    float* p = router.get() + t * E;
    softmax(p, E);
    float sum = 0.0f;
    for (int k = 0; k < K; ++k) {  // the k-th best not yet chosen; the lower id on ties
      int best = -1;
      for (int e = 0; e < E; ++e)
        if (!(p[e] < 0.0f) && (best < 0 || p[e] > p[best])) best = e;  // NaN: never preferred
      moe_expert[size_t(t * K + k)] = best;
      moe_weight[size_t(t * K + k)] = p[best];
      sum += p[best];
      p[best] = -1.0f;  // taken
      ++moe_begin[size_t(best) + 1];
    }
    for (int k = 0; k < K; ++k) moe_weight[size_t(t * K + k)] /= sum;
  }
  for (int e = 0; e < E; ++e) moe_begin[size_t(e) + 1] += moe_begin[size_t(e)];
  std::copy(moe_begin.begin(), moe_begin.end() - 1, moe_cursor.begin());
  for (int64_t i = 0; i < T * K; ++i)
    moe_order[size_t(moe_cursor[size_t(moe_expert[size_t(i)])]++)] = int32_t(i);
}

void CpuRunner::Impl::moe(const LayerWeights& L, Activation act, const float* post_norm) {
  const int dim = c.dim, K = c.n_expert_used, eff = c.expert_ffn_dim;
  const int64_t T = n_tokens;
  rows(T, dim, [&](int64_t b, int64_t e, int) {
    rmsnorm_rows(x.get() + b * dim, L.ffn_norm, xn.get() + b * dim, e - b, dim, c.norm_eps);
  });
  matmul(L.w_router, xn.get(), T, router.get(), pool);
  route(T);
  // Each expert once over all its tokens (its weights read once per step), in expert
  // order: every token sums its experts' outputs in the same order whatever the batch,
  // and each row of a matmul does not depend on the others (batch invariance).
  std::fill_n(proj.get(), T * dim, 0.0f);
  for (int e = 0; e < c.n_expert; ++e) {
    const int32_t b = moe_begin[size_t(e)], n = moe_begin[size_t(e) + 1] - b;
    if (n == 0) continue;
    ++stats.expert_runs;
    for (int32_t i = 0; i < n; ++i)
      std::memcpy(moe_x.get() + int64_t(i) * dim, xn.get() + int64_t(moe_order[size_t(b + i)] / K) * dim,
                  sizeof(float) * size_t(dim));
    const MatmulOutput gate_up[] = {{&L.expert_gate[size_t(e)], moe_gate.get()},
                                    {&L.expert_up[size_t(e)], moe_up.get()}};
    matmul_multi(gate_up, moe_x.get(), n, pool);
    gated(act, moe_gate.get(), moe_up.get(), moe_gate.get(), int64_t(n) * eff);
    matmul(L.expert_down[size_t(e)], moe_gate.get(), n, moe_down.get(), pool);
    for (int32_t i = 0; i < n; ++i) {
      const int32_t choice = moe_order[size_t(b + i)];
      const float w = moe_weight[size_t(choice)];
      float* out = proj.get() + int64_t(choice / K) * dim;
      const float* d = moe_down.get() + int64_t(i) * dim;
      for (int j = 0; j < dim; ++j) out[j] += w * d[j];
    }
  }
  add_to_residual(post_norm);
}

CpuRunner::CpuRunner(const Model& model, const RunnerOptions& options)
    : impl_(std::make_unique<Impl>(model, options)) {}

CpuRunner::~CpuRunner() = default;

const float* CpuRunner::forward(const ForwardBatch& batch, KvCacheStorage& kv) {
  return impl_->forward(batch, kv);
}

int32_t CpuRunner::n_vocab() const {
  return impl_->c.n_vocab;
}

const RunnerStats& CpuRunner::stats() const {
  return impl_->stats;
}

KvCacheConfig CpuRunner::kv_config(int n_blocks, int block_size, KvDtype dtype) const {
  KvCacheConfig kc;
  kc.n_layers = impl_->c.n_layers;
  kc.n_kv_heads = impl_->c.n_kv_heads;
  kc.head_dim = impl_->c.head_dim;
  kc.block_size = block_size;
  kc.n_blocks = n_blocks;
  kc.dtype = dtype;
  return kc;
}

size_t CpuRunner::kv_bytes_per_block(int block_size, KvDtype dtype) const {
  return KvCacheStorage::bytes_per_block(kv_config(1, block_size, dtype));
}

Status CpuRunner::allocate_kv(int n_blocks, int block_size, KvDtype dtype) {
  if (n_blocks < 1 || block_size < 1) return Error{"the KV cache needs at least one block of one token"};
  kv_ = std::make_unique<KvCacheStorage>(kv_config(n_blocks, block_size, dtype));
  return ok_status();
}

void CpuRunner::copy_kv_block(int32_t src, int32_t dst) {
  RUNNER_CHECK(kv_ != nullptr, "copy_kv_block before allocate_kv");
  kv_->copy_block(src, dst);
}

LogitsView CpuRunner::forward(const ForwardBatch& batch) {
  RUNNER_CHECK(kv_ != nullptr, "forward before allocate_kv");
  int64_t rows = 0;
  for (const SeqSlice& s : batch.seqs) rows += logits_rows(s);
  return LogitsView{impl_->forward(batch, *kv_), rows, impl_->c.n_vocab};
}

}  // namespace kvserve
