// outgrow/cache/write_policy.hpp — how a tiered_cache reads through and writes to its
// backing store.
//
// The policy is tiered_cache's WritePolicy template parameter; each is a small tag
// type, and the two that need settings carry a validated config:
//
//   policy         get(k) on a miss     put(k, v)                       erase(k)
//   cache_aside    returns nullopt (*)  tiers only (you wrote the DB)   tiers only
//   read_through   loads from store     store, then drop from tiers     store, then tiers
//                                        (write-around)
//   write_through  loads from store     store first, then tiers; a      store, then tiers
//                                        store failure throws and leaves
//                                        the cache unchanged
//   write_behind   loads from store,    tiers + buffer, acknowledged;   buffered like a put
//                  buffer first         the store is written later in
//                                        batches (see below)
//   refresh_ahead  loads from store;    as write_through                as write_through
//                  serves and reloads
//                  early (see below)
//   (*) get_or_load(k) / get_or_load(k, loader) load under every policy.
//
//   using cache_t = outgrow::tiered_cache<outgrow::tiers<l1_t>, orders_db,
//                                         outgrow::write_behind>;
//   cache_t cache(db, std::tie(l1), {.ttl = 5min},
//                 outgrow::write_behind({.max_batch = 200, .max_delay = 250ms}));
//   cache.start(pool.get_executor());   // age-based flushes and retries on a timer
//   cache.put("order:1", order);        // acknowledged once in L1 and the buffer
//   cache.shutdown();                   // drains: nothing acknowledged is lost
//
// write_behind, precisely.
//   - Acknowledge: put/erase return true once the tiers are written and the write is
//     in the buffer. Reads see buffered writes (a read that misses every tier looks
//     in the buffer before the store), so a write is visible even if L1 evicts it.
//   - Coalesce: a key has at most one buffered write; a newer write to a buffered key
//     replaces its value in place (keeping its place in line and its age) and counts
//     as `coalesced`. An erase is a write too (value = nullopt) and coalesces the same.
//   - Batch: writes leave in arrival order, max_batch at a time, when max_batch are
//     buffered (size) or the oldest has waited max_delay (age), or on flush()/shutdown.
//     With store_batch the puts of a batch go in one call (all or nothing);
//     otherwise one store()/erase() per write, and only the failed ones are retried.
//   - Per-key order: a key never has two writes in flight; a newer write to a key
//     whose older write is being stored or retried waits for it. So the store sees
//     every key's writes in acknowledgement order (some skipped by coalescing, none
//     reordered), even with many flushing threads.
//   - Retry: a failed attempt is retried after min(retry_cap, retry_base * 2^(n-1)),
//     up to max_retries times (so 1 + max_retries attempts); then the writes still
//     failing go to the dead-letter hook with the last exception and the attempt
//     count. Without a hook they are kept for tiered_cache::take_dead_letters(). A
//     write is never dropped silently: acknowledged == flushed + coalesced +
//     dead_lettered + handed_back + queue_depth, at every stats() snapshot that is
//     quiescent.
//     A dead-lettered value stays in the tiers until its TTL (it was acknowledged);
//     replaying the dead letters is the hook owner's job.
//   - Bounded: at most max_buffered writes are buffered or in flight (a coalescing
//     write needs no room). When full, `overflow = block` makes the writer wait for a
//     flush (up to block_timeout, then the write is rejected); `reject` returns false
//     at once. A rejected write changes nothing. (A writer that checked a buffered
//     key just before its batch left may add one entry over the bound.)
//   - Drain: flush() returns once every write acknowledged before the call is stored
//     or dead-lettered; shutdown() (and the destructor) stops accepting writes and
//     drains everything, however long the store takes. shutdown(deadline) drains on a
//     helper thread and returns at the deadline even if a store call hangs, with a
//     write_behind_shutdown_report: the writes never stored are handed back (counted
//     handed_back), copies of those whose store call is still running are listed, and
//     that call is left to finish (stored, or dead-lettered without retry); the cache's
//     destructor waits for it. A drain retries at once under a manual clock, and waits out
//     the backoff under a real-time clock (steady_clock_source, coarse_steady_clock).
//   - Time: with start(executor) a steady_timer fires for age and retry deadlines and
//     size-triggered flushes are posted to the executor. Without it, nothing happens
//     in the background: call poll() (or run_due(now)) yourself — what tests do with
//     manual_clock.
//
// refresh_ahead, precisely (Caffeine's refreshAfterWrite, Oracle Coherence's
// refresh-ahead factor).
//   - An entry whose remaining lifetime has fallen to (1 - refresh_fraction) of its
//     TTL (i.e. past refresh_fraction of its life) is still returned, and one reload
//     is started in the background (posted to the executor given to start(); without
//     one, the caller that crossed the point reloads inline). Further reads while it
//     runs return the current value and start nothing: exactly one reload per key.
//   - A reload that succeeds replaces the value with a fresh TTL; one that fails
//     (load_failures and refresh_failures count it) keeps the old value until its hard
//     expiry, and the first read past the refresh point after `retry_after` (1 s)
//     tries again; one that finds the key gone from the store drops it.
//   - Hard expiry is the tiers' TTL and is never extended by a pending reload: after
//     it a read misses and loads synchronously, even if a reload hangs; the hung
//     reload's late result is discarded (refreshes_discarded), as is any reload result
//     for a key written, erased or invalidated since the reload started.
//
// Smallest conforming policy for the `write_policy` concept: the five types below are
// the policies (the cache implements each); e.g. `struct p { static constexpr
// outgrow::write_policy_kind kind = outgrow::write_policy_kind::read_through; };`.
//
// Thread-safety: policies and configs are plain values. The write-behind buffer
// (outgrow::detail) is safe from any thread.
// Complexity: write-behind put O(1) expected; a batch O(max_batch) plus the store
// calls; claiming a batch skips keys already in flight, O(buffered) worst case.
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <list>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <outgrow/core/backoff.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/deadline.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/stats.hpp>

