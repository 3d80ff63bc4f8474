// outgrow/resilience/errors.hpp — exceptions the resilience helpers throw.
//
//   try {
//     auto v = breaker.call([&] { return client.get(key); });
//   } catch (const outgrow::circuit_open_error& e) {
//     // rejected without calling the dependency; retry does not retry this error
//   }
//
// Only the convenience helpers throw these (circuit_breaker::call without a fallback);
// try_acquire never throws. Thread-safety: plain exception types. Complexity: none.
#pragma once

#include <stdexcept>
#include <string>

namespace outgrow {

/// A call was rejected because the circuit breaker is open (or forced open, or its
/// half-open probes are all taken). The dependency was not called.
class circuit_open_error : public std::runtime_error {
 public:
  explicit circuit_open_error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace outgrow
