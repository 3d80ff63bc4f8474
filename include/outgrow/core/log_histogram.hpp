// outgrow/core/log_histogram.hpp — a fixed-size, lock-free latency histogram.
//
// Records nanosecond values (latencies, ages, sizes) into log-spaced buckets and
// answers percentiles. Use it where many threads record and an occasional reader wants
// p50/p99/max: a worker's processing latency (work_queue keeps one per worker), a
// client's call latency, a benchmark's distribution.
//
//   outgrow::log_histogram h;                        // 344 buckets, 2.8 KB
//   h.record(elapsed_ns);                            // any thread, never allocates
//   auto counts = std::make_unique<outgrow::log_histogram::counts>();
//   counts->add(h);                                  // sum any number of them
//   std::uint64_t p99 = counts->percentile(0.99);    // >= true p99, <= 12.5 % above
//
// Buckets: values below 16 exactly, above that 8 buckets per power of two (each at most
// 12.5 % wide), up to 2^45 ns (about 9.8 h); larger values count in the last bucket, and
// the exact maximum is kept beside the buckets. A percentile is the smallest bucket
// bound at or above the true quantile, capped at the maximum seen: never below it, at
// most 12.5 % above it.
//
// Trade-offs: HdrHistogram gives configurable precision and a wider range; this one is
// fixed (3 sub-bucket bits, 344 counters) so that it needs no allocation and no
// configuration, and its relative error (12.5 %) is plenty for p99 alerting and
// autoscaling. A histogram only grows: there is no reset (use a fresh one per interval,
// or subtract two `counts` taken at the interval's ends).
//
// Thread-safety: record() from any number of threads at once, concurrently with
// counts::add() (relaxed atomics: a snapshot is each counter's value at some moment, not
// one atomic cut). `counts` is a plain value: one thread at a time.
// Complexity and cost: record() is O(1) — one relaxed fetch_add, plus a compare-exchange
// when a new maximum is seen; counts::add() and percentile() are O(344). Not benchmarked
// alone: its cost is inside BM_work_queue_noop_jobs (benchmarks/queue_bench.cpp), which
// records one value per job.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace outgrow {

/// Log-bucketed histogram of nanosecond values (see the header comment).
class log_histogram {
 public:
  static constexpr unsigned sub_bucket_bits = 3;
  static constexpr std::uint64_t sub_buckets = std::uint64_t{1} << sub_bucket_bits;
  static constexpr std::uint64_t linear_limit = 2 * sub_buckets;  // exact below 16
  static constexpr unsigned max_exponent = 44;
  static constexpr std::size_t bucket_count = static_cast<std::size_t>(
      linear_limit + (max_exponent - sub_bucket_bits) * sub_buckets);

  void record(std::uint64_t value) noexcept {
    buckets_[bucket_of(value)].fetch_add(1, std::memory_order_relaxed);
    std::uint64_t seen = max_.load(std::memory_order_relaxed);
    while (value > seen &&
           !max_.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
    }
  }

  [[nodiscard]] static constexpr std::size_t bucket_of(std::uint64_t value) noexcept {
    if (value < linear_limit) return static_cast<std::size_t>(value);
    const auto exponent = static_cast<unsigned>(std::bit_width(value) - 1);  // >= 4
    if (exponent > max_exponent) return bucket_count - 1;
    const std::uint64_t sub = (value >> (exponent - sub_bucket_bits)) & (sub_buckets - 1);
    return static_cast<std::size_t>(linear_limit +
                                    (exponent - sub_bucket_bits - 1) * sub_buckets + sub);
  }
  /// Smallest value counted in bucket `index`.
  [[nodiscard]] static constexpr std::uint64_t lowest_of(std::size_t index) noexcept {
    if (index < linear_limit) return index;
    const std::uint64_t group = (index - linear_limit) / sub_buckets;
    const std::uint64_t sub = (index - linear_limit) % sub_buckets;
    const auto exponent = static_cast<unsigned>(group + sub_bucket_bits + 1);
    return (sub_buckets + sub) << (exponent - sub_bucket_bits);
  }
  /// Largest value counted in bucket `index` (the last bucket: unbounded).
  [[nodiscard]] static constexpr std::uint64_t highest_of(std::size_t index) noexcept {
    if (index + 1 >= bucket_count) return std::numeric_limits<std::uint64_t>::max();
    return lowest_of(index + 1) - 1;
  }

  /// Plain counts, summed over any number of histograms; percentiles come from here.
  struct counts {
    std::array<std::uint64_t, bucket_count> buckets{};
    std::uint64_t total = 0;
    std::uint64_t max = 0;

    void add(const log_histogram& h) noexcept {
      for (std::size_t i = 0; i < bucket_count; ++i) {
        const std::uint64_t n = h.buckets_[i].load(std::memory_order_relaxed);
        buckets[i] += n;
        total += n;
      }
      max = std::max(max, h.max_.load(std::memory_order_relaxed));
    }
    /// The smallest bucket bound at or above the q-quantile (q in [0, 1]), capped at the
    /// largest value seen: never below the true quantile, at most 12.5 % above it.
    [[nodiscard]] std::uint64_t percentile(double q) const noexcept {
      if (total == 0) return 0;
      const double wanted = std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(total));
      const std::uint64_t rank =
          std::max<std::uint64_t>(1, static_cast<std::uint64_t>(wanted));
      std::uint64_t seen = 0;
      for (std::size_t i = 0; i < bucket_count; ++i) {
        seen += buckets[i];
        if (seen >= rank) return std::min(highest_of(i), max);
      }
      return max;
    }
  };

 private:
  std::array<std::atomic<std::uint64_t>, bucket_count> buckets_{};
  std::atomic<std::uint64_t> max_{0};
};

}  // namespace outgrow