namespace outgrow {

enum class write_policy_kind : std::uint8_t {
  cache_aside,
  read_through,
  write_through,
  write_behind,
  refresh_ahead,
};

/// A tiered_cache write policy (see the table in the header comment).
template <class P>
concept write_policy = std::copy_constructible<P> && requires {
  { P::kind } -> std::convertible_to<write_policy_kind>;
};

/// The application reads and writes the database itself; the cache is populated by
/// put() and get_or_load(). get() never touches the store.
struct cache_aside {
  static constexpr write_policy_kind kind = write_policy_kind::cache_aside;
  static constexpr std::string_view name = "cache_aside";
};

/// get() loads misses from the store; put() writes the store and drops the key from
/// the tiers (write-around), so the next read loads the stored value.
struct read_through {
  static constexpr write_policy_kind kind = write_policy_kind::read_through;
  static constexpr std::string_view name = "read_through";
};

/// get() loads misses; put() writes the store first, then the tiers. If the store
/// throws, the exception propagates and the cache is unchanged.
struct write_through {
  static constexpr write_policy_kind kind = write_policy_kind::write_through;
  static constexpr std::string_view name = "write_through";
};

/// What a full write-behind buffer does with a new write.
enum class write_behind_overflow : std::uint8_t {
  block,   ///< wait for room (up to block_timeout), then reject
  reject,  ///< reject at once: put()/erase() return false, nothing changes
};

/// Write-behind settings. Defaults: batches of 100 or 1 s old, 10,000 buffered writes,
/// block when full (30 s at most), 3 retries backing off 100 ms, 200 ms, 400 ms
/// (capped at 10 s).
struct write_behind_config {
  std::size_t max_batch = 100;                                   ///< [1, max_buffered]
  std::chrono::nanoseconds max_delay = std::chrono::seconds{1};  ///< > 0
  std::size_t max_buffered = 10'000;                             ///< [max_batch, inf)
  write_behind_overflow overflow = write_behind_overflow::block;
  std::chrono::nanoseconds block_timeout = std::chrono::seconds{30};     ///< > 0
  std::size_t max_retries = 3;                                           ///< [0, 1000]
  std::chrono::nanoseconds retry_base = std::chrono::milliseconds{100};  ///< > 0
  std::chrono::nanoseconds retry_cap = std::chrono::seconds{10};  ///< [retry_base, inf)
};

/// Acknowledge writes once cached and buffered; store them later, in batches.
struct write_behind {
  static constexpr write_policy_kind kind = write_policy_kind::write_behind;
  static constexpr std::string_view name = "write_behind";

