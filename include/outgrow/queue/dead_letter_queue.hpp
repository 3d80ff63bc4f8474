// outgrow/queue/dead_letter_queue.hpp — where jobs go after their last failed attempt.
//
// A job that keeps failing (a "poison message") must neither block the queue nor be
// lost: after its last attempt a work_queue (queue/work_queue.hpp) moves it here, with
// the error that ended it, so a person or a tool can look at it, fix the cause and send
// it back. The semantics follow Amazon SQS (a DLQ after maxReceiveCount receives, then
// "redrive" back to the source queue), RabbitMQ dead-letter exchanges and Sidekiq's
// dead set (bounded, oldest dropped first).
//
//   outgrow::dead_letter_queue<order> dlq({.capacity = 10'000});
//   dlq.on_overflow([&](auto&& e) { archive.write(e); });  // full: handed over, not lost
//   dlq.add({.job = o, .error = "card declined", .error_type = "payment_error",
//            .attempts = 3, .first_failure = t0, .last_failure = t1});
//   dlq.for_each([](const auto& e) { fmt::print("{} {}\n", e.id, e.error); });
//   auto declined =
//       dlq.filter([](const auto& e) { return e.error_type == "payment_error"; });
//   dlq.replay_if([](const auto& e) { return e.attempts >= 3; },
//                 work_queue);                             // attempts reset
//   dlq.purge(id);                                         // or purge_if / purge_all
//   fmt::print("{}\n", dlq.metrics());
//
// Entries: the job, the last error (message and type name), the attempts it got, the
// first and last failure times (from the queue's Clock) and its idempotency key, if any;
// each gets an id, increasing in arrival order, that never changes (not even when a
// replay that was refused puts the entry back).
//
// Replay hands entries, oldest first, to a `replay_target` — a work_queue, or any type
// with `accept_replay(Job&, const std::optional<std::string>& key)` returning a
// replay_outcome (the smallest conforming type is below). An accepted entry leaves the
// DLQ and starts again at attempt 1; a `duplicate` (the target already has or had this
// work: a job with the same idempotency key is pending there or has succeeded) leaves too;
// the first `rejected` one (target full or stopped) stops the replay, and it and every
// entry not yet tried go back, unchanged. The DLQ's lock is not held while the target runs,
// so a target that dead-letters into this same DLQ cannot deadlock; while a replay is under
// way its entries are invisible to inspection.
//
//   struct my_target {   // the smallest replay_target
//     outgrow::replay_outcome accept_replay(order& job,
//                                           const std::optional<std::string>&) {
//       return resubmit(std::move(job)) ? outgrow::replay_outcome::accepted
//                                       : outgrow::replay_outcome::rejected;  // untouched
//     }
//   };
//
// Bounded: at most `capacity` entries (default 10,000, the size of Sidekiq's dead set).
// When a new entry arrives at a full DLQ, one entry cannot be kept — the oldest
// (drop_oldest, the default, as Sidekiq) or the new one (reject_newest) — and it is
// handed to the overflow hook (for example to write it to disk). Every such entry is
// counted in metrics().overflowed, so nothing leaves silently even without a hook (it is
// then discarded, counted). The hook runs on the thread that called add(), outside the
// DLQ's lock (it may call back into the DLQ); if it throws, the exception is swallowed,
// that entry is gone, and metrics().hook_failures counts it.
//
// Thread-safety: every member function from any thread (one mutex). for_each / filter
// call the visitor under that mutex: the visitor must not call into the same DLQ.
// Complexity: add, replay and purge of one entry O(log n); for_each / filter / snapshot /
// purge_if O(n); entries are nodes of a std::map (one allocation per entry — the DLQ is
// the failure path, not the hot path).
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>

