// outgrow/core/backoff.hpp — how long to wait before retry n.
//
// Backoff policies are small, immutable value types. Each computes the delay before
// retry `n` (n = 1 for the first retry, i.e. the second attempt) from the previous
// delay it returned and a 64-bit random bit generator. `retry` (resilience/retry.hpp)
// uses them, and so can anything else that waits between attempts (per-job retries in
// a work queue, reconnect loops).
//
//   outgrow::full_jitter_backoff backoff{100ms, 10s};     // base, cap
//   std::mt19937_64 rng{42};                              // seeded: reproducible
//   std::chrono::nanoseconds previous{0};
//   for (std::uint32_t n = 1; n <= 5; ++n) {
//     previous = backoff.delay(n, previous, rng);         // uniform in [0, t(n)]
//     sleep_for(previous);
//   }
//
// With t(n) = min(cap, base · multiplier^(n-1)) — the "exponential ceiling" — the
// policies are the ones from AWS's "Exponential Backoff and Jitter" (Marc Brooker):
//   constant_backoff{delay}                    delay
//   exponential_backoff{base, cap, m = 2}      t(n)                       (no jitter)
//   full_jitter_backoff{base, cap}             rand(0, t(n))              mean t(n)/2
//   equal_jitter_backoff{base, cap}            t(n)/2 + rand(0, t(n)/2)   mean 3·t(n)/4
//   decorrelated_jitter_backoff{base, cap}     min(cap, rand(base, 3·previous))
//                                              (a previous delay below base, as
//                                              before the first retry, counts as base)
// AWS writes the ceiling as base·2^attempt with attempt counted from 0; we count
// retries from 1, hence the n-1: `base` is the first retry's delay (exponential) or
// ceiling (full / equal jitter). rand(a, b) is uniform over the integers [a, b] in
// nanoseconds. Full jitter did the least total work in AWS's comparison and is the
// default of `retry`; decorrelated jitter grows with each client's own history
// instead of n; plain exponential backoff keeps clients that failed together in step.
//
// Determinism: the uniform mapping is ours (one 64-bit draw, multiplied onto the range
// and the high 64 bits kept: relative bias at most range/2^64, under 1e-9 for ranges up
// to 10 s), not std::uniform_int_distribution, whose output differs between standard
// libraries. With std::mt19937_64 (fully specified by the standard) a seed gives the
// same delays on every platform, compiler and release; tests pin golden values.
//
// Validation: constructors throw outgrow::config_error naming the policy, field, range
// and value: base in (0s, inf), cap in [base, inf), multiplier in [1, inf), a constant
// delay in [0s, inf). E.g. "exponential_backoff: cap must be in [base (100ms), inf),
// got 10ms". Defaults (base 100 ms, cap 10 s, constant 100 ms) are outgrow's own
// choice: a first retry soon enough for an interactive request, and a cap that keeps a
// long outage's retries spaced without leaving callers waiting minutes.
//
// A custom policy is any type satisfying `backoff_policy`; the smallest one:
//
//   struct immediate_backoff {   // retry at once
//     std::chrono::nanoseconds delay(std::uint32_t /*n*/,
//                                    std::chrono::nanoseconds /*previous*/,
//                                    std::mt19937_64& /*rng*/) const {
//       return std::chrono::nanoseconds{0};
//     }
//   };
//
// Thread-safety: policies are immutable; delay() is const and may be called from any
// number of threads at once (each with its own generator, or with the generator
// guarded by the caller). Complexity: delay() is O(1) (the exponential ceiling is
// O(log n) multiplications), one random draw for the jitter policies, no allocation.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <random>
#include <string_view>

#include <fmt/format.h>

#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>  // detail::mul_high64

