// outgrow/routing/detail/wrr_smooth.hpp — nginx's smooth weighted round robin over
// double weights: exact integer ratios, one tabulated period or a live O(N) step.
//
// nginx (ngx_http_upstream_get_peer) works on integer weights: each pick adds every
// weight to its current weight, takes the largest current weight (the first endpoint on
// ties, in insertion order) and subtracts the total from it. load_balancer's weights are
// doubles, so each membership snapshot first turns them into the smallest integers with
// exactly the same ratios:
//   - a weight is read as the shortest decimal that denotes it (what printing it shows:
//     0.1 is 1/10, 2.5 is 5/2, 1.0 / 3 is 3333333333333333/10^16) or, when it has none
//     with at most 15-16 digits, as its exact binary value m·2^e. Integer weights are
//     used as they are, so they give nginx's sequence; {2.5, 0.5, 0.5} gives the one of
//     {5, 1, 1} and {0.1, 0.3} the one of {1, 3}: long-run shares are exact.
//   - the integers are brought to a common denominator and divided by their gcd. Only if
//     that needs more than 2^62 / N in total (weights spanning ~60 bits, as {1e6, 1e-13})
//     are they rounded, at 2^-(61 - 2·log2 N) of the largest weight.
//   - a slow-start step multiplies a weight by exactly step / steps (or by
//     slow_start_min_weight, read as above), so ramps keep exact ratios too.
// The sequence repeats every sum-of-integers picks. Up to smooth_wrr_table_limit (65,536)
// it is precomputed (smooth_wrr_period: a pick is one table load at the thread's cursor);
// a longer period runs nginx's O(N) step on every pick under a spin lock shared by the
// picks only (smooth_wrr_live, as nginx does under its upstream zone lock). Both produce
// nginx's sequence for the same integer weights, pick for pick.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace outgrow::detail {

/// One period of a smooth WRR sequence longer than this is not tabulated.
inline constexpr std::int64_t smooth_wrr_table_limit = 65536;

/// An exact rational num / den (den > 0).
struct wrr_rational {
  std::uint64_t num = 0;
  std::uint64_t den = 1;
};

[[nodiscard]] inline bool wrr_checked_mul(std::uint64_t a, std::uint64_t b,
                                          std::uint64_t& out) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

[[nodiscard]] inline wrr_rational wrr_reduced(wrr_rational r) noexcept {
  const std::uint64_t g = std::gcd(r.num, r.den);
  return g > 1 ? wrr_rational{r.num / g, r.den / g} : r;
}

/// The shortest decimal m / 10^k that reads back as `w` (what printing `w` shows: 0.1
/// is 1/10, 2.5 is 5/2), for m < 2^53; nullopt when there is none (w = 1.0 / 3.0 is
/// 3333333333333333 / 10^16, 0.1 + 0.2 has no such decimal).
[[nodiscard]] inline std::optional<wrr_rational> wrr_decimal(double w) noexcept {
  constexpr double exact_limit = 9007199254740992.0;  // 2^53
  if (!(w > 0.0) || !std::isfinite(w)) return std::nullopt;
  double scale = 1.0;     // 10^k: exact as a double up to 10^22
  std::uint64_t den = 1;  // 10^k
  for (int k = 0; k <= 19; ++k) {
    const double scaled = w * scale;
    if (scaled >= exact_limit) return std::nullopt;
    const auto m0 = static_cast<std::uint64_t>(std::llround(scaled));
    // w * 10^k is rounded once, so the decimal is m0 or a neighbour. m / 10^k is then
    // one correctly rounded division of two exact doubles: what parsing "m e-k" gives.
    for (const std::uint64_t m : {m0, m0 + 1, m0 - 1}) {
      if (m == 0 || m > m0 + 1 || static_cast<double>(m) >= exact_limit) continue;
      if (static_cast<double>(m) / scale == w) return wrr_reduced({m, den});
    }
    if (k < 19) {  // 10^19 is the last power of ten a uint64 holds
      scale *= 10.0;
      den *= 10;
    }
  }
  return std::nullopt;
}

/// The exact binary value of `w` as a rational (every finite double is m·2^e), or
/// nullopt when it does not fit 64-bit numerator and denominator.
[[nodiscard]] inline std::optional<wrr_rational> wrr_binary(double w) noexcept {
  if (!(w > 0.0) || !std::isfinite(w)) return std::nullopt;
  int exp = 0;
  const double frac = std::frexp(w, &exp);  // w = frac · 2^exp, frac in [0.5, 1)
  auto m = static_cast<std::uint64_t>(std::ldexp(frac, 53));
  exp -= 53;
  while ((m & 1U) == 0) {
    m >>= 1;
    ++exp;
  }
  if (exp >= 0) {
    if (exp >= 64 || m > (std::numeric_limits<std::uint64_t>::max() >> exp)) {
      return std::nullopt;
    }
    return wrr_rational{m << exp, 1};
  }
  if (exp <= -64) return std::nullopt;
  return wrr_rational{m, std::uint64_t{1} << -exp};
}

/// `w` as an exact rational: its shortest decimal, else its binary value.
[[nodiscard]] inline std::optional<wrr_rational> wrr_exact(double w) noexcept {
  if (auto d = wrr_decimal(w)) return d;
  return wrr_binary(w);
}

/// One endpoint's smooth-WRR weight: `weight` × factor_num / factor_den, where the
/// factor is exact (slow start's step / steps) and `weight` a configured weight.
struct wrr_weight {
  double weight = 1.0;
  wrr_rational factor{1, 1};
  double factor_value = 1.0;  // factor as a double (for the approximate fallback)
};

