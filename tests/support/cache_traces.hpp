// tests/support/cache_traces.hpp — deterministic request traces and a hit-ratio driver
// for cache tests and benchmarks.
//
//   auto trace = outgrow_test::zipf_trace({.keys = 100'000, .alpha = 0.8,
//                                          .requests = 1'000'000});
//   double lru = outgrow_test::simulate<outgrow::lru>(1'000, trace);
//   double best = outgrow_test::top_k_oracle(trace, 1'000);
//   if (auto cp = outgrow_test::load_trace(outgrow_test::cloudphysics_trace_path())) ...
//
// Traces are vectors of std::uint64_t keys.
//   - zipf_trace: key k in [0, keys) with probability proportional to 1 / (k + 1)^alpha
//     (key 0 is the most popular). Sampling inverts a precomputed cumulative
//     distribution (guide table + short search) at 53-bit uniforms from the raw output of
//     std::mt19937_64 (which the standard fixes bit for bit) — no std::*_distribution,
//     whose output differs between standard libraries. The weights use std::pow, which
//     is correctly rounded on glibc; a libm that differs by an ulp could change a draw
//     only when a uniform lands within an ulp of a bucket boundary (~1e-13 per draw).
//   - loop_trace: 0, 1, ..., keys - 1, 0, 1, ... (a scan repeated; LRU gets 0 % on it
//     whenever keys > capacity).
//   - load_trace: one decimal id per line (the CloudPhysics trace format); std::nullopt
//     if the file cannot be opened.
// Figures:
//   - simulate<Policy>(capacity, trace): the hit ratio of outgrow::cache<uint64_t,
//     uint32_t, Policy> with that capacity (entries) that gets every key and puts it on
//     a miss (the cache-aside pattern). simulate(cache, trace) drives any tier.
//   - top_k_oracle(trace, k): the static top-k oracle — the fraction of all requests
//     that go to the k most requested keys of the whole trace (ties broken by the
//     smaller key). It is the hit ratio of a cache that holds exactly those keys from
//     the start, with no compulsory misses; on traces with a stable popularity (Zipf)
//     it is the practical limit of any policy; it is not an upper bound on traces with
//     locality (a loop, real traces), where Belady's MIN does better.
//
// Thread-safety: free functions; none share state.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <outgrow/cache/cache.hpp>

namespace outgrow_test {

using trace = std::vector<std::uint64_t>;

/// A Zipf(alpha) sampler over [0, keys) with a fixed seed (see the header comment).
/// Inversion of the cumulative distribution, started from a guide table (one entry
/// per key: the first candidate for uniforms in that 1/keys slice), so a draw costs
/// O(1) expected steps; the result is exactly the binary-search inverse.
class zipf_generator {
 public:
  zipf_generator(std::size_t keys, double alpha, std::uint64_t seed)
      : cdf_(keys), guide_(keys), rng_(seed) {
    double sum = 0.0;
    for (std::size_t i = 0; i < keys; ++i) {
      sum += 1.0 / std::pow(static_cast<double>(i + 1), alpha);
      cdf_[i] = sum;
    }
    std::size_t k = 0;
    for (std::size_t j = 0; j < keys; ++j) {
      const double threshold = sum * (static_cast<double>(j) / static_cast<double>(keys));
      while (k + 1 < keys && cdf_[k] <= threshold) ++k;
      guide_[j] = k;
    }
  }

  /// The next key: the smallest k with cdf[k] > u x total, u uniform in [0, 1).
  std::uint64_t operator()() {
    const double u = static_cast<double>(rng_() >> 11U) * 0x1.0p-53;  // [0, 1)
    const double x = u * cdf_.back();
    const std::size_t last = cdf_.size() - 1;
    std::size_t k = guide_[std::min(
        last, static_cast<std::size_t>(u * static_cast<double>(cdf_.size())))];
    while (k > 0 && cdf_[k - 1] > x) --k;  // guards against rounding in the slice
    while (k < last && cdf_[k] <= x) ++k;
    return k;
  }

