// outgrow/cache/detail/write_behind_buffer.hpp — the write-behind engine.
//
// write_behind_buffer holds the writes tiered_cache acknowledged under the write_behind
// policy: it coalesces writes to one key, claims batches by size or age, keeps per-key
// order (a key in flight is not claimed again), retries failed batches with backoff,
// hands writes that keep failing to the dead-letter hook, and drains or abandons on
// shutdown. Store-agnostic: the cache passes the function that calls the store. The
// policy, its config and the public result types are in cache/write_policy.hpp.
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

#include <outgrow/cache/write_policy.hpp>
#include <outgrow/core/backoff.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/deadline.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>

namespace outgrow::detail {

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

  [[nodiscard]] write_behind_metrics metrics() const {
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

}  // namespace outgrow::detail