/// The smallest positive integers with exactly the ratios of `weights` (each weight
/// read by wrr_exact, times its exact factor), their sum at most 2^62 / N so that
/// nginx's current weights (always within ±N × sum) cannot overflow. When the ratios
/// need more than that (weights spanning ~60 bits, e.g. {1e6, 1e-13}), each weight is
/// instead rounded to a multiple of 2^-(61 - 2·bit_width(N)) of the largest one (at
/// least 1): 2^-57 of it for 2 endpoints, 2^-41 for 1000.
[[nodiscard]] inline std::vector<std::int64_t> wrr_integer_weights(
    const std::vector<wrr_weight>& weights) {
  const std::size_t n = weights.size();
  std::vector<std::int64_t> out(n, 1);
  if (n == 0) return out;
  const std::uint64_t budget =
      (std::uint64_t{1} << 62) / static_cast<std::uint64_t>(n);  // sum limit
  // Exact: a common denominator of the rationals.
  std::vector<wrr_rational> r(n);
  bool exact = true;
  std::uint64_t lcm = 1;
  for (std::size_t i = 0; i < n && exact; ++i) {
    const auto w = wrr_exact(weights[i].weight);
    const wrr_rational f = wrr_reduced(weights[i].factor);
    std::uint64_t num = 0, den = 0;
    exact = w && f.num != 0 && wrr_checked_mul(w->num, f.num, num) &&
            wrr_checked_mul(w->den, f.den, den);
    if (!exact) break;
    r[i] = wrr_reduced({num, den});
    exact = wrr_checked_mul(lcm / std::gcd(lcm, r[i].den), r[i].den, lcm);
  }
  if (exact) {
    std::uint64_t g = 0;
    std::vector<std::uint64_t> ints(n);
    for (std::size_t i = 0; i < n && exact; ++i) {
      exact = wrr_checked_mul(r[i].num, lcm / r[i].den, ints[i]);
      g = std::gcd(g, ints[i]);
    }
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < n && exact; ++i) {
      ints[i] /= g;
      exact = ints[i] <= budget - total;
      total += exact ? ints[i] : 0;
    }
    if (exact) {
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::int64_t>(ints[i]);
      return out;
    }
  }
  // Approximate: scale by a power of two so the largest weight is 2^bits (exact), round.
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = weights[i].weight * weights[i].factor_value;
  const double max_w = *std::max_element(v.begin(), v.end());
  const int bits = std::max(1, 61 - 2 * static_cast<int>(std::bit_width(n)));
  const int shift = bits - std::ilogb(max_w);
  std::int64_t g = 0;
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = std::max<std::int64_t>(1, std::llround(std::ldexp(v[i], shift)));
    g = std::gcd(g, out[i]);
  }
  for (auto& x : out) x /= g;
  return out;
}

/// nginx's smooth weighted round robin over integer weights, step by step: every pick
/// adds each weight to its current weight, chooses the largest current weight (the
/// first on ties) and subtracts the total from it (ngx_http_upstream_get_peer with
/// effective_weight == weight). Weights {5, 1, 1} give 0 0 1 0 2 0 0, repeating.
class smooth_wrr {
 public:
  smooth_wrr() = default;
  explicit smooth_wrr(std::vector<std::int64_t> weights)
      : weight_(std::move(weights)), current_(weight_.size(), 0) {
    for (const auto w : weight_) total_ += w;
  }
  /// The next index. Precondition: at least one weight.
  std::size_t next() noexcept {
    std::size_t best = 0;
    for (std::size_t i = 0; i < weight_.size(); ++i) {
      current_[i] += weight_[i];
      if (current_[i] > current_[best]) best = i;
    }
    current_[best] -= total_;
    return best;
  }
  [[nodiscard]] const std::vector<std::int64_t>& weights() const noexcept {
    return weight_;
  }
  [[nodiscard]] const std::vector<std::int64_t>& current() const noexcept {
    return current_;
  }
  /// Length of one period: after `total()` picks every current weight is 0 again.
  [[nodiscard]] std::int64_t total() const noexcept { return total_; }

 private:
  std::vector<std::int64_t> weight_;
  std::vector<std::int64_t> current_;
  std::int64_t total_ = 0;
};

/// One period of the sequence, as indices (total() <= smooth_wrr_table_limit).
inline std::vector<std::uint32_t> smooth_wrr_period(std::vector<std::int64_t> weights) {
  smooth_wrr wrr(std::move(weights));
  std::vector<std::uint32_t> seq(static_cast<std::size_t>(wrr.total()));
  for (auto& s : seq) s = static_cast<std::uint32_t>(wrr.next());
  return seq;
}

/// smooth_wrr shared by the picks of one snapshot whose period is too long to tabulate:
/// every pick runs nginx's step under a spin lock (held for the O(N) step only).
class smooth_wrr_live {
 public:
  explicit smooth_wrr_live(std::vector<std::int64_t> weights) : wrr_(std::move(weights)) {}
  std::size_t next() noexcept {
    while (busy_.exchange(true, std::memory_order_acquire)) {
      while (busy_.load(std::memory_order_relaxed)) std::this_thread::yield();
    }
    const std::size_t i = wrr_.next();
    busy_.store(false, std::memory_order_release);
    return i;
  }

 private:
  std::atomic<bool> busy_{false};
  smooth_wrr wrr_;
};

}  // namespace outgrow::detail