namespace outgrow {

/// Which entry leaves a full dead-letter queue when a new one arrives.
enum class dead_letter_overflow : std::uint8_t {
  drop_oldest = 0,    ///< keep the new entry, hand the oldest to the hook (Sidekiq)
  reject_newest = 1,  ///< keep what is there, hand the new entry to the hook
};

[[nodiscard]] constexpr std::string_view to_string(dead_letter_overflow o) noexcept {
  switch (o) {
    case dead_letter_overflow::drop_oldest:
      return "drop_oldest";
    case dead_letter_overflow::reject_newest:
      return "reject_newest";
  }
  return "unknown";  // a value cast from an integer; the constructor rejects it
}

struct dead_letter_queue_config {
  /// Entries kept: 10,000 (Sidekiq's dead set). [1, 2^32]
  std::size_t capacity = 10'000;
  /// Which entry is handed to the overflow hook when full: the oldest (Sidekiq's
  /// choice: recent failures are the ones being worked on) or the new one. Any other
  /// value (cast from an integer) is a config_error.
  dead_letter_overflow overflow = dead_letter_overflow::drop_oldest;
};

namespace detail {
/// Validates a dead_letter_queue_config on behalf of `primitive` (the one the user
/// configured: "dead_letter_queue", or "work_queue" with field prefix "dead_letter.").
inline void validate_dead_letter_config(const dead_letter_queue_config& c,
                                        std::string_view primitive,
                                        std::string_view prefix) {
  require_in_range(primitive, fmt::format("{}capacity", prefix), c.capacity, std::size_t{1},
                   std::size_t{1} << 32);
  require(to_string(c.overflow) != "unknown", primitive, fmt::format("{}overflow", prefix),
          "one of drop_oldest, reject_newest", static_cast<int>(c.overflow));
}
}  // namespace detail

/// One dead job and why it died.
template <class Job, class TimePoint = std::chrono::steady_clock::time_point>
struct dead_letter_entry {
  /// Assigned by the DLQ (increasing in arrival order); add() ignores the value given.
  std::uint64_t id = 0;
  Job job;
  /// The last error's message: what() of the exception the handler threw, or the
  /// message of the failure it returned.
  std::string error{};
  /// The last error's type: the exception's type name ("std::runtime_error") or the
  /// type given with a returned failure.
  std::string error_type{};
  /// Attempts the job got before it was dead-lettered.
  std::uint32_t attempts = 0;
  TimePoint first_failure{};
  TimePoint last_failure{};
  std::optional<std::string> idempotency_key{};
};

/// What a replay target did with one entry.
enum class replay_outcome : std::uint8_t {
  accepted = 0,   ///< taken (the job was moved from); the entry leaves the DLQ
  duplicate = 1,  ///< same key pending or succeeded there; the entry leaves the DLQ
  rejected = 2,   ///< not taken (full, stopped); job untouched; the replay stops here
};

[[nodiscard]] constexpr std::string_view to_string(replay_outcome o) noexcept {
  switch (o) {
    case replay_outcome::accepted:
      return "accepted";
    case replay_outcome::duplicate:
      return "duplicate";
    case replay_outcome::rejected:
      return "rejected";
  }
  return "unknown";
}

/// Where replayed jobs go: moves from `job` only when it returns accepted.
template <class T, class Job>
concept replay_target =
    requires(T& target, Job& job, const std::optional<std::string>& key) {
      { target.accept_replay(job, key) } -> std::same_as<replay_outcome>;
    };

/// What one replay call did.
struct replay_result {
  static constexpr std::string_view metrics_name = "replay_result";
  std::size_t replayed = 0;    ///< accepted by the target, removed from the DLQ
  std::size_t duplicates = 0;  ///< already succeeded elsewhere, removed from the DLQ
  std::size_t left = 0;        ///< selected but still in the DLQ (target refused)

  template <class F>
  void for_each_metric(F&& f) const {
    f("replayed", replayed);
    f("duplicates", duplicates);
    f("left", left);
  }
};

struct dead_letter_queue_metrics {
  static constexpr std::string_view metrics_name = "dead_letter_queue_metrics";
  std::size_t size = 0;
  std::size_t capacity = 0;
  std::uint64_t added = 0;       ///< entries ever offered to add()
  std::uint64_t replayed = 0;    ///< entries accepted by a replay target
  std::uint64_t duplicates = 0;  ///< entries a replay found already done
  std::uint64_t purged = 0;
  std::uint64_t overflowed = 0;     ///< entries that could not be kept (to the hook)
  std::uint64_t hook_failures = 0;  ///< overflowed entries whose hook threw (lost)
  /// Time since the oldest entry's last failure (0 when empty), by the DLQ's Clock.
  std::chrono::nanoseconds oldest_age{0};

  template <class F>
  void for_each_metric(F&& f) const {
    f("size", size);
    f("capacity", capacity);
    f("added", added);
    f("replayed", replayed);
    f("duplicates", duplicates);
    f("purged", purged);
    f("overflowed", overflowed);
    f("hook_failures", hook_failures);
    f("oldest_age", oldest_age);
  }
};

template <class Job, clock_source Clock = steady_clock_source>
requires std::is_move_constructible_v<Job>
class dead_letter_queue {
 public:
  using job_type = Job;
  using clock_type = Clock;
  using time_point = typename Clock::time_point;
  using entry = dead_letter_entry<Job, time_point>;
  using overflow_hook = std::function<void(entry&&)>;

