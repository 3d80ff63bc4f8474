#include <outgrow/core/deadline.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <ratio>

#include "catch.hpp"

using namespace std::chrono_literals;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;
using tp = std::chrono::steady_clock::time_point;
using outgrow::saturating_add;

namespace {
constexpr tp at(nanoseconds d) {
  return tp{std::chrono::duration_cast<tp::duration>(d)};
}
}  // namespace

TEST_CASE("saturating_add adds like operator plus when in range", "[deadline]") {
  CHECK(saturating_add(at(10s), 5s) == at(15s));
  CHECK(saturating_add(at(10s), -5s) == at(5s));
  CHECK(saturating_add(at(-10s), 3ms) == at(-10s + 3ms));
  CHECK(saturating_add(at(0ns), 0ns) == at(0ns));
  CHECK(saturating_add(at(1s), 250ms) == at(1250ms));
  CHECK(saturating_add(at(1s), hours{2}) == at(1s + 2h));
  static_assert(saturating_add(tp{}, 1s) == tp{} + 1s);
}

TEST_CASE("saturating_add clamps huge positive durations to max", "[deadline]") {
  CHECK(saturating_add(at(0ns), nanoseconds::max()) == tp::max());
  CHECK(saturating_add(at(1ns), nanoseconds::max()) == tp::max());
  CHECK(saturating_add(at(100s), nanoseconds::max()) == tp::max());
  CHECK(saturating_add(at(0ns), hours::max()) == tp::max());
  CHECK(saturating_add(at(-100s), hours::max()) == tp::max());
  CHECK(saturating_add(tp::min(), hours::max()) == tp::max());
  CHECK(saturating_add(tp::max(), 1ns) == tp::max());
  CHECK(saturating_add(tp::max() - 1ns, 1ns) == tp::max());
  CHECK(saturating_add(tp::max() - 1ns, 2ns) == tp::max());
  CHECK(saturating_add(tp::max() - 1h, 30min) == tp::max() - 30min);
  CHECK(saturating_add(tp::max(), seconds::max()) == tp::max());
  // min + max: exactly representable, no clamp.
  CHECK(saturating_add(tp::min(), nanoseconds::max()) == at(-1ns));
}

TEST_CASE("saturating_add clamps huge negative durations to min", "[deadline]") {
  CHECK(saturating_add(at(0ns), nanoseconds::min()) == tp::min());
  CHECK(saturating_add(at(-1ns), nanoseconds::min()) == tp::min());
  CHECK(saturating_add(at(0ns), hours::min()) == tp::min());
  CHECK(saturating_add(tp::max(), hours::min()) == tp::min());
  CHECK(saturating_add(tp::min(), -1ns) == tp::min());
  CHECK(saturating_add(tp::min() + 1ns, -2ns) == tp::min());
  CHECK(saturating_add(tp::max(), nanoseconds::min()) == at(-1ns));
  CHECK(saturating_add(at(5ns), nanoseconds::min()) == tp::min() + 5ns);
}

TEST_CASE("saturating_add converts between periods truncating toward zero", "[deadline]") {
  using sec_tp = std::chrono::time_point<std::chrono::steady_clock, seconds>;
  CHECK(saturating_add(sec_tp{10s}, 1999ms) == sec_tp{11s});
  CHECK(saturating_add(sec_tp{10s}, -1999ms) == sec_tp{9s});
  CHECK(saturating_add(sec_tp{10s}, nanoseconds::max()) ==
        sec_tp{10s + std::chrono::duration_cast<seconds>(nanoseconds::max())});
  CHECK(saturating_add(sec_tp::max(), 1s) == sec_tp::max());
  CHECK(saturating_add(sec_tp{0s}, hours::max()) == sec_tp::max());
  // An odd period: thirds of a second onto a nanosecond time point.
  using thirds = std::chrono::duration<std::int64_t, std::ratio<1, 3>>;
  CHECK(saturating_add(at(0ns), thirds{1}) == at(333'333'333ns));
  CHECK(saturating_add(at(0ns), thirds{std::numeric_limits<std::int64_t>::max()}) ==
        tp::max());
  CHECK(saturating_add(at(0ns), thirds{std::numeric_limits<std::int64_t>::min()}) ==
        tp::min());
  // Unsigned and narrow tick counts.
  using unsigned_ms = std::chrono::duration<std::uint64_t, std::milli>;
  CHECK(saturating_add(at(0ns), unsigned_ms{std::numeric_limits<std::uint64_t>::max()}) ==
        tp::max());
  CHECK(saturating_add(at(0ns), unsigned_ms{2}) == at(2ms));
  using narrow_tp = std::chrono::time_point<std::chrono::steady_clock,
                                            std::chrono::duration<std::int32_t>>;
  CHECK(saturating_add(narrow_tp{}, nanoseconds::max()) == narrow_tp::max());
  CHECK(saturating_add(narrow_tp{}, hours::min()) == narrow_tp::min());
  CHECK(saturating_add(narrow_tp{}, 3s).time_since_epoch().count() == 3);
}