  write_behind() = default;
  /// Throws config_error for an invalid config (see validate).
  write_behind(write_behind_config c) : config(c) { validate(config); }  // NOLINT

  /// Throws config_error naming the field, its allowed range and the value.
  static void validate(const write_behind_config& c) {
    using namespace std::chrono_literals;
    require_at_least("write_behind", "max_batch", c.max_batch, std::size_t{1});
    require(c.max_delay > 0ns, "write_behind", "max_delay", "in (0s, inf)", c.max_delay);
    require_at_least("write_behind", "max_buffered", c.max_buffered, c.max_batch);
    require(c.overflow == write_behind_overflow::block ||
                c.overflow == write_behind_overflow::reject,
            "write_behind", "overflow", "block or reject", static_cast<int>(c.overflow));
    require(c.block_timeout > 0ns, "write_behind", "block_timeout", "in (0s, inf)",
            c.block_timeout);
    require_in_range("write_behind", "max_retries", c.max_retries, std::size_t{0},
                     std::size_t{1000});
    require(c.retry_base > 0ns, "write_behind", "retry_base", "in (0s, inf)", c.retry_base);
    require_at_least("write_behind", "retry_cap", c.retry_cap, c.retry_base);
  }

  /// The wait before retry number `n` (1-based): min(retry_cap, retry_base * 2^(n-1)).
  [[nodiscard]] static std::chrono::nanoseconds backoff(const write_behind_config& c,
                                                        std::size_t n) noexcept {
    const auto retry = static_cast<std::uint32_t>(
        std::min<std::size_t>(n, std::numeric_limits<std::uint32_t>::max()));
    return detail::exponential_ceiling(c.retry_base, c.retry_cap, 2.0, retry);
  }

  write_behind_config config{};
};

/// Refresh-ahead settings. Default: reload once 80 % of the TTL has passed
/// (Caffeine users typically set refreshAfterWrite to 70-90 % of expireAfterWrite).
struct refresh_ahead_config {
  double refresh_fraction = 0.8;  ///< in (0, 1)
  /// After a failed reload of a key, no new reload of it starts for this long (the old
  /// value is served meanwhile); 0 = the next read past the refresh point retries.
  /// Default 1 s: a failing store sees one reload per key per second, not one per read.
  std::chrono::nanoseconds retry_after = std::chrono::seconds{1};  ///< >= 0
};

/// Serve the current value and reload it in the background once it is
/// refresh_fraction through its TTL; writes behave as write_through.
struct refresh_ahead {
  static constexpr write_policy_kind kind = write_policy_kind::refresh_ahead;
  static constexpr std::string_view name = "refresh_ahead";

  refresh_ahead() = default;
  refresh_ahead(refresh_ahead_config c) : config(c) { validate(config); }  // NOLINT

  static void validate(const refresh_ahead_config& c) {
    require(c.refresh_fraction > 0.0 && c.refresh_fraction < 1.0, "refresh_ahead",
            "refresh_fraction", "in (0, 1)", c.refresh_fraction);
    require_at_least("refresh_ahead", "retry_after", c.retry_after,
                     std::chrono::nanoseconds::zero());
  }

