// outgrow/autoscale/detail/growing_ring.hpp — a FIFO ring buffer that only grows.
//
// Metric samples, replica changes and stabilization-window entries are appended at the
// back and dropped from the front on every evaluation; a ring that doubles when full
// and never shrinks makes that allocation-free once it reached its peak size.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace outgrow::detail {

/// A FIFO ring buffer that grows (doubling) when full and never shrinks, so pushing
/// and popping allocate nothing once it reached its peak size.
template <class T>
class growing_ring {
 public:
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  /// i = 0 is the oldest element.
  [[nodiscard]] const T& operator[](std::size_t i) const noexcept {
    return buf_[(head_ + i) & (buf_.size() - 1)];
  }
  [[nodiscard]] T& operator[](std::size_t i) noexcept {
    return buf_[(head_ + i) & (buf_.size() - 1)];
  }
  [[nodiscard]] const T& front() const noexcept { return (*this)[0]; }
  [[nodiscard]] const T& back() const noexcept { return (*this)[size_ - 1]; }
  void push_back(const T& v) {
    if (size_ == buf_.size()) grow();
    buf_[(head_ + size_) & (buf_.size() - 1)] = v;
    ++size_;
  }
  void pop_front() noexcept {
    head_ = (head_ + 1) & (buf_.size() - 1);
    --size_;
  }
  void clear() noexcept { head_ = size_ = 0; }

 private:
  void grow() {
    std::vector<T> next(std::max<std::size_t>(16, buf_.size() * 2));
    for (std::size_t i = 0; i < size_; ++i) next[i] = (*this)[i];
    buf_.swap(next);
    head_ = 0;
  }
  std::vector<T> buf_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace outgrow::detail