namespace outgrow {

namespace detail {
template <class G>
inline constexpr bool full_64_bit_range =
    G::min() == 0 && G::max() == std::numeric_limits<std::uint64_t>::max();
}  // namespace detail

/// A uniform random bit generator producing full 64-bit words: std::mt19937_64, or any
/// generator with min() == 0 and max() == 2^64 - 1.
template <class G>
concept random_bits_64 =
    std::uniform_random_bit_generator<G> && detail::full_64_bit_range<G>;

/// A backoff policy: `delay(n, previous, rng)` is the wait before retry n (n >= 1),
/// given the delay it returned for retry n-1 (zero before the first retry).
template <class B>
concept backoff_policy = std::copy_constructible<B> &&
                         requires(const B& b, std::uint32_t n,
                                  std::chrono::nanoseconds previous, std::mt19937_64& rng) {
                           {
                             b.delay(n, previous, rng)
                           } -> std::same_as<std::chrono::nanoseconds>;
                         };

namespace detail {

/// Uniform over the integers [lo, hi] nanoseconds (0 <= lo <= hi), from one draw.
template <random_bits_64 G>
[[nodiscard]] std::chrono::nanoseconds uniform_duration(G& rng, std::chrono::nanoseconds lo,
                                                        std::chrono::nanoseconds hi) {
  const auto span = static_cast<std::uint64_t>(hi.count() - lo.count());
  const auto bits = static_cast<std::uint64_t>(rng());
  const std::uint64_t offset = mul_high64(bits, span + 1);  // in [0, span]
  return lo + std::chrono::nanoseconds{static_cast<std::int64_t>(offset)};
}

/// t(n) = min(cap, base · multiplier^(n-1)), by repeated squaring in double precision
/// (IEEE multiplication is exact-rounded, so the result is the same everywhere).
[[nodiscard]] inline std::chrono::nanoseconds exponential_ceiling(
    std::chrono::nanoseconds base, std::chrono::nanoseconds cap, double multiplier,
    std::uint32_t n) noexcept {
  if (n <= 1 || multiplier == 1.0) return base;
  const double limit = static_cast<double>(cap.count()) / static_cast<double>(base.count());
  double factor = 1.0;
  double square = multiplier;
  std::uint32_t exponent = n - 1;
  while (exponent != 0) {
    if ((exponent & 1U) != 0) {
      factor *= square;
      if (factor >= limit) return cap;
    }
    exponent >>= 1U;
    if (exponent != 0) {
      square *= square;
      if (square >= limit) return cap;  // a remaining bit multiplies by at least this
    }
  }
  const double t = static_cast<double>(base.count()) * factor;
  if (t >= static_cast<double>(cap.count())) return cap;
  return std::chrono::nanoseconds{static_cast<std::int64_t>(t)};
}

inline void validate_base_cap(std::string_view policy, std::chrono::nanoseconds base,
                              std::chrono::nanoseconds cap) {
  require(base > std::chrono::nanoseconds{0}, policy, "base", "in (0s, inf)", base);
  require(cap >= base, policy, "cap",
          fmt::format("in [base ({}), inf)", describe_value(base)), cap);
}

/// What every capped policy `Policy` shares (CRTP: errors name Policy::name): base and
/// cap (100 ms and 10 s by default), validated by the constructor, with their getters
/// and equality.
template <class Policy>
class base_cap_backoff {
 public:
  /// base 100 ms, cap 10 s.
  base_cap_backoff() noexcept = default;
  /// Throws: config_error if base <= 0 or cap < base.
  base_cap_backoff(std::chrono::nanoseconds base, std::chrono::nanoseconds cap)
      : base_(base), cap_(cap) {
    validate_base_cap(Policy::name, base, cap);
  }

  [[nodiscard]] std::chrono::nanoseconds base() const noexcept { return base_; }
  [[nodiscard]] std::chrono::nanoseconds cap() const noexcept { return cap_; }
  friend bool operator==(const base_cap_backoff&, const base_cap_backoff&) = default;

 private:
  std::chrono::nanoseconds base_ = std::chrono::milliseconds{100};
  std::chrono::nanoseconds cap_ = std::chrono::seconds{10};
};

/// Full and equal jitter: `fixed + rand(0, span)` with t = min(cap, base · 2^(n-1)) and
/// span = t, fixed = 0 (full) or span = fixed = t/2 (equal, `KeepHalf`).
template <class Policy, bool KeepHalf>
class doubling_jitter_backoff : public base_cap_backoff<Policy> {
 public:
  using base_cap_backoff<Policy>::base_cap_backoff;

  template <random_bits_64 G>
  [[nodiscard]] std::chrono::nanoseconds delay(std::uint32_t n,
                                               std::chrono::nanoseconds /*previous*/,
                                               G& rng) const {
    const std::chrono::nanoseconds span = KeepHalf ? ceiling(n) / 2 : ceiling(n);
    const std::chrono::nanoseconds fixed = KeepHalf ? span : std::chrono::nanoseconds{0};
    return fixed + uniform_duration(rng, std::chrono::nanoseconds{0}, span);
  }
  /// min(cap, base · 2^(n-1)): the largest delay retry n can get.
  [[nodiscard]] std::chrono::nanoseconds ceiling(std::uint32_t n) const noexcept {
    return exponential_ceiling(this->base(), this->cap(), 2.0, n);
  }
};

}  // namespace detail

/// The same delay before every retry.
class constant_backoff {
 public:
  static constexpr std::string_view name = "constant_backoff";

