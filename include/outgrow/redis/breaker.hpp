// outgrow/redis/breaker.hpp — what a Redis part needs from a circuit breaker.
//
// redis_tier's Breaker parameter (and the Redis parts to come) asks a breaker before each
// call and reports how the call went: with one, a dead Redis costs no I/O per request
// while the breaker is open. outgrow::circuit_breaker<...> satisfies `redis_breaker`;
// `no_breaker` (the default) means "always call". Any type with try_acquire() returning
// a permit (explicit bool, success(), failure(), ignore()) works. Smallest:
//
//   struct counting_breaker {                    // never opens; counts outcomes
//     struct permit {
//       counting_breaker* b;
//       explicit operator bool() const { return true; }
//       void success() { ++b->successes; }
//       void failure() { ++b->failures; }
//       void ignore() {}
//     };
//     permit try_acquire() { return {this}; }
//     std::atomic<int> successes{0}, failures{0};   // parts call from many threads
//   };
//   outgrow::redis_tier<std::string, std::string, outgrow::redis_default_codec,
//                       counting_breaker> tier(config, breaker);
//
// What a part reports: transport and connect failures are failure(); error replies from
// a live server (OOM, WRONGTYPE), encoding failures and calls that found no free pooled
// connection are ignore(); everything else success(). A permit that is false means the
// call is not sent (counted in the part's short_circuited). The breaker is the caller's:
// share one between the parts that use the same Redis and read its metrics().
//
// Trade-offs: a breaker opens on consecutive / windowed failures and so also stops the
// probes that would find a recovered Redis early; the reconnect backoff alone (no
// breaker) keeps probing every backoff delay. Thread-safety: a part calls try_acquire
// and the permit's members from many threads at once. Complexity and measured cost: the
// breaker's own (resilience/circuit_breaker.hpp).
#pragma once

namespace outgrow {

/// No circuit breaker (the default Breaker of redis_tier).
struct no_breaker {};

/// What a Redis part needs from a breaker: circuit_breaker<...> satisfies it.
template <class B>
concept redis_breaker = requires(B& b) {
  b.try_acquire();
  requires requires(decltype(b.try_acquire())& p) {
    static_cast<bool>(p);
    p.success();
    p.failure();
    p.ignore();
  };
};

}  // namespace outgrow