  /// Throws: config_error if capacity is not in [1, 2^32] or overflow is not one of the
  /// enumerators.
  explicit dead_letter_queue(dead_letter_queue_config config = {}, Clock clock = {})
      : config_(validated(config)), clock_(std::move(clock)) {}
  dead_letter_queue(const dead_letter_queue&) = delete;
  dead_letter_queue& operator=(const dead_letter_queue&) = delete;

  /// Sets (or, with an empty function, clears) the hook that receives every entry the
  /// DLQ cannot keep. Thread-safe; takes effect for the next overflow.
  void on_overflow(overflow_hook hook) {
    auto shared = hook ? std::make_shared<const overflow_hook>(std::move(hook)) : nullptr;
    std::lock_guard lock(mutex_);
    hook_ = std::move(shared);
  }

  /// Stores `e` (its id is assigned here) and returns the id, or nullopt when the DLQ was
  /// full with reject_newest and `e` went to the overflow hook instead.
  std::optional<std::uint64_t> add(entry e) {
    std::optional<entry> evicted;
    std::optional<std::uint64_t> id;
    std::shared_ptr<const overflow_hook> hook;
    {
      std::lock_guard lock(mutex_);
      ++added_;
      if (entries_.size() >= config_.capacity &&
          config_.overflow == dead_letter_overflow::reject_newest) {
        e.id = 0;
        evicted.emplace(std::move(e));
      } else {
        e.id = ++last_id_;
        id = e.id;
        const std::uint64_t key = e.id;
        entries_.emplace(key, std::move(e));
        evicted = take_excess_locked();
      }
      if (evicted) {
        ++overflowed_;
        hook = hook_;
      }
    }
    if (evicted) hand_over(hook, std::move(*evicted));
    return id;
  }

  // ---- inspect ----------------------------------------------------------------------
  [[nodiscard]] std::size_t size() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
  }
  [[nodiscard]] bool empty() const { return size() == 0; }
  [[nodiscard]] std::size_t capacity() const noexcept { return config_.capacity; }

  /// Calls f(const entry&) for each entry, oldest first, under the DLQ's lock.
  template <class F>
  requires std::invocable<F&, const entry&>
  void for_each(F&& f) const {
    std::lock_guard lock(mutex_);
    for (const auto& [id, e] : entries_) f(e);
  }

  /// Copies of every entry, oldest first.
  [[nodiscard]] std::vector<entry> snapshot() const
  requires std::is_copy_constructible_v<Job>
  {
    return filter([](const entry&) { return true; });
  }

  /// Copies of the entries for which pred(const entry&) is true, oldest first.
  template <class Pred>
  requires std::predicate<Pred&, const entry&> && std::is_copy_constructible_v<Job>
  [[nodiscard]] std::vector<entry> filter(Pred&& pred) const {
    std::vector<entry> out;
    std::lock_guard lock(mutex_);
    for (const auto& [id, e] : entries_) {
      if (pred(e)) out.push_back(e);
    }
    return out;
  }

  /// A copy of entry `id`, if it is here.
  [[nodiscard]] std::optional<entry> find(std::uint64_t id) const
  requires std::is_copy_constructible_v<Job>
  {
    std::lock_guard lock(mutex_);
    const auto it = entries_.find(id);
    if (it == entries_.end()) return std::nullopt;
    return it->second;
  }

  // ---- replay -----------------------------------------------------------------------
  /// Replays entry `id` (if present) into `target`.
  /// Throws: whatever target.accept_replay throws; the entries not replayed are put
  /// back first.
  template <replay_target<Job> Target>
  replay_result replay(std::uint64_t id, Target& target) {
    std::vector<entry> taken;
    {
      std::lock_guard lock(mutex_);
      const auto it = entries_.find(id);
      if (it != entries_.end()) {
        taken.push_back(std::move(it->second));
        entries_.erase(it);
      }
    }
    return replay_taken(std::move(taken), target);
  }

  /// Replays, oldest first, every entry for which pred(const entry&) is true.
  /// Throws: as replay(id, target) (and whatever pred throws).
  template <class Pred, replay_target<Job> Target>
  requires std::predicate<Pred&, const entry&>
  replay_result replay_if(Pred&& pred, Target& target) {
    std::vector<entry> taken;
    {
      std::lock_guard lock(mutex_);
      for (auto it = entries_.begin(); it != entries_.end();) {
        if (pred(std::as_const(it->second))) {
          taken.push_back(std::move(it->second));
          it = entries_.erase(it);
        } else {
          ++it;
        }
      }
    }
    return replay_taken(std::move(taken), target);
  }

  /// Replays every entry, oldest first.
  /// Throws: as replay(id, target).
  template <replay_target<Job> Target>
  replay_result replay_all(Target& target) {
    return replay_if([](const entry&) { return true; }, target);
  }

