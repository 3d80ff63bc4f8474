// outgrow/outgrow.hpp — umbrella header: every primitive except optional integrations
// (outgrow/redis/*, which need hiredis and the outgrow::redis target).
//
//   #include <outgrow/outgrow.hpp>
//   outgrow::manual_clock clock;
//   outgrow::xxh3_hasher hash;
//
// Including one primitive's header (outgrow/<area>/<primitive>.hpp) is cheaper to
// compile; this header is for convenience and for examples.
//
// Thread-safety and complexity: see each primitive's header.
#pragma once

// core
#include <outgrow/core/backoff.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/deadline.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/core/snapshot.hpp>
#include <outgrow/core/stats.hpp>

// routing: placement and sharding
#include <outgrow/core/version.hpp>
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

// resilience
#include <outgrow/resilience/circuit_breaker.hpp>
#include <outgrow/resilience/errors.hpp>
#include <outgrow/resilience/retry.hpp>

// queue
#include <outgrow/queue/bounded_queue.hpp>
#include <outgrow/queue/dead_letter_queue.hpp>
#include <outgrow/queue/work_queue.hpp>

// cache
#include <outgrow/autoscale/autoscaler.hpp>
#include <outgrow/autoscale/scaling_policy.hpp>
#include <outgrow/autoscale/simulator.hpp>

#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/concurrent_cache.hpp>
#include <outgrow/cache/eviction.hpp>
#include <outgrow/cache/invalidation.hpp>
#include <outgrow/cache/single_flight.hpp>
#include <outgrow/cache/tier.hpp>
#include <outgrow/cache/tiered_cache.hpp>
#include <outgrow/cache/write_policy.hpp>