  /// 100 ms.
  constant_backoff() noexcept = default;
  /// Throws: config_error if delay < 0 (zero = retry at once).
  explicit constant_backoff(std::chrono::nanoseconds delay) : interval_(delay) {
    require(delay >= std::chrono::nanoseconds{0}, name, "delay", "in [0s, inf)", delay);
  }

  template <random_bits_64 G>
  [[nodiscard]] std::chrono::nanoseconds delay(std::uint32_t /*n*/,
                                               std::chrono::nanoseconds /*previous*/,
                                               G& /*rng*/) const noexcept {
    return interval_;
  }

  [[nodiscard]] std::chrono::nanoseconds interval() const noexcept { return interval_; }
  friend bool operator==(const constant_backoff&, const constant_backoff&) = default;

 private:
  std::chrono::nanoseconds interval_ = std::chrono::milliseconds{100};
};

/// base · multiplier^(n-1), capped; no jitter (clients that failed together retry
/// together — prefer a jitter policy when many clients share a dependency).
class exponential_backoff : public detail::base_cap_backoff<exponential_backoff> {
 public:
  static constexpr std::string_view name = "exponential_backoff";

  /// base 100 ms, cap 10 s, multiplier 2.
  exponential_backoff() noexcept = default;
  /// Throws: config_error if base <= 0, cap < base, or multiplier is not in [1, inf).
  exponential_backoff(std::chrono::nanoseconds base, std::chrono::nanoseconds cap,
                      double multiplier = 2.0)
      : base_cap_backoff(base, cap), multiplier_(multiplier) {
    require(multiplier >= 1.0 && std::isfinite(multiplier), name, "multiplier",
            "in [1, inf)", multiplier);
  }

  template <random_bits_64 G>
  [[nodiscard]] std::chrono::nanoseconds delay(std::uint32_t n,
                                               std::chrono::nanoseconds /*previous*/,
                                               G& /*rng*/) const noexcept {
    return detail::exponential_ceiling(base(), cap(), multiplier_, n);
  }

  [[nodiscard]] double multiplier() const noexcept { return multiplier_; }
  friend bool operator==(const exponential_backoff&, const exponential_backoff&) = default;

 private:
  double multiplier_ = 2.0;
};

// The three jitter policies: base and cap (defaults 100 ms and 10 s; the constructor
// `(base, cap)` throws config_error if base <= 0 or cap < base), base(), cap(), ==.

/// AWS "full jitter": rand(0, min(cap, base · 2^(n-1))). Mean: half the ceiling.
class full_jitter_backoff
    : public detail::doubling_jitter_backoff<full_jitter_backoff, false> {
 public:
  static constexpr std::string_view name = "full_jitter_backoff";
  using doubling_jitter_backoff::doubling_jitter_backoff;
};

/// AWS "equal jitter": t/2 + rand(0, t/2) with t = min(cap, base · 2^(n-1)): never
/// less than half the ceiling. Mean: three quarters of the ceiling.
class equal_jitter_backoff
    : public detail::doubling_jitter_backoff<equal_jitter_backoff, true> {
 public:
  static constexpr std::string_view name = "equal_jitter_backoff";
  using doubling_jitter_backoff::doubling_jitter_backoff;
};

/// AWS "decorrelated jitter": min(cap, rand(base, 3 · previous)), previous = base for
/// the first retry (and whenever a smaller previous is passed). Ignores n: each delay
/// grows from the last one, so a client's delays wander up towards cap.
class decorrelated_jitter_backoff
    : public detail::base_cap_backoff<decorrelated_jitter_backoff> {
 public:
  static constexpr std::string_view name = "decorrelated_jitter_backoff";
  using base_cap_backoff::base_cap_backoff;

  template <random_bits_64 G>
  [[nodiscard]] std::chrono::nanoseconds delay(std::uint32_t /*n*/,
                                               std::chrono::nanoseconds previous,
                                               G& rng) const {
    const std::chrono::nanoseconds from = std::max(previous, base());
    constexpr auto most = std::numeric_limits<std::chrono::nanoseconds::rep>::max();
    const std::chrono::nanoseconds to =
        from.count() > most / 3 ? std::chrono::nanoseconds{most} : 3 * from;
    return std::min(cap(), detail::uniform_duration(rng, base(), to));
  }
};

static_assert(backoff_policy<constant_backoff>);
static_assert(backoff_policy<exponential_backoff>);
static_assert(backoff_policy<full_jitter_backoff>);
static_assert(backoff_policy<equal_jitter_backoff>);
static_assert(backoff_policy<decorrelated_jitter_backoff>);

}  // namespace outgrow
