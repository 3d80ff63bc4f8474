// outgrow/core/seed.hpp — the one meaning of `seed` in every outgrow config.
//
// A primitive that draws random numbers (jitter, random picks, sampling) takes
//
//   std::optional<std::uint64_t> seed{};
//
// in its config. Empty (the default): each instance seeds itself from
// std::random_device, so two processes — or two instances in one process — never draw
// the same sequence (reconnect jitter of a fleet stays spread). Set: the instance draws
// the same sequence on every run, for tests and reproducible simulations. Every value,
// 0 included, is a valid seed.
//
//   outgrow::retry_config{.seed = 42};   // deterministic
//   outgrow::retry_config{};             // random per instance
//
// (A hash function's `seed` argument, as in xxh3_hasher, is different: it is part of the
// hash value and has no "random" form.)
//
// Thread-safety: resolve_seed may be called from any thread.
// Complexity: one or two reads of std::random_device when `seed` is empty.
#pragma once

#include <cstdint>
#include <optional>
#include <random>

namespace outgrow {

/// `*seed` if set, else a fresh 64-bit seed from std::random_device.
[[nodiscard]] inline std::uint64_t resolve_seed(std::optional<std::uint64_t> seed) {
  if (seed) return *seed;
  std::random_device device;
  return (std::uint64_t{device()} << 32U) ^ std::uint64_t{device()};
}

}  // namespace outgrow
