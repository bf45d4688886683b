// The CPU forward pass over a ForwardBatch. Every new token of every sequence is stacked
// into one [n_tokens, dim] activation matrix, so each linear layer is a single matmul
// over the whole batch; only attention is per sequence (and per head), reading K/V
// through the sequence's block table. The layers are the architecture's (src/model/
// arch/): this file implements the blocks they are composed of (LayerBlocks).
#include "model/cpu_runner.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_plan.h"
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

constexpr int64_t kMinParallelFloats = 1 << 15;  // element-wise work worth waking the pool for

}  // namespace

struct CpuRunner::Impl final : LayerBlocks {
  Impl(const Model& m, const RunnerOptions& o);
  const float* forward(const ForwardBatch& batch, KvCacheStorage& kv);
  void validate(const ForwardBatch& batch, const KvCacheStorage& kv) const;
  void validate_tree(const SeqSlice& s, const KvCacheConfig& kc) const;
  void plan_step(const ForwardBatch& batch);
  void plan_kv_groups();
  // Group g's first block a slice's step reads (the blocks before it may be released).
  int64_t first_live_block(const SeqSlice& s, int g, int block_size) const {
    return attention_first_key(s.n_past, group_window[size_t(g)]) / block_size;
  }

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
  std::shared_ptr<ThreadPool> pool_owner;
  ThreadPool& pool;

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
  std::unique_ptr<float[]> up;          // [T, ffn_dim]
  std::unique_ptr<float[]> rope_cs;     // [rope tables][T, n_rot / 2, 2] cos/sin per token position
  std::unique_ptr<float[]> logits;      // [T, n_vocab]
  std::vector<int32_t> tok_pos;         // [T] position of each stacked token
  std::vector<int32_t> seq_begin;       // [max_seqs + 1] first stacked row of each sequence
  std::vector<AttentionSeq> attn_seqs;  // this step's sequences, for the attention plan
  // KV groups (RunnerOptions::hybrid_kv): each group's window, each layer's group and its
  // slot among the group's layers (the layer index in KvCacheStorage), layers per block.
  std::vector<int> group_window;
  std::vector<int> layer_group, layer_slot;
  int group_layers = 0;
  AttentionPlan attn;  // this step's attention work (split-K included)
  int n_tokens = 0;
  const ForwardBatch* batch = nullptr;  // this step's, while forward() runs
  KvCacheStorage* kv = nullptr;
  RunnerStats stats;
};

CpuRunner::Impl::Impl(const Model& m, const RunnerOptions& o)
    : model(m),
      c(m.config()),
      opt(o),
      pool_owner(o.pool ? o.pool : std::make_shared<ThreadPool>(o.n_threads)),
      pool(*pool_owner),
      // A token tree's lanes are attended as sequences of their own: up to one per token.
      attn(AttentionShape{c.n_heads, c.n_kv_heads, c.head_dim}, o.max_seqs + o.max_batch_tokens,
           o.max_batch_tokens) {
  RUNNER_CHECK(o.max_batch_tokens > 0 && o.max_seqs > 0, "max_batch_tokens and max_seqs must be positive");
  RUNNER_CHECK(o.skip_layers.empty() || int(o.skip_layers.size()) == c.n_layers,
               "skip_layers needs one flag per layer");
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
  attn_seqs.reserve(size_t(o.max_seqs) + size_t(T));
  plan_kv_groups();
}

// Layers with the same window form groups of as many layers as the rarest window has
// (Gemma-3-270M: 3 global and 15 local layers = 1 + 5 groups of 3), so every block holds
// the same bytes and one pool serves all groups; a window's last group may be short (its
// blocks' spare layer slots go unused). Full attention first, then longer windows first.
void CpuRunner::Impl::plan_kv_groups() {
  const int L = c.n_layers;
  std::vector<int> windows;
  for (int l = 0; l < L; ++l) windows.push_back(opt.hybrid_kv ? c.layer_attention[size_t(l)].window : 0);
  std::vector<int> kinds = windows;
  std::sort(kinds.begin(), kinds.end(), [](int a, int b) { return a == 0 ? b != 0 : b != 0 && a > b; });
  kinds.erase(std::unique(kinds.begin(), kinds.end()), kinds.end());
  group_layers = L;
  for (int w : kinds)
    group_layers = std::min<int>(group_layers, int(std::count(windows.begin(), windows.end(), w)));
  layer_group.assign(size_t(L), 0);
  layer_slot.assign(size_t(L), 0);
  for (int w : kinds) {
    int n = 0;
    for (int l = 0; l < L; ++l) {
      if (windows[size_t(l)] != w) continue;
      if (n % group_layers == 0) group_window.push_back(w);
      layer_group[size_t(l)] = int(group_window.size()) - 1;
      layer_slot[size_t(l)] = n % group_layers;
      ++n;
    }
  }
}

