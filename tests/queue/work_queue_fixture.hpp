// tests/queue/work_queue_fixture.hpp — the work_queue the hand-off and batch tests drive:
// a job with an id, manual_clock (no retry delay passes by itself), no backoff.
#pragma once

#include <outgrow/queue/work_queue.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

namespace outgrow_test {

struct id_job {
  std::uint32_t id = 0;
};

using id_job_queue =
    outgrow::work_queue<id_job, outgrow::manual_clock, outgrow::constant_backoff>;

inline std::unique_ptr<id_job_queue> make_id_job_queue(
    outgrow::work_queue_config config, std::function<void(id_job&)> handler) {
  return std::make_unique<id_job_queue>(
      std::move(config), std::move(handler), outgrow::manual_clock{},
      outgrow::constant_backoff{std::chrono::nanoseconds{0}});
}

}  // namespace outgrow_test
