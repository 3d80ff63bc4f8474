// outgrow/cache/detail/store_writes.hpp — hands a write-behind batch to the store.
//
// store_writes() is the store side of a write-behind flush: puts go to
// store.store_batch in one call when the store has it (all or nothing), else to
// store.store one by one; erases always go to store.erase one by one. It marks each
// write the store accepted and returns the last failure, which write_behind_buffer
// turns into retries and dead letters.
#pragma once

#include <cstddef>
#include <exception>
#include <span>
#include <utility>
#include <vector>

#include <outgrow/cache/backing_store.hpp>

namespace outgrow::detail {

/// Stores `todo` (pointers to buffered writes: `key` and optional `value`, nullopt =
/// erase); sets ok[i] = 1 for each write the store accepted. Returns the last failure
/// (nullptr if none). Never throws a store error.
template <class Store, class Write>
std::exception_ptr store_writes(Store& store, const std::vector<const Write*>& todo,
                                std::vector<char>& ok) {
  using Key = typename Store::key_type;
  using Value = typename Store::mapped_type;
  std::exception_ptr last;
  if constexpr (backing_store_with_store_batch<Store>) {
    std::vector<std::pair<Key, Value>> items;
    std::vector<std::size_t> at;
    for (std::size_t i = 0; i < todo.size(); ++i) {
      if (todo[i]->value) {
        items.emplace_back(todo[i]->key, *todo[i]->value);
        at.push_back(i);
      }
    }
    if (!items.empty()) {
      try {
        store.store_batch(std::span<const std::pair<Key, Value>>(items));
        for (std::size_t i : at) ok[i] = 1;
      } catch (...) {
        last = std::current_exception();
      }
    }
    for (std::size_t i = 0; i < todo.size(); ++i) {
      if (todo[i]->value) continue;
      try {
        store.erase(todo[i]->key);
        ok[i] = 1;
      } catch (...) {
        last = std::current_exception();
      }
    }
  } else {
    for (std::size_t i = 0; i < todo.size(); ++i) {
      try {
        if (todo[i]->value) {
          store.store(todo[i]->key, *todo[i]->value);
        } else {
          store.erase(todo[i]->key);
        }
        ok[i] = 1;
      } catch (...) {
        last = std::current_exception();
      }
    }
  }
  return last;
}

}  // namespace outgrow::detail