void CpuRunner::Impl::validate(const ForwardBatch& batch, const KvCacheStorage& kv) const {
  const KvCacheConfig& kc = kv.config();
  RUNNER_CHECK(kc.n_layers == group_layers && kc.n_kv_heads == c.n_kv_heads && kc.head_dim == c.head_dim,
               "KV cache layout (%d layers, %d kv heads, head dim %d) does not match the model", kc.n_layers,
               kc.n_kv_heads, kc.head_dim);
  const size_t G = group_window.size();
  RUNNER_CHECK(batch.seqs.size() <= size_t(opt.max_seqs), "%zu sequences > max_seqs %d", batch.seqs.size(),
               opt.max_seqs);
  int64_t total = 0;
  for (const SeqSlice& s : batch.seqs) {
    RUNNER_CHECK(s.n_past >= 0, "negative n_past");
    RUNNER_CHECK(!s.tokens.empty() || s.logits == LogitsMode::None,
                 "logits requested for a slice with no tokens");
    total += int64_t(s.tokens.size());
    // A tree's nodes end at its deepest position, not after all its tokens.
    int64_t end = s.n_past + int64_t(s.tokens.size());
    if (s.tree && s.tree->depth.size() == s.tokens.size())
      end = s.n_past + 1 + *std::max_element(s.tree->depth.begin(), s.tree->depth.end());
    RUNNER_CHECK(s.block_table.size() % G == 0, "block table of %zu ids for %zu KV groups",
                 s.block_table.size(), G);
    const size_t width = s.block_table.size() / G;
    RUNNER_CHECK(int64_t(width) * kc.block_size >= end,
                 "block table of %zu blocks does not cover %lld positions", width, (long long)end);
    const int64_t used_blocks = (end + kc.block_size - 1) / kc.block_size;
    for (size_t g = 0; g < G; ++g)
      for (int64_t b = first_live_block(s, int(g), kc.block_size); b < used_blocks; ++b) {
        const int32_t id = s.block_table[g * width + size_t(b)];
        RUNNER_CHECK(id >= 0 && id < kc.n_blocks, "block id %d out of range [0, %d)", id, kc.n_blocks);
      }
    for (int32_t t : s.tokens) RUNNER_CHECK(t >= 0 && t < c.n_vocab, "token id %d out of range", t);
    if (s.tree) validate_tree(s, kc);
  }
  RUNNER_CHECK(total <= opt.max_batch_tokens, "%lld tokens > max_batch_tokens %d", (long long)total,
               opt.max_batch_tokens);
}

void CpuRunner::Impl::validate_tree(const SeqSlice& s, const KvCacheConfig& kc) const {
  const TokenTree& t = *s.tree;
  const size_t n = s.tokens.size(), full = s.block_table.size(), G = group_window.size(), width = full / G;
  RUNNER_CHECK(s.logits == LogitsMode::All, "a token tree needs the logits of every node");
  RUNNER_CHECK(t.n_lanes >= 1 && t.n_lanes <= 64, "%d lanes (1 to 64)", t.n_lanes);
  RUNNER_CHECK(t.depth.size() == n && t.lanes.size() == n, "tree arrays do not match the %zu tokens", n);
  RUNNER_CHECK(t.lane_tables.size() == size_t(t.n_lanes - 1) * full, "lane tables of %zu ids for %d lanes",
               t.lane_tables.size(), t.n_lanes);
  const uint64_t all = t.n_lanes == 64 ? ~0ULL : (1ULL << t.n_lanes) - 1;
  RUNNER_CHECK(n > 0 && t.depth[0] == 0 && t.lanes[0] == all, "the root must be at depth 0 in every lane");
  int32_t max_depth = 0;
  for (size_t i = 1; i < n; ++i) {
    RUNNER_CHECK(t.depth[i] >= 1 && t.depth[i] <= t.depth[i - 1] + 1, "node %zu: depth %d not in preorder", i,
                 t.depth[i]);
    RUNNER_CHECK(t.lanes[i] != 0 && (t.lanes[i] & ~all) == 0, "node %zu: lanes outside the tree", i);
    max_depth = std::max(max_depth, t.depth[i]);
  }
  RUNNER_CHECK(int64_t(width) * kc.block_size >= s.n_past + max_depth + 1,
               "block tables do not cover the tree");
  const int64_t used_blocks = (s.n_past + max_depth + kc.block_size) / kc.block_size;
  for (int w = 1; w < t.n_lanes; ++w)
    for (size_t g = 0; g < G; ++g)
      for (int64_t b = first_live_block(s, int(g), kc.block_size); b < used_blocks; ++b) {
        const int32_t id = t.lane_tables[size_t(w - 1) * full + g * width + size_t(b)];
        RUNNER_CHECK(id >= 0 && id < kc.n_blocks, "lane %d: block id %d out of range", w, id);
      }
}

// Lane w's block table of a tree slice (lane 0: the slice's own).
static const int32_t* lane_table(const SeqSlice& s, int lane) {
  return lane == 0 ? s.block_table.data()
                   : s.tree->lane_tables.data() + size_t(lane - 1) * s.block_table.size();
}

