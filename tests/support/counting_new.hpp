// Replaces the global operator new/delete with versions that count allocations, so a
// test or benchmark can assert "no allocation on this path". Include it in exactly one
// translation unit of an executable (replacement functions must be unique).
//
//   #include "counting_new.hpp"
//   const auto before = outgrow_test::allocations();
//   cache.get(key);
//   CHECK(outgrow_test::allocations() == before);
//
// Every non-aligned form is replaced, so sanitizers never see their own new paired with
// our delete. The functions are noinline: once inlined into an allocator, GCC flags the
// malloc/free pair as a mismatched new/delete.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace outgrow_test {
inline std::atomic<std::size_t> allocation_count{0};

/// Allocations made through global operator new so far (all threads).
inline std::size_t allocations() noexcept {
  return allocation_count.load(std::memory_order_relaxed);
}

namespace detail {
[[gnu::noinline]] inline void* counted_malloc(std::size_t size) noexcept {
  allocation_count.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
[[gnu::noinline]] inline void* counted_malloc_or_throw(std::size_t size) {
  if (void* p = counted_malloc(size)) return p;
  throw std::bad_alloc();
}
}  // namespace detail
}  // namespace outgrow_test

[[gnu::noinline]] void* operator new(std::size_t size) {
  return outgrow_test::detail::counted_malloc_or_throw(size);
}
[[gnu::noinline]] void* operator new[](std::size_t size) {
  return outgrow_test::detail::counted_malloc_or_throw(size);
}
[[gnu::noinline]] void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return outgrow_test::detail::counted_malloc(size);
}
[[gnu::noinline]] void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return outgrow_test::detail::counted_malloc(size);
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
