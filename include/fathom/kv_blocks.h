// Paged KV-cache bookkeeping on the host: a fixed pool of blocks of `block_size` token slots,
// a LIFO free list, and one block table per sequence slot. No CUDA here: the CUDA engine mirrors
// table() into a device buffer that its attention and KV-write kernels read.
//
// Token position p of sequence s lives in physical block blocks(s)[p / block_size] at offset
// p % block_size, i.e. cache slot blocks(s)[p / block_size] * block_size + p % block_size.
#pragma once

#include <cstdint>
#include <vector>

namespace fathom {

class KvBlockAllocator {
 public:
  // n_blocks physical blocks of block_size tokens; at most max_seqs sequences at once, each at
  // most max_blocks_per_seq blocks long. Throws fathom::Error on non-positive sizes.
  KvBlockAllocator(int32_t n_blocks, int32_t block_size, int32_t max_seqs,
                   int32_t max_blocks_per_seq);

  int32_t block_size() const { return block_size_; }
  int32_t n_blocks() const { return n_blocks_; }
  int32_t n_free_blocks() const { return static_cast<int32_t>(free_.size()); }
  int32_t max_seqs() const { return max_seqs_; }
  int32_t max_blocks_per_seq() const { return max_blocks_per_seq_; }
  // Most tokens one sequence can hold (max_blocks_per_seq * block_size).
  int64_t max_tokens_per_seq() const { return int64_t(max_blocks_per_seq_) * block_size_; }
  int32_t n_active_seqs() const;

  // Claims the lowest free sequence slot and returns it (holding no blocks yet). Throws naming
  // max_seqs when every slot is taken.
  int32_t add_sequence();
  // Returns the sequence's blocks to the free list and frees its slot. Throws on a bad slot.
  void remove_sequence(int32_t seq);
  bool is_active(int32_t seq) const;

  // Makes seq hold blocks for n_tokens positions (its first n_tokens positions). Throws
  // fathom::Error naming the numbers when the sequence limit or the free list would be
  // exceeded; then nothing changes.
  void reserve(int32_t seq, int64_t n_tokens);
  // True when reserve(seq, n_tokens) would succeed.
  bool can_reserve(int32_t seq, int64_t n_tokens) const;
  // Keeps only the blocks needed for the first n_tokens positions; the rest return to the pool.
  void truncate(int32_t seq, int64_t n_tokens);

  // Token capacity of the blocks seq holds now.
  int64_t capacity(int32_t seq) const;
  const std::vector<int32_t>& blocks(int32_t seq) const;
  // Physical cache slot of position pos of seq (pos must be < capacity(seq)).
  int64_t slot(int32_t seq, int64_t pos) const;

  // Flat block table (max_seqs, max_blocks_per_seq), row-major; unused entries are 0 so a kernel
  // that over-reads a row still touches valid memory. version() grows on every change, so a
  // mirror can tell when to re-upload.
  const std::vector<int32_t>& table() const { return table_; }
  uint64_t version() const { return version_; }

 private:
  void check_seq(int32_t seq) const;
  int32_t blocks_for(int64_t n_tokens) const;

  int32_t n_blocks_, block_size_, max_seqs_, max_blocks_per_seq_;
  std::vector<int32_t> free_;                 // LIFO: back() is handed out next
  std::vector<std::vector<int32_t>> seqs_;    // per slot: its blocks in position order
  std::vector<bool> active_;
  std::vector<int32_t> table_;                // (max_seqs, max_blocks_per_seq)
  uint64_t version_ = 0;
};

}  // namespace fathom
