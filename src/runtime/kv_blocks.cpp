// Paged KV-cache block allocator (host side). See include/fathom/kv_blocks.h.
#include "fathom/kv_blocks.h"

#include "fathom/error.h"

namespace fathom {

KvBlockAllocator::KvBlockAllocator(int32_t n_blocks, int32_t block_size, int32_t max_seqs,
                                   int32_t max_blocks_per_seq)
    : n_blocks_(n_blocks),
      block_size_(block_size),
      max_seqs_(max_seqs),
      max_blocks_per_seq_(max_blocks_per_seq) {
  FATHOM_CHECK(n_blocks > 0 && block_size > 0 && max_seqs > 0 && max_blocks_per_seq > 0,
               "KV cache: block counts must be positive (n_blocks ", n_blocks, ", block_size ",
               block_size, ", max_seqs ", max_seqs, ", max_blocks_per_seq ", max_blocks_per_seq,
               ")");
  // Pushed in reverse so block 0 is handed out first: a single sequence gets blocks 0, 1, 2...
  free_.reserve(n_blocks);
  for (int32_t b = n_blocks - 1; b >= 0; --b) free_.push_back(b);
  seqs_.resize(max_seqs);
  active_.assign(max_seqs, false);
  table_.assign(size_t(max_seqs) * max_blocks_per_seq, 0);
}

int32_t KvBlockAllocator::n_active_seqs() const {
  int32_t n = 0;
  for (bool a : active_) n += a;
  return n;
}

void KvBlockAllocator::check_seq(int32_t seq) const {
  FATHOM_CHECK(seq >= 0 && seq < max_seqs_ && active_[seq], "KV cache: sequence ", seq,
               " is not active (slots 0..", max_seqs_ - 1, ")");
}

int32_t KvBlockAllocator::blocks_for(int64_t n_tokens) const {
  return static_cast<int32_t>((n_tokens + block_size_ - 1) / block_size_);
}

int32_t KvBlockAllocator::add_sequence() {
  for (int32_t s = 0; s < max_seqs_; ++s) {
    if (!active_[s]) {
      active_[s] = true;
      seqs_[s].clear();
      ++version_;
      return s;
    }
  }
  fail("KV cache: all ", max_seqs_, " sequence slots are in use; finish a sequence first or "
       "load the engine with a larger batch");
}

bool KvBlockAllocator::is_active(int32_t seq) const {
  return seq >= 0 && seq < max_seqs_ && active_[seq];
}

void KvBlockAllocator::remove_sequence(int32_t seq) {
  check_seq(seq);
  truncate(seq, 0);
  active_[seq] = false;
  ++version_;
}

bool KvBlockAllocator::can_reserve(int32_t seq, int64_t n_tokens) const {
  if (!is_active(seq) || n_tokens < 0) return false;
  if (n_tokens > max_tokens_per_seq()) return false;
  const int64_t need = int64_t(blocks_for(n_tokens)) - int64_t(seqs_[seq].size());
  return need <= int64_t(free_.size());
}

void KvBlockAllocator::reserve(int32_t seq, int64_t n_tokens) {
  check_seq(seq);
  FATHOM_CHECK(n_tokens >= 0, "KV cache: negative token count ", n_tokens);
  FATHOM_CHECK(n_tokens <= max_tokens_per_seq(), "KV cache: ", n_tokens,
               " tokens exceed the context of ", max_tokens_per_seq(), " tokens per sequence");
  const int32_t want = blocks_for(n_tokens);
  std::vector<int32_t>& mine = seqs_[seq];
  const int64_t need = int64_t(want) - int64_t(mine.size());
  if (need <= 0) return;
  FATHOM_CHECK(need <= int64_t(free_.size()), "KV cache: ", n_tokens, " tokens need ", need,
               " more blocks of ", block_size_, " tokens but only ", free_.size(), " of ",
               n_blocks_, " are free");
  for (int64_t i = 0; i < need; ++i) {
    const int32_t b = free_.back();
    free_.pop_back();
    table_[size_t(seq) * max_blocks_per_seq_ + mine.size()] = b;
    mine.push_back(b);
  }
  ++version_;
}

void KvBlockAllocator::truncate(int32_t seq, int64_t n_tokens) {
  check_seq(seq);
  FATHOM_CHECK(n_tokens >= 0, "KV cache: negative token count ", n_tokens);
  const size_t keep = static_cast<size_t>(blocks_for(n_tokens));
  std::vector<int32_t>& mine = seqs_[seq];
  if (mine.size() <= keep) return;
  // Returned in reverse so the next reserve() of this sequence gets the same blocks back.
  while (mine.size() > keep) {
    free_.push_back(mine.back());
    table_[size_t(seq) * max_blocks_per_seq_ + mine.size() - 1] = 0;
    mine.pop_back();
  }
  ++version_;
}

int64_t KvBlockAllocator::capacity(int32_t seq) const {
  check_seq(seq);
  return int64_t(seqs_[seq].size()) * block_size_;
}

const std::vector<int32_t>& KvBlockAllocator::blocks(int32_t seq) const {
  check_seq(seq);
  return seqs_[seq];
}

int64_t KvBlockAllocator::slot(int32_t seq, int64_t pos) const {
  check_seq(seq);
  FATHOM_CHECK(pos >= 0 && pos < capacity(seq), "KV cache: position ", pos,
               " is outside the ", capacity(seq), " reserved slots of sequence ", seq);
  return int64_t(seqs_[seq][size_t(pos / block_size_)]) * block_size_ + pos % block_size_;
}

}  // namespace fathom
