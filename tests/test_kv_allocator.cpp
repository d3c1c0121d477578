// Paged KV-cache block allocator: free list, block tables, limits and error messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>

#include "fathom/error.h"
#include "fathom/kv_blocks.h"

namespace fathom {
namespace {

// Every block is either free or owned by exactly one sequence, and the flat table mirrors the
// per-sequence lists with zeros elsewhere.
void expect_consistent(const KvBlockAllocator& a) {
  std::multiset<int32_t> seen;
  for (int32_t s = 0; s < a.max_seqs(); ++s) {
    const int32_t* row = a.table().data() + size_t(s) * a.max_blocks_per_seq();
    size_t n = 0;
    if (a.is_active(s)) {
      const auto& b = a.blocks(s);
      n = b.size();
      for (size_t i = 0; i < n; ++i) {
        EXPECT_EQ(row[i], b[i]) << "seq " << s << " entry " << i;
        seen.insert(b[i]);
      }
    }
    for (size_t i = n; i < size_t(a.max_blocks_per_seq()); ++i)
      EXPECT_EQ(row[i], 0) << "seq " << s << " unused entry " << i;
  }
  EXPECT_EQ(int32_t(seen.size()) + a.n_free_blocks(), a.n_blocks());
  for (int32_t b : seen) EXPECT_EQ(seen.count(b), 1u) << "block " << b << " owned twice";
}

TEST(KvAllocator, FirstSequenceGetsBlocksInOrder) {
  KvBlockAllocator a(8, 16, 2, 4);
  const int32_t s = a.add_sequence();
  EXPECT_EQ(s, 0);
  EXPECT_EQ(a.capacity(s), 0);
  a.reserve(s, 1);
  EXPECT_EQ(a.capacity(s), 16);
  a.reserve(s, 16);  // still one block
  EXPECT_EQ(a.blocks(s).size(), 1u);
  a.reserve(s, 33);
  EXPECT_EQ(a.blocks(s), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(a.slot(s, 0), 0);
  EXPECT_EQ(a.slot(s, 17), 16 + 1);
  EXPECT_EQ(a.slot(s, 32), 2 * 16);
  EXPECT_EQ(a.n_free_blocks(), 5);
  expect_consistent(a);
}

TEST(KvAllocator, InterleavedSequencesGetDisjointBlocks) {
  KvBlockAllocator a(10, 4, 3, 5);
  const int32_t s0 = a.add_sequence(), s1 = a.add_sequence();
  for (int64_t t = 1; t <= 12; ++t) {
    a.reserve(s0, t);
    a.reserve(s1, t);
  }
  EXPECT_EQ(a.blocks(s0), (std::vector<int32_t>{0, 2, 4}));
  EXPECT_EQ(a.blocks(s1), (std::vector<int32_t>{1, 3, 5}));
  EXPECT_EQ(a.slot(s1, 5), 3 * 4 + 1);
  expect_consistent(a);
}

TEST(KvAllocator, RemoveReturnsBlocksAndSlot) {
  KvBlockAllocator a(4, 16, 2, 4);
  const int32_t s0 = a.add_sequence(), s1 = a.add_sequence();
  a.reserve(s0, 40);
  a.reserve(s1, 10);
  EXPECT_EQ(a.n_free_blocks(), 0);
  a.remove_sequence(s0);
  EXPECT_FALSE(a.is_active(s0));
  EXPECT_EQ(a.n_free_blocks(), 3);
  EXPECT_EQ(a.add_sequence(), s0);  // lowest free slot again
  a.reserve(s0, 48);
  EXPECT_EQ(a.n_free_blocks(), 0);
  expect_consistent(a);
}

TEST(KvAllocator, TruncateKeepsPrefixBlocks) {
  KvBlockAllocator a(8, 16, 1, 8);
  const int32_t s = a.add_sequence();
  a.reserve(s, 100);  // 7 blocks
  const std::vector<int32_t> before = a.blocks(s);
  const uint64_t v = a.version();
  a.truncate(s, 17);  // 2 blocks stay
  EXPECT_GT(a.version(), v);
  EXPECT_EQ(a.blocks(s), std::vector<int32_t>(before.begin(), before.begin() + 2));
  EXPECT_EQ(a.n_free_blocks(), 6);
  a.reserve(s, 100);  // LIFO: the same blocks come back
  EXPECT_EQ(a.blocks(s), before);
  a.truncate(s, 0);
  EXPECT_EQ(a.capacity(s), 0);
  EXPECT_EQ(a.n_free_blocks(), 8);
  expect_consistent(a);
}

TEST(KvAllocator, ReserveWithinCapacityDoesNotChangeVersion) {
  KvBlockAllocator a(4, 16, 1, 4);
  const int32_t s = a.add_sequence();
  a.reserve(s, 5);
  const uint64_t v = a.version();
  a.reserve(s, 16);
  a.reserve(s, 3);
  EXPECT_EQ(a.version(), v);  // the device mirror needs no upload
}

TEST(KvAllocator, TooManySequencesIsAClearError) {
  KvBlockAllocator a(4, 16, 2, 2);
  a.add_sequence();
  a.add_sequence();
  try {
    a.add_sequence();
    FAIL() << "expected fathom::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("all 2 sequence slots"), std::string::npos) << e.what();
  }
}

TEST(KvAllocator, OverContextAndOutOfBlocksLeaveStateUnchanged) {
  KvBlockAllocator a(3, 16, 2, 2);  // 32 tokens per sequence, 48 in the pool
  const int32_t s0 = a.add_sequence(), s1 = a.add_sequence();
  a.reserve(s0, 20);
  try {
    a.reserve(s0, 33);
    FAIL() << "expected fathom::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("33 tokens exceed the context of 32"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(a.capacity(s0), 32);
  a.reserve(s1, 16);
  EXPECT_FALSE(a.can_reserve(s1, 17));
  try {
    a.reserve(s1, 17);
    FAIL() << "expected fathom::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("only 0 of 3 are free"), std::string::npos) << e.what();
  }
  EXPECT_EQ(a.capacity(s1), 16);
  expect_consistent(a);
  a.remove_sequence(s0);
  EXPECT_TRUE(a.can_reserve(s1, 32));
  a.reserve(s1, 32);
  expect_consistent(a);
}

TEST(KvAllocator, BadArgumentsThrow) {
  EXPECT_THROW(KvBlockAllocator(0, 16, 1, 1), Error);
  EXPECT_THROW(KvBlockAllocator(4, 0, 1, 1), Error);
  KvBlockAllocator a(4, 16, 2, 4);
  EXPECT_THROW(a.reserve(0, 1), Error);  // not active
  EXPECT_THROW(a.remove_sequence(5), Error);
  const int32_t s = a.add_sequence();
  EXPECT_THROW(a.reserve(s, -1), Error);
  a.reserve(s, 4);
  EXPECT_THROW(a.slot(s, 16), Error);
  EXPECT_FALSE(a.can_reserve(1, 1));
}

TEST(KvAllocator, RandomOperationsStayConsistent) {
  std::mt19937 rng(1234);
  KvBlockAllocator a(37, 8, 5, 11);
  std::vector<int64_t> len(5, 0);
  for (int step = 0; step < 3000; ++step) {
    const int op = int(rng() % 4);
    const int32_t s = int32_t(rng() % 5);
    if (op == 0 && !a.is_active(s)) {
      if (a.n_active_seqs() < a.max_seqs()) len[a.add_sequence()] = 0;
    } else if (op == 1 && a.is_active(s)) {
      a.remove_sequence(s);
    } else if (op == 2 && a.is_active(s)) {
      const int64_t n = len[s] + int64_t(rng() % 20);
      if (a.can_reserve(s, n)) {
        a.reserve(s, n);
        len[s] = n;
      } else {
        EXPECT_THROW(a.reserve(s, n), Error);
      }
    } else if (op == 3 && a.is_active(s)) {
      len[s] = len[s] > 0 ? int64_t(rng() % len[s]) : 0;
      a.truncate(s, len[s]);
    }
    if (a.is_active(s)) EXPECT_GE(a.capacity(s), len[s]);
    if (step % 97 == 0) expect_consistent(a);
  }
  expect_consistent(a);
}

}  // namespace
}  // namespace fathom
