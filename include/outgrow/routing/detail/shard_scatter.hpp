// outgrow/routing/detail/shard_scatter.hpp — shard_router's scatter/gather runner and
// hot-key plumbing.
//
// The engine behind shard_router::scatter_gather (routing/shard_router.hpp): runs one
// task per shard batch (on an executor, or in the calling thread), keeps every part
// and the first exception in shard order, and hands the parts to the merge function
// once all tasks finished. Also picks the hot-key tracker type a router can hold for
// its key type (none when xxh3_hasher cannot hash the key).
#pragma once

#include <concepts>
#include <cstddef>
#include <exception>
#include <latch>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/post.hpp>

#include <outgrow/core/hash.hpp>
#include <outgrow/routing/hot_keys.hpp>

namespace outgrow::detail {

/// std::unique_ptr<hot_key_tracker<Key>> when xxh3_hasher can hash Key (and Key is
/// copyable and equality-comparable), else std::nullptr_t (no tracking possible).
template <class Key, bool Trackable = key_hasher<xxh3_hasher, Key>&& std::copyable<Key>&&
                         std::equality_comparable<Key>>
struct hot_keys_of {
  using type = std::nullptr_t;
};
template <class Key>
struct hot_keys_of<Key, true> {
  using type = std::unique_ptr<hot_key_tracker<Key>>;
};

/// Rethrows the first error (in shard order), else returns merge(parts).
template <class Part, class Merge>
auto merge_parts(std::vector<std::optional<Part>> parts,
                 const std::vector<std::exception_ptr>& errors, Merge&& merge) {
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  std::vector<Part> out;
  out.reserve(parts.size());
  for (auto& p : parts) out.push_back(std::move(*p));
  return std::forward<Merge>(merge)(std::move(out));
}

/// Runs fn(batch.shard, span of batch.keys) for every batch on `executor`, waits for
/// all, then merge_parts. Batches: a vector of {shard, keys} (shard_batch<Key>).
template <class Key, class Batches, class Fn, class Merge, class Executor>
auto scatter_gather_on(const Batches& batches, Fn& fn, Merge&& merge,
                       const Executor& executor) {
  using part = std::invoke_result_t<Fn&, std::uint32_t, std::span<const Key>>;
  std::vector<std::optional<part>> parts(batches.size());
  std::vector<std::exception_ptr> errors(batches.size());
  std::latch done(static_cast<std::ptrdiff_t>(batches.size()));
  for (std::size_t i = 0; i < batches.size(); ++i) {
    boost::asio::post(executor, [&, i] {
      try {
        parts[i].emplace(fn(batches[i].shard, std::span<const Key>(batches[i].keys)));
      } catch (...) {
        errors[i] = std::current_exception();
      }
      done.count_down();
    });
  }
  done.wait();
  return merge_parts(std::move(parts), errors, std::forward<Merge>(merge));
}

/// scatter_gather_on in the calling thread, batch after batch (an exception from fn
/// propagates at once).
template <class Key, class Batches, class Fn, class Merge>
auto scatter_gather_here(const Batches& batches, Fn& fn, Merge&& merge) {
  using part = std::invoke_result_t<Fn&, std::uint32_t, std::span<const Key>>;
  std::vector<std::optional<part>> parts(batches.size());
  std::vector<std::exception_ptr> errors(batches.size());
  for (std::size_t i = 0; i < batches.size(); ++i) {
    parts[i].emplace(fn(batches[i].shard, std::span<const Key>(batches[i].keys)));
  }
  return merge_parts(std::move(parts), errors, std::forward<Merge>(merge));
}

}  // namespace outgrow::detail
