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
//   cache_t cache(db, std::tie(l1), {.default_ttl = 5min},
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
//     dead_lettered + handed_back + queue_depth, at every metrics() snapshot that is
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
// (cache/detail/write_behind_buffer.hpp, the engine tiered_cache uses) is safe from
// any thread.
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
#include <outgrow/core/metrics.hpp>

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

namespace detail {
/// A policy with settings: `config`, a default constructor (default settings) and an
/// implicit constructor from the settings that validates them (Policy::validate).
template <class Policy, class Config>
struct configured_policy {
  configured_policy() = default;
  /// Throws: config_error if a field of `c` is out of range (see Policy::validate).
  configured_policy(Config c) : config(c) { Policy::validate(config); }  // NOLINT

  Config config{};
};
}  // namespace detail

/// Acknowledge writes once cached and buffered; store them later, in batches.
struct write_behind : detail::configured_policy<write_behind, write_behind_config> {
  static constexpr write_policy_kind kind = write_policy_kind::write_behind;
  static constexpr std::string_view name = "write_behind";
  using configured_policy::configured_policy;

  /// Throws: config_error naming the field, its allowed range and the value.
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
struct refresh_ahead : detail::configured_policy<refresh_ahead, refresh_ahead_config> {
  static constexpr write_policy_kind kind = write_policy_kind::refresh_ahead;
  static constexpr std::string_view name = "refresh_ahead";
  using configured_policy::configured_policy;

  /// Throws: config_error naming the field, its allowed range and the value.
  static void validate(const refresh_ahead_config& c) {
    require(c.refresh_fraction > 0.0 && c.refresh_fraction < 1.0, "refresh_ahead",
            "refresh_fraction", "in (0, 1)", c.refresh_fraction);
    require_at_least("refresh_ahead", "retry_after", c.retry_after,
                     std::chrono::nanoseconds::zero());
  }
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

/// Write-behind counters (part of tiered_cache_metrics).
struct write_behind_metrics {
  static constexpr std::string_view metrics_name = "write_behind_metrics";
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

}  // namespace outgrow