void CpuRunner::Impl::attention(int layer, const LayerWeights& L) {
  const ForwardBatch& batch = *this->batch;
  KvCacheStorage& kv = *this->kv;
  const KvCacheConfig& kc = kv.config();
  const int hd = c.head_dim;
  const int64_t head_stride = kv_head_elems(kc.dtype, kc.block_size, hd);  // elements (scales included)
  const int64_t block_stride = int64_t(kc.n_kv_heads) * head_stride;       // per block per layer
  const size_t esize = kv_dtype_size(kc.dtype);
  const int group = layer_group[size_t(layer)], slot_layer = layer_slot[size_t(layer)];

  // Write this layer's new K/V into each token's slot (rounded to the cache's dtype).
  for (size_t s = 0; s < batch.seqs.size(); ++s) {
    const SeqSlice& seq = batch.seqs[s];
    const size_t row = size_t(group) * (seq.block_table.size() / group_window.size());
    for (int32_t r = seq_begin[s]; r < seq_begin[s + 1]; ++r) {
      const int32_t pos = tok_pos[size_t(r)];
      const int slot = pos % kc.block_size;
      // A tree node goes into every lane whose path holds it; other tokens into their one table.
      uint64_t lanes = seq.tree ? seq.tree->lanes[size_t(r - seq_begin[s])] : 1;
      for (; lanes; lanes &= lanes - 1) {
        const int32_t block = lane_table(seq, std::countr_zero(lanes))[row + size_t(pos / kc.block_size)];
        char* kb = static_cast<char*>(kv.k_block(slot_layer, block));
        char* vb = static_cast<char*>(kv.v_block(slot_layer, block));
        for (int h = 0; h < c.n_kv_heads; ++h)
          kv_store_token(kb + h * head_stride * esize, vb + h * head_stride * esize, kc.dtype, kc.block_size,
                         hd, slot, k.get() + int64_t(r) * c.kv_dim() + h * hd,
                         v.get() + int64_t(r) * c.kv_dim() + h * hd);
      }
    }
  }

  AttentionLayerInputs in;
  in.q = q.get();
  in.out = att.get();
  in.k_base = kv.k_block(slot_layer, 0);
  in.v_base = kv.v_block(slot_layer, 0);
  in.kv_group = group;
  in.block_stride = block_stride;
  in.head_stride = head_stride;
  in.block_size = kc.block_size;
  in.dtype = kc.dtype;
  in.window = L.window;
  in.scale = c.attn_scale;
  attn.run(in, pool);
}

// Stacks the step's new tokens (positions, first rows) and plans its attention work:
// per step, not per layer, as every layer has the same shape.
void CpuRunner::Impl::plan_step(const ForwardBatch& batch) {
  int32_t T = 0;
  attn_seqs.clear();
  for (size_t s = 0; s < batch.seqs.size(); ++s) {
    const SeqSlice& seq = batch.seqs[s];
    seq_begin[s] = T;
    const int32_t n = int32_t(seq.tokens.size());
    const int32_t stride = int32_t(seq.block_table.size() / group_window.size());
    if (!seq.tree) {
      for (int32_t i = 0; i < n; ++i) tok_pos[size_t(T + i)] = seq.n_past + i;
      attn_seqs.push_back(AttentionSeq{seq.block_table.data(), seq.n_past, n, T, stride});
    } else {
      // In preorder, the nodes a lane is the first (lowest) to hold are consecutive rows at
      // consecutive depths: one chain each, attended through that lane's table.
      const TokenTree& t = *seq.tree;
      for (int32_t i = 0; i < n; ++i) {
        tok_pos[size_t(T + i)] = seq.n_past + t.depth[size_t(i)];
        const int lane = std::countr_zero(t.lanes[size_t(i)]);
        AttentionSeq* last = i > 0 ? &attn_seqs.back() : nullptr;
        if (last && last->block_table == lane_table(seq, lane) &&
            t.depth[size_t(i)] == t.depth[size_t(i - 1)] + 1)
          ++last->n_new;
        else
          attn_seqs.push_back(
              AttentionSeq{lane_table(seq, lane), seq.n_past + t.depth[size_t(i)], 1, T + i, stride});
      }
    }
    T += n;
  }
  seq_begin[batch.seqs.size()] = T;
  n_tokens = T;
  attn.plan(attn_seqs, pool.size());
  stats.split_tiles += attn.split_tiles();
  stats.split_items += attn.split_items();
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

  for (int l = 0; l < c.n_layers; ++l)
    if (opt.skip_layers.empty() || !opt.skip_layers[size_t(l)])
      c.arch->forward_layer(*this, l, model.layer(l));

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

std::span<const int> CpuRunner::kv_group_windows() const {
  return impl_->group_window;
}

const RunnerStats& CpuRunner::stats() const {
  return impl_->stats;
}

std::shared_ptr<ThreadPool> CpuRunner::pool() const {
  return impl_->pool_owner;
}

KvCacheConfig CpuRunner::kv_config(int n_blocks, int block_size, KvDtype dtype) const {
  KvCacheConfig kc;
  kc.n_layers = impl_->group_layers;
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
