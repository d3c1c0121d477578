// Token sampling on a logits vector (CPU). The same math is meant to be reimplemented on the GPU
// later, so every stage is a small, documented function on a candidate list.
//
// Pipeline, in this order (llama.cpp semantics for each stage):
//   1. penalties   over the last `repeat_last_n` accepted tokens, on the raw logits:
//                    count = occurrences of token t in the window
//                    if count > 0: l = l > 0 ? l / repeat_penalty : l * repeat_penalty
//                    l -= count * freq_penalty + (count > 0) * presence_penalty
//   2. greedy      if temp <= 0: return argmax(l) (lowest id wins a tie); stages 3-8 are skipped.
//   3. top-k       keep the k largest logits (k <= 0: keep all), sorted by logit descending,
//                  ties broken by lower token id so the order is total and reproducible.
//   4. temperature l /= temp
//   5. softmax     p_i = exp(l_i - l_max) / sum_j exp(l_j - l_max)
//   6. top-p       keep the shortest prefix whose cumulative p >= top_p (top_p >= 1: keep all)
//   7. min-p       keep p_i >= min_p * p_max (min_p <= 0: keep all)
//   8. sample      u = uniform [0,1) from the sampler's own PRNG; pick the first candidate whose
//                  cumulative p exceeds u * sum(kept p) (the kept mass is not renormalised,
//                  the draw is scaled instead, which is the same distribution).
// At least one candidate always survives every stage.
//
// Cost at a 262k vocabulary: with top_k > 0 the k best are found in one heap pass and only they
// are sorted. With top_k <= 0, Sampler applies min-p right after the softmax (it commutes with
// top-p: both keep a prefix of the sorted list) and sorts only the survivors; with min_p <= 0
// too, the whole vocabulary is sorted.
//
// Determinism: the PRNG is xoshiro256** seeded through splitmix64, and the uniform float is
// built from its top 24 bits, so the same seed and parameters give the same tokens on every
// platform and standard library (no std::*_distribution involved).
#pragma once

#include <cstdint>
#include <vector>

namespace fathom {

struct SamplerParams {
  float temp = 0.8f;            // <= 0: greedy
  int top_k = 40;               // <= 0: disabled
  float top_p = 0.95f;          // >= 1: disabled
  float min_p = 0.05f;          // <= 0: disabled
  float repeat_penalty = 1.0f;  // 1: disabled
  int repeat_last_n = 64;       // penalty window in accepted tokens; 0: disabled, -1: all
  float freq_penalty = 0.0f;    // 0: disabled
  float presence_penalty = 0.0f;
  uint64_t seed = 0;
};

// xoshiro256** (Blackman & Vigna), state initialised from the seed with splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { reseed(seed); }
  void reseed(uint64_t seed);
  uint64_t next_u64();
  // Uniform in [0, 1): the top 24 bits of next_u64() times 2^-24 (exact in a float).
  float next_float();

 private:
  uint64_t s_[4];
};

// One entry of the candidate list the stages 3-8 work on.
struct TokenCandidate {
  int32_t id;
  float logit;
  float p;  // valid after softmax
};

// The individual stages, exposed for tests and for checking a GPU implementation against them.
namespace sampling {

// Stage 1, in place on the full logits (n_vocab,). `history` holds the accepted tokens, oldest
// first; only its last `repeat_last_n` entries (all when -1) count.
void apply_penalties(float* logits, int64_t n_vocab, const std::vector<int32_t>& history,
                     const SamplerParams& params);
// Stage 2: index of the largest logit, lowest index on a tie.
int32_t argmax(const float* logits, int64_t n_vocab);
// Stage 3: builds the candidate list from logits: the k best (all when k <= 0), sorted by
// logit descending then id ascending.
std::vector<TokenCandidate> top_k(const float* logits, int64_t n_vocab, int k);
// Sorts by logit descending, then id ascending (the order top_k() returns).
void sort_candidates(std::vector<TokenCandidate>& cands);
// Stage 4.
void apply_temperature(std::vector<TokenCandidate>& cands, float temp);
// Stage 5: fills p (any order; the sum is accumulated in double in the order held).
void softmax(std::vector<TokenCandidate>& cands);
// Stage 6: truncates the sorted list (never below one candidate).
void top_p(std::vector<TokenCandidate>& cands, float p);
// Stage 7: drops candidates with p < p * max p, keeping the order of the rest (any order; on a
// sorted list that is a prefix, never empty).
void min_p(std::vector<TokenCandidate>& cands, float p);
// Stage 8: u in [0, 1).
int32_t sample_index(const std::vector<TokenCandidate>& cands, float u);

}  // namespace sampling

// The stateful sampler: parameters, PRNG and penalty history.
class Sampler {
 public:
  explicit Sampler(const SamplerParams& params = {});
  const SamplerParams& params() const { return params_; }

  // Runs the pipeline on logits (n_vocab,) and returns the chosen token. Does not modify
  // `logits` and does not record the token: call accept() with what was actually used.
  int32_t sample(const float* logits, int64_t n_vocab);
  // Records a token in the penalty history (prompt tokens too, if they should be penalised).
  void accept(int32_t token);
  // Clears the history and reseeds the PRNG with params().seed.
  void reset();

 private:
  SamplerParams params_;
  Rng rng_;
  std::vector<int32_t> history_;
  std::vector<float> work_;  // (n_vocab,) penalised copy of the logits
};

}  // namespace fathom
