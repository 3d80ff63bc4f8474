// outgrow/routing/detail/splitter_result.hpp — read_write_splitter::route_result: one
// routed statement, holding a replica lease or a reference to the primary.
//
// Documented where users meet it, at read_write_splitter::route_result. A replica read
// holds the read pool's lease (its outcome feeds the balancer's health); a primary
// statement holds the primary's node and reports its outcome to the splitter (the run of
// failed primary statements, and a write's commit position into the session). The
// Splitter's types arrive as its member aliases, so this header does not depend on the
// public one; it is instantiated only once the splitter is complete.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>

namespace outgrow::detail {

template <class Splitter>
class splitter_route_result {
  using conn_type = typename Splitter::connection_type;
  using node_type = typename Splitter::node_type;
  using lease_type = typename Splitter::pool_lease_type;
  using target_type = typename Splitter::target_type;
  using reason_type = typename Splitter::reason_type;
  using error_type = typename Splitter::error_type;
  using session_type = typename Splitter::session_type;

 public:
  splitter_route_result() noexcept = default;
  splitter_route_result(splitter_route_result&& o) noexcept
      : owner_(std::exchange(o.owner_, nullptr)),
        lease_(std::move(o.lease_)),
        primary_(std::move(o.primary_)),
        session_(std::exchange(o.session_, nullptr)),
        target_(std::exchange(o.target_, target_type::none)),
        reason_(o.reason_),
        error_(o.error_),
        is_write_(o.is_write_) {}
  splitter_route_result& operator=(splitter_route_result&& o) noexcept {
    if (this != &o) {
      abandon();
      owner_ = std::exchange(o.owner_, nullptr);
      lease_ = std::move(o.lease_);
      primary_ = std::move(o.primary_);
      session_ = std::exchange(o.session_, nullptr);
      target_ = std::exchange(o.target_, target_type::none);
      reason_ = o.reason_;
      error_ = o.error_;
      is_write_ = o.is_write_;
    }
    return *this;
  }
  splitter_route_result(const splitter_route_result&) = delete;
  splitter_route_result& operator=(const splitter_route_result&) = delete;
  ~splitter_route_result() { abandon(); }

  explicit operator bool() const noexcept { return target_ != target_type::none; }
  /// The chosen connection. Precondition: *this is true.
  [[nodiscard]] const conn_type& connection() const noexcept {
    return lease_ ? lease_->p->conn : primary_->conn;
  }
  [[nodiscard]] const conn_type& operator*() const noexcept { return connection(); }
  [[nodiscard]] const conn_type* operator->() const noexcept { return &connection(); }
  [[nodiscard]] target_type target() const noexcept { return target_; }
  [[nodiscard]] reason_type reason() const noexcept { return reason_; }
  [[nodiscard]] error_type error() const noexcept { return error_; }

  /// The statement succeeded. For a write: its commit position is unknown, so a
  /// read_your_writes session reads from the primary for time_window.
  void success() noexcept { finish(true, 0); }
  /// The statement succeeded; for a write, `position` is its commit position (LSN,
  /// GTID sequence): the session now needs replicas that applied it.
  void success(std::uint64_t position) noexcept { finish(true, position); }
  /// The statement failed because of the endpoint (feeds health).
  void failure() noexcept { finish(false, 0); }
  /// Neither (what dropping the result does).
  void abandon() noexcept {
    if (lease_) lease_.abandon();
    release();
  }

 private:
  friend Splitter;
  splitter_route_result(Splitter* owner, lease_type&& lease) noexcept
      : owner_(owner),
        lease_(std::move(lease)),
        target_(lease_->is_primary ? target_type::primary : target_type::replica),
        reason_(lease_->is_primary ? reason_type::primary_in_pool : reason_type::replica) {}
  void finish(bool ok, std::uint64_t position) noexcept {
    if (target_ == target_type::none) return;
    if (lease_) {
      ok ? lease_.success() : lease_.failure();
    } else if (primary_ && owner_ != nullptr) {
      owner_->primary_outcome(*primary_, ok);
      if (ok && is_write_ && session_ != nullptr && position != 0) {
        session_->last_write_position = std::max(session_->last_write_position, position);
        session_->position_pending = false;
        owner_->note_primary_position(position);
      }
    }
    release();
  }
  void release() noexcept {
    primary_.reset();
    owner_ = nullptr;
    session_ = nullptr;
    target_ = target_type::none;
  }

  Splitter* owner_ = nullptr;
  lease_type lease_;
  std::shared_ptr<node_type> primary_;
  session_type* session_ = nullptr;
  target_type target_ = target_type::none;
  reason_type reason_ = reason_type::replica;
  error_type error_ = error_type::none;
  bool is_write_ = false;
};
}  // namespace outgrow::detail
