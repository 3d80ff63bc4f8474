// outgrow/cache/detail/intrusive_list.hpp — an intrusive doubly linked list (the eviction
// policies' queues) and small helpers shared by the policies. Internal to outgrow's cache
// area: users never name it; its interface may change.
#pragma once

#include <cstddef>
#include <cstdint>

namespace outgrow::detail {

/// Links of an intrusive doubly linked list; `newer` points toward the front.
struct list_hook {
  list_hook* newer = nullptr;
  list_hook* older = nullptr;
};

/// A doubly linked list of T (derived from list_hook) threaded through the elements.
/// Front = newest, back = oldest. Never owns or allocates; no sentinel, so the list
/// may be moved (the moved-from list must be clear()ed before reuse).
template <class T>
class intrusive_list {
 public:
  [[nodiscard]] bool empty() const noexcept { return front_ == nullptr; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] T* front() const noexcept { return static_cast<T*>(front_); }
  [[nodiscard]] T* back() const noexcept { return static_cast<T*>(back_); }
  [[nodiscard]] static T* newer(const T& t) noexcept {
    return static_cast<T*>(static_cast<const list_hook&>(t).newer);
  }
  [[nodiscard]] static T* older(const T& t) noexcept {
    return static_cast<T*>(static_cast<const list_hook&>(t).older);
  }

  void push_front(T& t) noexcept {
    link_at<&list_hook::newer, &list_hook::older>(t, front_, back_);
  }
  void push_back(T& t) noexcept {
    link_at<&list_hook::older, &list_hook::newer>(t, back_, front_);
  }
  void remove(T& t) noexcept {
    list_hook& h = t;
    (h.newer != nullptr ? h.newer->older : front_) = h.older;
    (h.older != nullptr ? h.older->newer : back_) = h.newer;
    h.newer = h.older = nullptr;
    --size_;
  }
  void move_to_front(T& t) noexcept {
    if (front_ == &static_cast<list_hook&>(t)) return;
    remove(t);
    push_front(t);
  }
  T* pop_back() noexcept {
    T* t = back();
    if (t != nullptr) remove(*t);
    return t;
  }
  void clear() noexcept {
    front_ = back_ = nullptr;
    size_ = 0;
  }

 private:
  // Links h at one end of the list: `end` is that end, `other` the opposite one;
  // h.*Outward (towards no neighbour) becomes null, h.*Inward the old end.
  template <list_hook* list_hook::*Outward, list_hook* list_hook::*Inward>
  void link_at(list_hook& h, list_hook*& end, list_hook*& other) noexcept {
    h.*Outward = nullptr;
    h.*Inward = end;
    (end != nullptr ? end->*Outward : other) = &h;
    end = &h;
    ++size_;
  }

  list_hook* front_ = nullptr;
  list_hook* back_ = nullptr;
  std::size_t size_ = 0;
};

/// splitmix64: a tiny deterministic generator (same sequence on every platform).
struct splitmix64 {
  std::uint64_t state = 0;
  std::uint64_t operator()() noexcept {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

/// The share `percent` of `capacity`, rounded down, without overflow.
constexpr std::size_t percent_of(std::size_t capacity, std::size_t percent) noexcept {
  return capacity / 100 * percent + capacity % 100 * percent / 100;
}

}  // namespace outgrow::detail