  refresh_ahead_config config{};
};

static_assert(write_policy<cache_aside> && write_policy<read_through> &&
              write_policy<write_through> && write_policy<write_behind> &&
              write_policy<refresh_ahead>);

/// One acknowledged write waiting for (or given up on by) the store.
template <class Key, class Value, class TimePoint = std::chrono::steady_clock::time_point>
struct buffered_write {
  Key key;
  std::optional<Value> value;  ///< nullopt = an erase
  TimePoint acknowledged{};    ///< when the (latest coalesced) write was acknowledged
  std::uint64_t sequence = 0;  ///< global acknowledgement number of that write
};

/// Writes the store kept rejecting, handed to the dead-letter hook.
template <class Key, class Value, class TimePoint = std::chrono::steady_clock::time_point>
struct dead_letter_batch {
  std::vector<buffered_write<Key, Value, TimePoint>> writes;
  std::exception_ptr error;  ///< the last failure
  std::size_t attempts = 0;
};

template <class Key, class Value, class TimePoint = std::chrono::steady_clock::time_point>
using dead_letter_hook = std::function<void(dead_letter_batch<Key, Value, TimePoint>)>;

/// Write-behind counters (part of tiered_cache_stats).
struct write_behind_stats {
  static constexpr std::string_view metrics_name = "write_behind_stats";
  std::uint64_t acknowledged = 0;     ///< writes accepted (put/erase returned true)
  std::uint64_t coalesced = 0;        ///< writes replaced by a newer write to their key
  std::uint64_t flushed = 0;          ///< writes the store accepted
  std::uint64_t batches = 0;          ///< batches fully written
  std::uint64_t retries = 0;          ///< attempts after a batch's first
  std::uint64_t failed_attempts = 0;  ///< attempts in which some write failed
  std::uint64_t dead_lettered = 0;    ///< writes given to the dead-letter hook
  std::uint64_t dead_letter_batches = 0;
  std::uint64_t rejected = 0;     ///< writes refused (buffer full or shut down)
  std::uint64_t blocked = 0;      ///< writes that had to wait for room
  std::uint64_t queue_depth = 0;  ///< buffered + in flight now
  std::uint64_t in_flight = 0;    ///< of which being written or awaiting a retry
  /// Writes handed back unstored by a shutdown(deadline) that ran out of time.
  std::uint64_t handed_back = 0;

  template <class F>
  void for_each_metric(F&& f) const {
    f("acknowledged", acknowledged);
    f("coalesced", coalesced);
    f("flushed", flushed);
    f("batches", batches);
    f("retries", retries);
    f("failed_attempts", failed_attempts);
    f("dead_lettered", dead_lettered);
    f("dead_letter_batches", dead_letter_batches);
    f("rejected", rejected);
    f("blocked", blocked);
    f("queue_depth", queue_depth);
    f("in_flight", in_flight);
    f("handed_back", handed_back);
  }
};

/// What tiered_cache::shutdown(deadline) reports. `drained`: every acknowledged write
/// was stored or dead-lettered by the deadline (then both lists are empty). Otherwise
/// nothing is lost silently: `unstored` holds the writes the cache will never store
/// (not yet attempted, or waiting for a retry) — persist them yourself — and
/// `in_flight` copies of those whose store call was still running at the deadline: the
/// call is left to finish (it cannot be interrupted); a write it stores counts as
/// flushed, one it fails goes to the dead-letter hook (no retry after the deadline).
template <class Key, class Value, class TimePoint = std::chrono::steady_clock::time_point>
struct write_behind_shutdown_report {
  bool drained = true;
  std::vector<buffered_write<Key, Value, TimePoint>> unstored{};
  std::vector<buffered_write<Key, Value, TimePoint>> in_flight{};
};

namespace detail {

/// Clocks whose time passes by itself: a drain may wait out a retry backoff on them.
/// A clock can opt in with `static constexpr bool real_time = true;`.
template <class Clock>
inline constexpr bool is_real_time_clock = [] {
  if constexpr (requires { Clock::real_time; }) {
    return static_cast<bool>(Clock::real_time);
  } else {
    return std::is_same_v<Clock, steady_clock_source> ||
           std::is_same_v<Clock, coarse_steady_clock>;
  }
}();

/// The write-behind buffer: coalescing, batching, per-key order, retries, dead letters.
/// Store-agnostic: flushing calls `attempt(todo, ok)` where `todo` is a
/// std::vector<const write*> and `attempt` sets ok[i] = 1 for each write the store
/// accepted and returns the last failure (nullptr if none).
template <class Key, class Value, class Clock, class Hash = std::hash<Key>>
class write_behind_buffer {
 public:
  using time_point = typename Clock::time_point;
  using write = buffered_write<Key, Value, time_point>;
  using dead_letter = dead_letter_batch<Key, Value, time_point>;
  using hook_type = dead_letter_hook<Key, Value, time_point>;

