#include "cache/block_pool.h"

#include <algorithm>
#include <cassert>

namespace kvserve {

BlockPool::BlockPool(int n_blocks, int block_size)
    : block_size_(block_size),
      meta_(size_t(n_blocks)),
      tokens_(size_t(n_blocks) * size_t(block_size), -1),
      index_(n_blocks) {
  assert(n_blocks > 0 && block_size > 0);
  for (int32_t b = 0; b < n_blocks; ++b) push_back(b);
}

void BlockPool::unlink(int32_t b) {
  Meta& m = meta_[b];
  assert(m.in_free_list);
  if (m.prev >= 0)
    meta_[m.prev].next = m.next;
  else
    head_ = m.next;
  if (m.next >= 0)
    meta_[m.next].prev = m.prev;
  else
    tail_ = m.prev;
  m.prev = m.next = -1;
  m.in_free_list = false;
  --num_free_;
  if (m.hashed) --num_cached_free_;
}

void BlockPool::push_front(int32_t b) {
  Meta& m = meta_[b];
  m.prev = -1;
  m.next = head_;
  if (head_ >= 0)
    meta_[head_].prev = b;
  else
    tail_ = b;
  head_ = b;
  m.in_free_list = true;
  ++num_free_;
  if (m.hashed) ++num_cached_free_;
}

void BlockPool::push_back(int32_t b) {
  Meta& m = meta_[b];
  m.next = -1;
  m.prev = tail_;
  if (tail_ >= 0)
    meta_[tail_].next = b;
  else
    head_ = b;
  tail_ = b;
  m.in_free_list = true;
  ++num_free_;
  if (m.hashed) ++num_cached_free_;
}

int32_t BlockPool::allocate() {
  assert(head_ >= 0 && "allocate() on an empty pool");
  int32_t b = head_;
  unlink(b);
  Meta& m = meta_[b];
  if (m.hashed) {  // evict: the old prefix is no longer findable
    index_.erase(m.hash, b);
    m.hashed = false;
  }
  m.ref = 1;
  ++m.gen;
  m.parent = -1;
  return b;
}

void BlockPool::incref(int32_t b) {
  Meta& m = meta_[b];
  if (m.ref == 0) unlink(b);
  ++m.ref;
}

void BlockPool::decref(int32_t b) {
  Meta& m = meta_[b];
  assert(m.ref > 0 && "decref of a free block");
  if (--m.ref == 0) {
    if (m.hashed)
      push_back(b);
    else
      push_front(b);
  }
}

int32_t BlockPool::lookup(uint64_t hash, std::span<const int32_t> tokens, int32_t parent,
                          uint32_t parent_gen) const {
  int32_t b = index_.find(hash);
  if (b < 0) return -1;
  const Meta& m = meta_[b];
  if (!m.hashed || m.hash != hash || m.parent != parent) return -1;
  if (parent >= 0 && m.parent_gen != parent_gen) return -1;
  auto stored = stored_tokens(b);
  if (tokens.size() != stored.size() || !std::equal(tokens.begin(), tokens.end(), stored.begin())) return -1;
  return b;
}

bool BlockPool::register_block(int32_t b, uint64_t hash, std::span<const int32_t> tokens, int32_t parent,
                               uint32_t parent_gen) {
  Meta& m = meta_[b];
  assert(m.ref > 0 && int(tokens.size()) == block_size_);
  if (m.hashed || !index_.insert(hash, b)) return false;
  m.hashed = true;
  m.hash = hash;
  m.parent = parent;
  m.parent_gen = parent_gen;
  std::copy(tokens.begin(), tokens.end(), tokens_.begin() + size_t(b) * block_size_);
  return true;
}

bool BlockPool::check_invariants() const {
  int n_free = 0, n_cached_free = 0, n_hashed = 0;
  int32_t prev = -1;
  for (int32_t b = head_; b >= 0; b = meta_[b].next) {
    const Meta& m = meta_[b];
    if (!m.in_free_list || m.ref != 0 || m.prev != prev) return false;
    ++n_free;
    if (m.hashed) ++n_cached_free;
    if (n_free > n_blocks()) return false;  // a cycle
    prev = b;
  }
  if (prev != tail_ || n_free != num_free_ || n_cached_free != num_cached_free_) return false;
  for (int32_t b = 0; b < n_blocks(); ++b) {
    const Meta& m = meta_[b];
    if (m.ref < 0) return false;
    if ((m.ref == 0) != m.in_free_list) return false;  // never both free and used
    if (m.hashed) {
      ++n_hashed;
      if (index_.find(m.hash) != b) return false;
    }
  }
  return n_hashed == index_.size();
}

}  // namespace kvserve
