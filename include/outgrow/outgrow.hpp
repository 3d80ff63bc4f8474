// outgrow/outgrow.hpp — umbrella header: every primitive except optional integrations
// that need hiredis and the outgrow::redis target (outgrow/redis/*, and the headers of
// other areas built on them: admission/redis_rate_limiter.hpp).
//
//   #include <outgrow/outgrow.hpp>
//   outgrow::manual_clock clock;
//   outgrow::xxh3_hasher hash;
//
// Including one primitive's header (outgrow/<area>/<primitive>.hpp) is cheaper to
// compile; this header is for convenience and for examples. (core/stats.hpp, the former
// name of core/metrics.hpp, is left out.)
//
// Thread-safety and complexity: see each primitive's header.
#pragma once

// core: clock, hashing, errors, metrics, seeds, backoff, snapshots
#include <outgrow/core/backoff.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/deadline.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/core/log_histogram.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/prometheus.hpp>
#include <outgrow/core/seed.hpp>
#include <outgrow/core/sleeper.hpp>
#include <outgrow/core/snapshot.hpp>
#include <outgrow/core/version.hpp>

// routing: placement, sharding, load balancing, read/write splitting
#include <outgrow/routing/concurrent_placement.hpp>
#include <outgrow/routing/hash_ring.hpp>
#include <outgrow/routing/hot_keys.hpp>
#include <outgrow/routing/hybrid_logical_clock.hpp>
#include <outgrow/routing/jump_hash.hpp>
#include <outgrow/routing/load_balancer.hpp>
#include <outgrow/routing/maglev.hpp>
#include <outgrow/routing/placement.hpp>
#include <outgrow/routing/read_write_splitter.hpp>
#include <outgrow/routing/redis_cluster_slots.hpp>
#include <outgrow/routing/rendezvous.hpp>
#include <outgrow/routing/shard_router.hpp>

// cache: tiers, eviction, multi-tier caches, write policies, invalidation
#include <outgrow/cache/backing_store.hpp>
#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/concurrent_cache.hpp>
#include <outgrow/cache/eviction.hpp>
#include <outgrow/cache/invalidation.hpp>
#include <outgrow/cache/single_flight.hpp>
#include <outgrow/cache/tier.hpp>
#include <outgrow/cache/tiered_cache.hpp>
#include <outgrow/cache/tiered_cache_config.hpp>
#include <outgrow/cache/w_tiny_lfu.hpp>
#include <outgrow/cache/write_policy.hpp>
#include <outgrow/cache/xfetch.hpp>

// resilience: circuit breaking and retries
#include <outgrow/resilience/breaker_window.hpp>
#include <outgrow/resilience/circuit_breaker.hpp>
#include <outgrow/resilience/circuit_breaker_config.hpp>
#include <outgrow/resilience/errors.hpp>
#include <outgrow/resilience/retry.hpp>
#include <outgrow/resilience/retry_budget.hpp>

// admission: rate limits, bulkheads, adaptive concurrency limits, hedging
#include <outgrow/admission/adaptive_throttle.hpp>
#include <outgrow/admission/bulkhead.hpp>
#include <outgrow/admission/call_context.hpp>
#include <outgrow/admission/concurrency_limiter.hpp>
#include <outgrow/admission/hedging.hpp>
#include <outgrow/admission/keyed_rate_limiter.hpp>
#include <outgrow/admission/limit_algorithms.hpp>
#include <outgrow/admission/overload_simulator.hpp>
#include <outgrow/admission/rate_limiter.hpp>
#include <outgrow/admission/resilience_pipeline.hpp>
#include <outgrow/admission/sliding_window_limiter.hpp>

// queue: bounded queues, work queues, dead letters
#include <outgrow/queue/bounded_queue.hpp>
#include <outgrow/queue/dead_letter_queue.hpp>
#include <outgrow/queue/work_queue.hpp>
#include <outgrow/queue/work_queue_types.hpp>

// autoscale: scaling policies, the autoscaler, the simulator
#include <outgrow/autoscale/autoscaler.hpp>
#include <outgrow/autoscale/backlog_scaling.hpp>
#include <outgrow/autoscale/load_trace.hpp>
#include <outgrow/autoscale/predictive_scaling.hpp>
#include <outgrow/autoscale/scaling_behavior.hpp>
#include <outgrow/autoscale/scaling_context.hpp>
#include <outgrow/autoscale/scaling_policy.hpp>
#include <outgrow/autoscale/simulator.hpp>
#include <outgrow/autoscale/step_scaling.hpp>
#include <outgrow/autoscale/target_tracking.hpp>