  write_behind_buffer(write_behind_config config, Clock clock, hook_type hook)
      : config_(config), clock_(std::move(clock)), hook_(std::move(hook)) {
    write_behind::validate(config_);
  }
  write_behind_buffer(const write_behind_buffer&) = delete;
  write_behind_buffer& operator=(const write_behind_buffer&) = delete;

  enum class admission : std::uint8_t { accepted, rejected, closed };

  /// Room for one write, taken before the write touches the tiers. Destroying an
  /// unused reservation gives the room back.
  class reservation {
   public:
    reservation(reservation&& o) noexcept
        : buffer_(std::exchange(o.buffer_, nullptr)), slot_(o.slot_), result_(o.result_) {}
    reservation& operator=(reservation&&) = delete;
    reservation(const reservation&) = delete;
    reservation& operator=(const reservation&) = delete;
    ~reservation() {
      if (buffer_ != nullptr) buffer_->cancel(slot_);
    }
    [[nodiscard]] admission result() const noexcept { return result_; }
    [[nodiscard]] bool accepted() const noexcept { return result_ == admission::accepted; }

   private:
    friend class write_behind_buffer;
    reservation(write_behind_buffer* b, bool slot, admission r)
        : buffer_(b), slot_(slot), result_(r) {}
    write_behind_buffer* buffer_;
    bool slot_;
    admission result_;
  };

  /// Waits for (or refuses) room for a write to `key`; see write_behind_overflow.
  [[nodiscard]] reservation reserve(const Key& key) {
    std::unique_lock lock(mutex_);
    if (closed_) return refuse(admission::closed);
    if (index_.contains(key)) {
      ++writers_;
      return reservation(this, false, admission::accepted);
    }
    auto has_room = [&] { return depth() + reserved_ < config_.max_buffered; };
    if (!has_room()) {
      if (config_.overflow == write_behind_overflow::reject) {
        return refuse(admission::rejected);
      }
      blocked_.add();
      // Saturating: a huge block_timeout waits "forever" instead of overflowing.
      const auto deadline =
          saturating_add(std::chrono::steady_clock::now(), config_.block_timeout);
      const bool ready = room_.wait_until(
          lock, deadline, [&] { return closed_ || has_room() || index_.contains(key); });
      if (closed_) return refuse(admission::closed);
      if (!ready) return refuse(admission::rejected);
      if (!has_room()) {  // the key is buffered: coalesce, no room needed
        ++writers_;
        return reservation(this, false, admission::accepted);
      }
    }
    ++reserved_;
    ++writers_;
    return reservation(this, true, admission::accepted);
  }

  /// Buffers an accepted write (value nullopt = erase) and returns true when a
  /// size-triggered flush is due.
  bool enqueue(reservation&& r, Key key, std::optional<Value> value) {
    const time_point now = clock_.now();
    std::lock_guard lock(mutex_);
    if (r.buffer_ != this || !r.accepted()) {
      throw std::logic_error("write_behind_buffer: enqueue needs an accepted reservation");
    }
    r.buffer_ = nullptr;
    if (r.slot_) --reserved_;
    --writers_;
    const std::uint64_t seq = ++sequence_;
    acknowledged_.add();
    if (auto it = index_.find(key); it != index_.end()) {
      it->second->value = std::move(value);
      it->second->last_acknowledged = now;
      it->second->last_sequence = seq;
      coalesced_.add();
    } else {
      pending_.push_back(entry{std::move(key), std::move(value), now, seq, now, seq});
      auto last = std::prev(pending_.end());
      index_.emplace(last->key, last);
    }
    if (writers_ == 0) idle_.notify_all();
    return pending_.size() >= config_.max_batch;
  }

  /// The newest buffered or in-flight write for `key`: nullopt if none; a nullopt
  /// inside means the latest write erased the key.
  [[nodiscard]] std::optional<std::optional<Value>> lookup(const Key& key) const {
    std::lock_guard lock(mutex_);
    if (auto it = index_.find(key); it != index_.end()) return it->second->value;
    if (auto it = in_flight_.find(key); it != in_flight_.end()) {
      return it->second.first->writes[it->second.second].value;
    }
    return std::nullopt;
  }

