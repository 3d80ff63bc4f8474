// outgrow/core/stats.hpp — the former name of <outgrow/core/metrics.hpp>; include that.
//
// Kept so code written against 0.1 still compiles; it will be removed in a later release.
#pragma once

#include <outgrow/core/metrics.hpp>
