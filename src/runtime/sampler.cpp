// CPU sampler. The stage order and formulas are documented in include/fathom/sampler.h.
#include "fathom/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "fathom/error.h"

namespace fathom {

// ---- PRNG -------------------------------------------------------------------------------------

static uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void Rng::reseed(uint64_t seed) {
  // splitmix64 never yields four zero words, so the xoshiro state is valid for every seed.
  for (auto& w : s_) w = splitmix64(seed);
}

uint64_t Rng::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

float Rng::next_float() {
  // 24 bits: every value k * 2^-24 is exactly representable, so the result is < 1.
  return static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f);
}

// ---- stages -----------------------------------------------------------------------------------

namespace sampling {

void apply_penalties(float* logits, int64_t n_vocab, const std::vector<int32_t>& history,
                     const SamplerParams& params) {
  const bool any = params.repeat_penalty != 1.0f || params.freq_penalty != 0.0f ||
                   params.presence_penalty != 0.0f;
  if (!any || params.repeat_last_n == 0 || history.empty()) return;
  size_t window = history.size();
  if (params.repeat_last_n > 0) window = std::min(window, static_cast<size_t>(params.repeat_last_n));

  std::unordered_map<int32_t, int> counts;
  for (size_t i = history.size() - window; i < history.size(); ++i) counts[history[i]]++;

  for (const auto& [tok, count] : counts) {
    if (tok < 0 || tok >= n_vocab) continue;  // a token from another vocabulary: ignore it
    float& l = logits[tok];
    l = l > 0.0f ? l / params.repeat_penalty : l * params.repeat_penalty;
    l -= static_cast<float>(count) * params.freq_penalty + params.presence_penalty;
  }
}

int32_t argmax(const float* logits, int64_t n_vocab) {
  FATHOM_CHECK(n_vocab > 0, "sampler: empty logits vector");
  int64_t best = 0;
  for (int64_t i = 1; i < n_vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int32_t>(best);
}

// Total order: larger logit first, lower id on a tie. Keeps sorting reproducible.
static bool better(const TokenCandidate& a, const TokenCandidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

std::vector<TokenCandidate> top_k(const float* logits, int64_t n_vocab, int k) {
  FATHOM_CHECK(n_vocab > 0, "sampler: empty logits vector");
  std::vector<TokenCandidate> cands;
  if (k <= 0 || k >= n_vocab) {
    cands.resize(static_cast<size_t>(n_vocab));
    for (int64_t i = 0; i < n_vocab; ++i) cands[i] = {static_cast<int32_t>(i), logits[i], 0.0f};
  } else {
    // One pass with a heap of the k best so far (front = the worst of them): O(n log k) and no
    // n_vocab-sized buffer, which matters at 262k-token vocabularies.
    cands.reserve(static_cast<size_t>(k));
    for (int64_t i = 0; i < n_vocab; ++i) {
      const TokenCandidate c{static_cast<int32_t>(i), logits[i], 0.0f};
      if (cands.size() < static_cast<size_t>(k)) {
        cands.push_back(c);
        std::push_heap(cands.begin(), cands.end(), better);
      } else if (better(c, cands.front())) {
        std::pop_heap(cands.begin(), cands.end(), better);
        cands.back() = c;
        std::push_heap(cands.begin(), cands.end(), better);
      }
    }
  }
  sort_candidates(cands);
  return cands;
}

void sort_candidates(std::vector<TokenCandidate>& cands) { std::sort(cands.begin(), cands.end(), better); }

void apply_temperature(std::vector<TokenCandidate>& cands, float temp) {
  FATHOM_CHECK(temp > 0.0f, "sampler: temperature must be > 0 here (", temp, "); <= 0 means greedy");
  for (auto& c : cands) c.logit /= temp;
}

void softmax(std::vector<TokenCandidate>& cands) {
  if (cands.empty()) return;
  float max_logit = cands[0].logit;
  for (const auto& c : cands) max_logit = std::max(max_logit, c.logit);
  double sum = 0.0;  // double: 262k terms summed in float lose the small ones
  for (auto& c : cands) {
    c.p = std::exp(c.logit - max_logit);
    sum += c.p;
  }
  for (auto& c : cands) c.p = static_cast<float>(c.p / sum);
}

void top_p(std::vector<TokenCandidate>& cands, float p) {
  if (p >= 1.0f || cands.size() <= 1) return;
  double cum = 0.0;
  for (size_t i = 0; i < cands.size(); ++i) {
    cum += cands[i].p;
    if (cum >= p) {
      cands.resize(i + 1);
      return;
    }
  }
}

void min_p(std::vector<TokenCandidate>& cands, float p) {
  if (p <= 0.0f || cands.size() <= 1) return;
  float p_max = 0.0f;
  for (const auto& c : cands) p_max = std::max(p_max, c.p);
  const float threshold = p * p_max;  // p <= 1, so the best candidate always stays
  cands.erase(std::remove_if(cands.begin(), cands.end(), [&](const TokenCandidate& c) { return c.p < threshold; }),
              cands.end());
}

int32_t sample_index(const std::vector<TokenCandidate>& cands, float u) {
  FATHOM_CHECK(!cands.empty(), "sampler: no candidate left to sample from");
  double total = 0.0;
  for (const auto& c : cands) total += c.p;
  const double target = u * total;
  double cum = 0.0;
  for (const auto& c : cands) {
    cum += c.p;
    if (target < cum) return c.id;
  }
  return cands.back().id;  // u * total rounded up to the full mass
}

}  // namespace sampling

// ---- Sampler ----------------------------------------------------------------------------------

Sampler::Sampler(const SamplerParams& params) : params_(params), rng_(params.seed) {}

int32_t Sampler::sample(const float* logits, int64_t n_vocab) {
  FATHOM_CHECK(n_vocab > 0, "sampler: empty logits vector");
  const float* src = logits;
  const bool penalise = params_.repeat_last_n != 0 && !history_.empty() &&
                        (params_.repeat_penalty != 1.0f || params_.freq_penalty != 0.0f ||
                         params_.presence_penalty != 0.0f);
  if (penalise) {
    work_.assign(logits, logits + n_vocab);
    sampling::apply_penalties(work_.data(), n_vocab, history_, params_);
    src = work_.data();
  }
  if (params_.temp <= 0.0f) return sampling::argmax(src, n_vocab);

  std::vector<TokenCandidate> cands;
  if (params_.top_k > 0 && params_.top_k < n_vocab) {
    cands = sampling::top_k(src, n_vocab, params_.top_k);  // k best, sorted
    sampling::apply_temperature(cands, params_.temp);
    sampling::softmax(cands);
    sampling::top_p(cands, params_.top_p);
    sampling::min_p(cands, params_.min_p);
  } else {
    // The whole vocabulary: normalise and apply min-p before sorting, so that only the survivors
    // are sorted (a full sort of 262k candidates costs more than a GPU decode step). min-p and
    // top-p both keep a prefix of the sorted list, so their order does not change the result.
    cands.resize(static_cast<size_t>(n_vocab));
    for (int64_t i = 0; i < n_vocab; ++i) cands[i] = {static_cast<int32_t>(i), src[i], 0.0f};
    sampling::apply_temperature(cands, params_.temp);
    sampling::softmax(cands);
    sampling::min_p(cands, params_.min_p);
    sampling::sort_candidates(cands);
    sampling::top_p(cands, params_.top_p);
  }
  return sampling::sample_index(cands, rng_.next_float());
}

void Sampler::accept(int32_t token) {
  history_.push_back(token);
  // Only the window is ever read; keep the history from growing with long generations.
  if (params_.repeat_last_n >= 0 && history_.size() > 2 * static_cast<size_t>(params_.repeat_last_n) + 64)
    history_.erase(history_.begin(), history_.end() - params_.repeat_last_n);
}

void Sampler::reset() {
  history_.clear();
  rng_.reseed(params_.seed);
}

}  // namespace fathom