  // ---- purge ------------------------------------------------------------------------
  /// Removes entry `id`; false if it is not here.
  bool purge(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    const bool erased = entries_.erase(id) != 0;
    if (erased) ++purged_;
    return erased;
  }

  /// Removes every entry for which pred(const entry&) is true; returns how many.
  template <class Pred>
  requires std::predicate<Pred&, const entry&>
  std::size_t purge_if(Pred&& pred) {
    std::lock_guard lock(mutex_);
    const std::size_t n = std::erase_if(
        entries_, [&](const auto& kv) { return static_cast<bool>(pred(kv.second)); });
    purged_ += n;
    return n;
  }

  /// Removes every entry; returns how many.
  std::size_t purge_all() {
    std::lock_guard lock(mutex_);
    const std::size_t n = entries_.size();
    entries_.clear();
    purged_ += n;
    return n;
  }

  [[nodiscard]] dead_letter_queue_metrics metrics() const {
    std::lock_guard lock(mutex_);
    dead_letter_queue_metrics m;
    m.size = entries_.size();
    m.capacity = config_.capacity;
    m.added = added_;
    m.replayed = replayed_;
    m.duplicates = duplicates_;
    m.purged = purged_;
    m.overflowed = overflowed_;
    m.hook_failures = hook_failures_;
    if (!entries_.empty()) {
      const auto age = clock_.now() - entries_.begin()->second.last_failure;
      m.oldest_age = std::max(std::chrono::nanoseconds{0},
                              std::chrono::duration_cast<std::chrono::nanoseconds>(age));
    }
    return m;
  }

 private:
  static dead_letter_queue_config validated(dead_letter_queue_config c) {
    detail::validate_dead_letter_config(c, "dead_letter_queue", "");
    return c;
  }

  /// With drop_oldest, removes the oldest entry if over capacity.
  std::optional<entry> take_excess_locked() {
    if (entries_.size() <= config_.capacity) return std::nullopt;
    auto oldest = entries_.begin();
    std::optional<entry> out(std::move(oldest->second));
    entries_.erase(oldest);
    return out;
  }

  void hand_over(const std::shared_ptr<const overflow_hook>& hook, entry&& e) noexcept {
    if (!hook) return;  // counted in overflowed; nobody asked for it
    try {
      (*hook)(std::move(e));
    } catch (...) {
      std::lock_guard lock(mutex_);
      ++hook_failures_;
    }
  }

  template <class Target>
  replay_result replay_taken(std::vector<entry> taken, Target& target) {
    replay_result result;
    std::size_t i = 0;
    try {
      for (; i < taken.size(); ++i) {
        const replay_outcome outcome =
            target.accept_replay(taken[i].job, std::as_const(taken[i].idempotency_key));
        if (outcome == replay_outcome::rejected) break;
        if (outcome == replay_outcome::accepted) {
          ++result.replayed;
        } else {
          ++result.duplicates;
        }
      }
    } catch (...) {
      put_back(taken, i, result);
      throw;
    }
    put_back(taken, i, result);
    return result;
  }

  /// Returns taken[from..] to the DLQ under their ids and books the replay.
  void put_back(std::vector<entry>& taken, std::size_t from, replay_result& result) {
    std::vector<entry> evicted;
    std::shared_ptr<const overflow_hook> hook;
    {
      std::lock_guard lock(mutex_);
      replayed_ += result.replayed;
      duplicates_ += result.duplicates;
      for (std::size_t j = from; j < taken.size(); ++j) {
        const std::uint64_t id = taken[j].id;
        entries_.emplace(id, std::move(taken[j]));
        ++result.left;
      }
      // Entries added meanwhile may have filled the DLQ: the usual overflow rule applies
      // (with reject_newest the newest ids are the ones handed over).
      while (entries_.size() > config_.capacity) {
        auto victim = config_.overflow == dead_letter_overflow::drop_oldest
                          ? entries_.begin()
                          : std::prev(entries_.end());
        evicted.push_back(std::move(victim->second));
        entries_.erase(victim);
        ++overflowed_;
      }
      if (!evicted.empty()) hook = hook_;
    }
    for (entry& e : evicted) hand_over(hook, std::move(e));
  }

  const dead_letter_queue_config config_;
  Clock clock_;
  mutable std::mutex mutex_;
  std::map<std::uint64_t, entry> entries_;
  std::shared_ptr<const overflow_hook> hook_;
  std::uint64_t last_id_ = 0;
  std::uint64_t added_ = 0;
  std::uint64_t replayed_ = 0;
  std::uint64_t duplicates_ = 0;
  std::uint64_t purged_ = 0;
  std::uint64_t overflowed_ = 0;
  std::uint64_t hook_failures_ = 0;
};

}  // namespace outgrow