  /// Does what a timer would at `now`: retries due batches and flushes batches due
  /// by size or age. Returns the number of writes stored.
  template <class Attempt>
  std::size_t run_due(time_point now, Attempt&& attempt) {
    std::size_t stored = 0;
    for (;;) {
      std::unique_lock lock(mutex_);
      batch_iterator b = claim_due(now);
      if (b == batches_.end()) break;
      stored += run(lock, b, attempt);
    }
    return stored;
  }

  /// Writes (or dead-letters) every write acknowledged before the call, including
  /// batches awaiting a retry and those other threads are writing. Returns the
  /// number of writes this call stored.
  template <class Attempt>
  std::size_t flush(Attempt&& attempt) {
    std::size_t stored = 0;
    std::unique_lock lock(mutex_);
    const std::uint64_t target = sequence_;
    for (;;) {
      if (abandoned_) break;  // abandon() has taken what was left
      batch_iterator b = batches_.end();
      std::optional<time_point> wait_until;
      for (auto it = batches_.begin(); it != batches_.end(); ++it) {
        if (it->running || it->min_sequence > target) continue;
        if (is_real_time_clock<Clock> && it->next_attempt > clock_.now()) {
          wait_until =
              wait_until ? std::min(*wait_until, it->next_attempt) : it->next_attempt;
          continue;
        }
        b = it;
        break;
      }
      if (b == batches_.end() && !pending_.empty() &&
          pending_.front().first_sequence <= target) {
        b = claim_new();
      }
      if (b != batches_.end()) {
        b->running = true;
        stored += run(lock, b, attempt);
        continue;
      }
      const bool others = delivering_ > 0 || std::any_of(batches_.begin(), batches_.end(),
                                                         [&](const batch& x) {
                                                           return x.min_sequence <= target;
                                                         });
      if (!others) break;
      if (wait_until) {
        // A retry may be due at time_point::max() (a huge retry_cap): saturate.
        changed_.wait_until(lock, saturating_add(std::chrono::steady_clock::now(),
                                                 *wait_until - clock_.now()));
      } else {
        changed_.wait(lock);
      }
    }
    return stored;
  }

  /// Stops accepting writes (blocked writers are rejected) and waits until writers
  /// holding a reservation have enqueued. Then flush() drains everything.
  void close() {
    std::unique_lock lock(mutex_);
    closed_ = true;
    room_.notify_all();
    idle_.wait(lock, [&] { return writers_ == 0; });
  }

  [[nodiscard]] bool closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }

  /// Gives up draining (a shutdown deadline passed): closes the buffer, moves out every
  /// write not being stored right now (buffered, or waiting for a retry) into
  /// `unstored`, and copies those whose store call is running into `in_flight`. A
  /// running batch that then fails is dead-lettered, not retried; flush() loops end.
  template <class Report>
  void abandon(Report& report) {
    std::lock_guard lock(mutex_);
    closed_ = true;
    abandoned_ = true;
    for (entry& e : pending_) {
      report.unstored.push_back(write{std::move(e.key), std::move(e.value),
                                      e.last_acknowledged, e.last_sequence});
    }
    handed_back_.add(pending_.size());
    pending_.clear();
    index_.clear();
    for (auto it = batches_.begin(); it != batches_.end();) {
      for (std::size_t i = 0; i < it->writes.size(); ++i) {
        if (it->done[i] != 0) continue;
        if (it->running) {
          report.in_flight.push_back(it->writes[i]);  // the store call reads it: copy
        } else {
          in_flight_.erase(it->writes[i].key);
          report.unstored.push_back(std::move(it->writes[i]));
          handed_back_.add();
        }
      }
      it = it->running ? std::next(it) : batches_.erase(it);
    }
    room_.notify_all();
    changed_.notify_all();
  }