 private:
  std::vector<double> cdf_;
  std::vector<std::size_t> guide_;
  std::mt19937_64 rng_;
};

struct zipf_options {
  std::size_t keys = 100'000;
  double alpha = 0.8;
  std::size_t requests = 1'000'000;
  std::uint64_t seed = 42;
};

inline trace zipf_trace(const zipf_options& o) {
  zipf_generator next(o.keys, o.alpha, o.seed);
  trace out(o.requests);
  for (auto& k : out) k = next();
  return out;
}

inline trace loop_trace(std::size_t keys, std::size_t requests) {
  trace out(requests);
  for (std::size_t i = 0; i < requests; ++i) out[i] = i % keys;
  return out;
}

/// A working set that moves: `working_set` keys with Zipf(alpha) popularity; every
/// `shift_every` requests a fraction `shift_fraction` of them is replaced by keys never
/// seen before (at random ranks, so popular keys go stale too). Recency-biased: what was
/// used lately predicts the next requests better than long-run counts.
struct shifting_options {
  std::size_t working_set = 5'000;
  double alpha = 0.8;
  std::size_t shift_every = 50'000;
  double shift_fraction = 0.5;
  std::size_t requests = 1'000'000;
  std::uint64_t seed = 7;
};

inline trace shifting_trace(const shifting_options& o) {
  zipf_generator rank(o.working_set, o.alpha, o.seed);
  std::mt19937_64 rng(o.seed ^ 0x5a1f7ULL);
  std::vector<std::uint64_t> key_of_rank(o.working_set);
  std::uint64_t next_key = 0;
  for (auto& k : key_of_rank) k = next_key++;
  trace out(o.requests);
  for (std::size_t i = 0; i < o.requests; ++i) {
    if (i != 0 && i % o.shift_every == 0) {
      const auto replaced =
          static_cast<std::size_t>(static_cast<double>(o.working_set) * o.shift_fraction);
      for (std::size_t j = 0; j < replaced; ++j) {
        key_of_rank[static_cast<std::size_t>(rng() % o.working_set)] = next_key++;
      }
    }
    out[i] = key_of_rank[static_cast<std::size_t>(rank())];
  }
  return out;
}

/// The LRU stack model (Mattson et al. 1970; the classic model of temporal locality):
/// with probability `p_new` a key never seen before, else the key at depth d of the
/// recency stack (d = 1: the most recently used), with d log-uniform in [1, max_depth]
/// — many short reuse distances, a long tail. LRU is the natural policy here; a
/// frequency filter learns little.
struct stack_options {
  double p_new = 0.3;
  std::size_t max_depth = 20'000;
  std::size_t requests = 1'000'000;
  std::uint64_t seed = 11;
};

inline trace stack_trace(const stack_options& o) {
  // A Fenwick tree over request times marks each key's last access; the key at depth
  // d is the one whose mark is the d-th from the newest.
  const std::size_t n = o.requests;
  std::vector<int> tree(n + 1, 0);
  std::vector<std::uint64_t> key_at(n, 0);
  const auto add = [&](std::size_t pos, int delta) {
    for (std::size_t i = pos + 1; i <= n; i += i & (~i + 1)) tree[i] += delta;
  };
  const auto kth = [&](std::size_t k) {  // position of the k-th mark (1-based k)
    std::size_t pos = 0;
    std::size_t step = std::bit_floor(n);
    for (; step != 0; step >>= 1U) {
      if (pos + step <= n && static_cast<std::size_t>(tree[pos + step]) < k) {
        pos += step;
        k -= static_cast<std::size_t>(tree[pos]);
      }
    }
    return pos;  // 0-based position
  };
  std::mt19937_64 rng(o.seed);
  const auto uniform = [&] { return static_cast<double>(rng() >> 11U) * 0x1.0p-53; };
  std::size_t live = 0;
  std::uint64_t next_key = 0;
  trace out(n);
  for (std::size_t t = 0; t < n; ++t) {
    std::uint64_t key;
    if (live == 0 || uniform() < o.p_new) {
      key = next_key++;
      ++live;
    } else {
      const double span = std::log(static_cast<double>(std::min(o.max_depth, live)));
      auto d = static_cast<std::size_t>(std::exp(uniform() * span));
      d = std::clamp<std::size_t>(d, 1, std::min(o.max_depth, live));
      const std::size_t pos = kth(live - d + 1);
      key = key_at[pos];
      add(pos, -1);
    }
    key_at[t] = key;
    add(t, 1);
    out[t] = key;
  }
  return out;
}

/// Alternating phases: `phase` requests of Zipf(alpha) over a fixed key space (a
/// frequency phase), then `phase` requests of the LRU stack model over fresh keys (a
/// recency phase), and so on — a policy must adapt both ways.
inline trace phased_trace(std::size_t phases, std::size_t phase, double alpha,
                          std::uint64_t seed) {
  zipf_generator zipf(100'000, alpha, seed);
  const trace recency = stack_trace(
      {.p_new = 0.2, .max_depth = 10'000, .requests = phases * phase, .seed = seed + 1});
  constexpr std::uint64_t recency_base = std::uint64_t{1} << 40U;
  trace out;
  out.reserve(phases * phase);
  for (std::size_t p = 0; p < phases; ++p) {
    for (std::size_t i = 0; i < phase; ++i) {
      out.push_back(p % 2 == 0 ? zipf() : recency_base + recency[p * phase + i]);
    }
  }
  return out;
}

/// One decimal id per line; blank lines are skipped.
inline std::optional<trace> load_trace(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  trace out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line == "\r") continue;
    out.push_back(std::strtoull(line.c_str(), nullptr, 10));
  }
  return out;
}

/// Where the CloudPhysics trace lives: $OUTGROW_TRACE_DIR if set, else tests/traces in
/// the source tree (not committed: copy libCacheSim's data/cloudPhysicsIO.txt there as
/// cloudphysics_io.txt). Without it the tests that need it are reported as skipped.
inline std::string cloudphysics_trace_path() {
  std::string dir;
  if (const char* env = std::getenv("OUTGROW_TRACE_DIR"); env != nullptr && *env != 0) {
    dir = env;
  } else {
#ifdef OUTGROW_SOURCE_DIR
    dir = std::string(OUTGROW_SOURCE_DIR) + "/tests/traces";
#else
    dir = "tests/traces";
#endif
  }
  return dir + "/cloudphysics_io.txt";
}

inline std::size_t distinct_keys(const trace& t) {
  return std::unordered_set<std::uint64_t>(t.begin(), t.end()).size();
}

/// Hit ratio of any cache tier over `t`: get every key, put it (value 1) on a miss.
template <class Cache>
double simulate(Cache& cache, const trace& t) {
  std::size_t hits = 0;
  for (const std::uint64_t key : t) {
    if (cache.get(key)) {
      ++hits;
    } else {
      cache.put(key, typename Cache::mapped_type{1});
    }
  }
  return t.empty() ? 0.0 : static_cast<double>(hits) / static_cast<double>(t.size());
}

template <class Policy>
using simulation_cache = outgrow::cache<std::uint64_t, std::uint32_t, Policy>;

/// Hit ratio of outgrow::cache<uint64_t, uint32_t, Policy> with `capacity` entries.
template <class Policy>
double simulate(std::size_t capacity, const trace& t) {
  simulation_cache<Policy> cache({.capacity = capacity});
  return simulate(cache, t);
}

/// The static top-k oracle: the share of requests that go to the k most frequent keys.
inline double top_k_oracle(const trace& t, std::size_t k) {
  if (t.empty()) return 0.0;
  std::vector<std::pair<std::size_t, std::uint64_t>> by_count;  // (count, key)
  const std::uint64_t max_key = *std::max_element(t.begin(), t.end());
  if (max_key < (std::uint64_t{1} << 24)) {  // dense keys (synthetic traces): an array
    std::vector<std::size_t> counts(static_cast<std::size_t>(max_key) + 1);
    for (const std::uint64_t key : t) ++counts[static_cast<std::size_t>(key)];
    for (std::size_t key = 0; key < counts.size(); ++key) {
      if (counts[key] != 0) by_count.emplace_back(counts[key], key);
    }
  } else {
    std::unordered_map<std::uint64_t, std::size_t> counts;
    for (const std::uint64_t key : t) ++counts[key];
    by_count.reserve(counts.size());
    for (const auto& [key, count] : counts) by_count.emplace_back(count, key);
  }
  k = std::min(k, by_count.size());
  std::partial_sort(by_count.begin(), by_count.begin() + static_cast<std::ptrdiff_t>(k),
                    by_count.end(), [](const auto& a, const auto& b) {
                      return a.first != b.first ? a.first > b.first : a.second < b.second;
                    });
  std::size_t covered = 0;
  for (std::size_t i = 0; i < k; ++i) covered += by_count[i].first;
  return static_cast<double>(covered) / static_cast<double>(t.size());
}

}  // namespace outgrow_test
