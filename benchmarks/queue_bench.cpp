// Queue benchmarks: bounded_queue beside boost::lockfree::queue and
// moodycamel::ConcurrentQueue, 1 producer + 1 consumer and 2 + 2, for int and for a
// movable payload (a std::unique_ptr<std::string>, which boost::lockfree::queue cannot
// hold: it needs trivially copyable items).
//
// Each benchmark runs 2 or 4 threads on one shared queue (capacity 1024): the first half
// push, the second half pop, the same number of items each. items_per_second counts
// items popped (consumer threads only); UseRealTime.
//
// BM_work_queue_noop_jobs/<workers>: end to end through a work_queue<int> — one producer
// (the benchmark thread) submits batches of 1000 no-op jobs (block policy) and waits
// until the workers have completed them; items_per_second = jobs completed per second of
// real time, everything included (submit, hand-off, handler call, metrics, wake-ups).
#include <outgrow/queue/bounded_queue.hpp>
#include <outgrow/queue/work_queue.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include <benchmark/benchmark.h>
#include <concurrentqueue/concurrentqueue.h>
#include <boost/lockfree/queue.hpp>

namespace {

constexpr std::size_t kCapacity = 1024;

struct outgrow_queue_int {
  outgrow::bounded_queue<int> q{{.capacity = kCapacity}};
  bool push(int v) { return q.try_push(std::move(v)); }
  bool pop(int& out) {
    auto v = q.try_pop();
    if (!v) return false;
    out = *v;
    return true;
  }
};
struct boost_queue_int {
  boost::lockfree::queue<int> q{kCapacity};
  bool push(int v) { return q.bounded_push(v); }
  bool pop(int& out) { return q.pop(out); }
};
struct moodycamel_queue_int {
  moodycamel::ConcurrentQueue<int> q{kCapacity};
  bool push(int v) { return q.try_enqueue(v); }
  bool pop(int& out) { return q.try_dequeue(out); }
};

using payload = std::unique_ptr<std::string>;
struct outgrow_queue_payload {
  outgrow::bounded_queue<payload> q{{.capacity = kCapacity}};
  bool push(payload& v) { return q.try_push(std::move(v)); }
  bool pop(payload& out) {
    auto v = q.try_pop();
    if (!v) return false;
    out = std::move(*v);
    return true;
  }
};
struct moodycamel_queue_payload {
  moodycamel::ConcurrentQueue<payload> q{kCapacity};
  bool push(payload& v) { return q.try_enqueue(std::move(v)); }
  bool pop(payload& out) { return q.try_dequeue(out); }
};

template <class Queue>
Queue* shared_queue = nullptr;

template <class Queue, class Item, class MakeItem>
void run(benchmark::State& state, MakeItem make_item) {
  if (state.thread_index() == 0) shared_queue<Queue> = new Queue();
  // Google Benchmark starts timing only after every thread reached this point, and
  // thread 0's setup above runs before that barrier.
  const bool producer = state.thread_index() < state.threads() / 2;
  for (auto _ : state) {
    if (producer) {
      Item item = make_item();
      while (!shared_queue<Queue>->push(item)) std::this_thread::yield();
    } else {
      Item item{};
      while (!shared_queue<Queue>->pop(item)) std::this_thread::yield();
      benchmark::DoNotOptimize(item);
    }
  }
  if (!producer) state.SetItemsProcessed(state.iterations());
}

int make_int() {
  return 42;
}
payload make_payload() {
  return std::make_unique<std::string>("order:42");
}

void BM_bounded_queue_int(benchmark::State& s) {
  run<outgrow_queue_int, int>(s, make_int);
}
void BM_boost_lockfree_queue_int(benchmark::State& s) {
  run<boost_queue_int, int>(s, make_int);
}
void BM_moodycamel_queue_int(benchmark::State& s) {
  run<moodycamel_queue_int, int>(s, make_int);
}
void BM_bounded_queue_payload(benchmark::State& s) {
  run<outgrow_queue_payload, payload>(s, make_payload);
}
void BM_moodycamel_queue_payload(benchmark::State& s) {
  run<moodycamel_queue_payload, payload>(s, make_payload);
}

void BM_work_queue_noop_jobs(benchmark::State& state) {
  const auto workers = static_cast<std::size_t>(state.range(0));
  std::atomic<std::uint64_t> done{0};
  outgrow::work_queue<int> q({.capacity = kCapacity, .workers = workers}, [&done](int&) {
    done.fetch_add(1, std::memory_order_release);
  });
  constexpr std::uint64_t batch = 1000;
  std::uint64_t sent = 0;
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < batch; ++i) {
      if (!q.submit(static_cast<int>(i))) state.SkipWithError("submit refused");
    }
    sent += batch;
    while (done.load(std::memory_order_acquire) < sent) std::this_thread::yield();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(sent));
  (void)q.stop(std::chrono::seconds{1});
}

// threads:2 = 1P1C, threads:4 = 2P2C.
// Registered under the names: <queue>_1p1c/<payload> (2 threads) and
// <queue>_2p2c/<payload> (4 threads).
void register_pair(benchmark::internal::Function* fn, const std::string& queue,
                   const std::string& item) {
  benchmark::RegisterBenchmark((queue + "_1p1c/" + item).c_str(), fn)
      ->Threads(2)
      ->UseRealTime();
  benchmark::RegisterBenchmark((queue + "_2p2c/" + item).c_str(), fn)
      ->Threads(4)
      ->UseRealTime();
}
const int registered = [] {
  register_pair(BM_bounded_queue_int, "BM_bounded_queue", "int");
  register_pair(BM_boost_lockfree_queue_int, "BM_boost_lockfree_queue", "int");
  register_pair(BM_moodycamel_queue_int, "BM_moodycamel_queue", "int");
  register_pair(BM_bounded_queue_payload, "BM_bounded_queue", "payload");
  register_pair(BM_moodycamel_queue_payload, "BM_moodycamel_queue", "payload");
  return 0;
}();
BENCHMARK(BM_work_queue_noop_jobs)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();

}  // namespace