  /// Waits until no store call or dead-letter delivery of this buffer is running.
  void wait_quiescent() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] {
      return delivering_ == 0 && std::none_of(batches_.begin(), batches_.end(),
                                              [](const batch& b) { return b.running; });
    });
  }

  /// When the next flush or retry is due (now if a full batch waits); nullopt = idle.
  [[nodiscard]] std::optional<time_point> next_deadline() const {
    std::lock_guard lock(mutex_);
    std::optional<time_point> next;
    auto consider = [&](time_point t) { next = next ? std::min(*next, t) : t; };
    if (!pending_.empty()) {
      if (pending_.size() >= config_.max_batch) {
        consider(clock_.now());
      } else {
        consider(saturating_add(pending_.front().since, config_.max_delay));
      }
    }
    for (const auto& b : batches_) {
      if (!b.running) consider(b.next_attempt);
    }
    return next;
  }

  [[nodiscard]] write_behind_stats stats() const {
    std::lock_guard lock(mutex_);
    return {.acknowledged = acknowledged_.load(),
            .coalesced = coalesced_.load(),
            .flushed = flushed_.load(),
            .batches = batches_done_.load(),
            .retries = retries_.load(),
            .failed_attempts = failed_attempts_.load(),
            .dead_lettered = dead_lettered_.load(),
            .dead_letter_batches = dead_letter_batches_.load(),
            .rejected = rejected_.load(),
            .blocked = blocked_.load(),
            .queue_depth = depth(),
            .in_flight = in_flight_.size(),
            .handed_back = handed_back_.load()};
  }

  /// Dead letters kept because no hook was set (or the hook threw).
  [[nodiscard]] std::vector<dead_letter> take_dead_letters() {
    std::lock_guard lock(mutex_);
    return std::exchange(kept_, {});
  }

  [[nodiscard]] const write_behind_config& config() const noexcept { return config_; }

 private:
  struct entry {  // a buffered write, one per key
    Key key;
    std::optional<Value> value;
    time_point since;  // first acknowledgement: its age decides age-based flushes
    std::uint64_t first_sequence;
    time_point last_acknowledged;  // of the latest write coalesced into this one
    std::uint64_t last_sequence;
  };
  struct batch {
    std::vector<write> writes;
    std::vector<char> done;
    std::size_t attempts = 0;
    time_point next_attempt{};
    bool running = false;
    std::uint64_t min_sequence = 0;  // smallest first_sequence among writes not done
    std::vector<std::uint64_t> first_sequence;
    std::exception_ptr error;
  };
  using batch_iterator = typename std::list<batch>::iterator;

  reservation refuse(admission a) {
    rejected_.add();
    return reservation(nullptr, false, a);
  }

  void cancel(bool slot) {
    std::lock_guard lock(mutex_);
    if (slot) --reserved_;
    --writers_;
    room_.notify_all();
    if (writers_ == 0) idle_.notify_all();
  }

  [[nodiscard]] std::size_t depth() const noexcept {
    return pending_.size() + in_flight_.size();
  }

  // Builds a batch from the front of the line, skipping keys already in flight.
  batch_iterator claim_new() {
    batch b;
    for (auto it = pending_.begin();
         it != pending_.end() && b.writes.size() < config_.max_batch;) {
      if (in_flight_.contains(it->key)) {
        ++it;
        continue;
      }
      b.first_sequence.push_back(it->first_sequence);
      b.writes.push_back(write{std::move(it->key), std::move(it->value),
                               it->last_acknowledged, it->last_sequence});
      index_.erase(b.writes.back().key);
      it = pending_.erase(it);
    }
    if (b.writes.empty()) return batches_.end();
    b.done.assign(b.writes.size(), 0);
    b.min_sequence = *std::min_element(b.first_sequence.begin(), b.first_sequence.end());
    b.running = true;
    batches_.push_back(std::move(b));
    auto bit = std::prev(batches_.end());
    for (std::size_t i = 0; i < bit->writes.size(); ++i) {
      in_flight_.emplace(bit->writes[i].key, std::pair{bit, i});
    }
    return bit;
  }

  batch_iterator claim_due(time_point now) {
    for (auto it = batches_.begin(); it != batches_.end(); ++it) {
      if (!it->running && it->next_attempt <= now) {
        it->running = true;
        return it;
      }
    }
    if (pending_.empty()) return batches_.end();
    if (pending_.size() >= config_.max_batch ||
        saturating_add(pending_.front().since, config_.max_delay) <= now) {
      return claim_new();
    }
    return batches_.end();
  }

  // Attempts batch `b` (claimed, lock held on entry and exit; released meanwhile).
  template <class Attempt>
  std::size_t run(std::unique_lock<std::mutex>& lock, batch_iterator b, Attempt& attempt) {
    std::vector<const write*> todo;
    std::vector<std::size_t> where;
    for (std::size_t i = 0; i < b->writes.size(); ++i) {
      if (b->done[i] == 0) {
        todo.push_back(&b->writes[i]);
        where.push_back(i);
      }
    }
    if (b->attempts > 0) retries_.add();
    std::vector<char> ok(todo.size(), 0);
    lock.unlock();
    std::exception_ptr error;
    try {
      error = attempt(todo, ok);
    } catch (...) {  // an attempt function that throws fails the whole attempt
      error = std::current_exception();
      std::fill(ok.begin(), ok.end(), char{0});
    }
    const time_point now = clock_.now();
    lock.lock();
    std::size_t stored = 0;
    for (std::size_t j = 0; j < todo.size(); ++j) {
      if (ok[j] == 0) continue;
      b->done[where[j]] = 1;
      in_flight_.erase(b->writes[where[j]].key);
      ++stored;
    }
    flushed_.add(stored);
    ++b->attempts;
    if (stored < todo.size()) {
      failed_attempts_.add();
      b->error = error ? error
                       : std::make_exception_ptr(std::runtime_error(
                             "write_behind: the store did not accept the write"));
    }
    std::optional<dead_letter> letter;
    if (stored == todo.size()) {
      batches_done_.add();
      batches_.erase(b);
    } else if (b->attempts > config_.max_retries || abandoned_) {
      letter.emplace();
      letter->error = b->error;
      letter->attempts = b->attempts;
      for (std::size_t i = 0; i < b->writes.size(); ++i) {
        if (b->done[i] != 0) continue;
        in_flight_.erase(b->writes[i].key);
        letter->writes.push_back(std::move(b->writes[i]));
      }
      dead_lettered_.add(letter->writes.size());
      dead_letter_batches_.add();
      batches_.erase(b);
    } else {
      b->running = false;
      b->next_attempt = saturating_add(now, write_behind::backoff(config_, b->attempts));
      b->min_sequence = ~std::uint64_t{0};
      for (std::size_t i = 0; i < b->writes.size(); ++i) {
        if (b->done[i] == 0)
          b->min_sequence = std::min(b->min_sequence, b->first_sequence[i]);
      }
    }
    room_.notify_all();
    if (letter) {
      ++delivering_;
      lock.unlock();
      deliver(std::move(*letter));
      lock.lock();
      --delivering_;
    }
    changed_.notify_all();
    return stored;
  }

  void deliver(dead_letter&& letter) {
    if (hook_) {
      try {
        hook_(letter);  // a copy: if the hook throws, the original is kept
        return;
      } catch (...) {
        letter.error = std::current_exception();
      }
    }
    std::lock_guard lock(mutex_);
    kept_.push_back(std::move(letter));
  }

  const write_behind_config config_;
  Clock clock_;
  hook_type hook_;

  mutable std::mutex mutex_;
  std::condition_variable room_;     // writers waiting for room
  std::condition_variable changed_;  // flush() waiting for other flushers
  std::condition_variable idle_;     // close() waiting for reserved writers
  std::list<entry> pending_;         // arrival order (first acknowledgement)
  std::unordered_map<Key, typename std::list<entry>::iterator, Hash> index_;
  std::list<batch> batches_;  // claimed: running or awaiting a retry
  std::unordered_map<Key, std::pair<batch_iterator, std::size_t>, Hash> in_flight_;
  std::vector<dead_letter> kept_;
  std::size_t reserved_ = 0;
  std::size_t writers_ = 0;  // accepted reservations not yet enqueued or cancelled
  std::size_t delivering_ = 0;
  std::uint64_t sequence_ = 0;
  bool closed_ = false;
  bool abandoned_ = false;

  counter handed_back_;
  counter acknowledged_, coalesced_, flushed_, batches_done_, retries_, failed_attempts_,
      dead_lettered_, dead_letter_batches_, rejected_, blocked_;
};

}  // namespace detail
}  // namespace outgrow
