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
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/core/stats.hpp>
#include <outgrow/core/version.hpp>
