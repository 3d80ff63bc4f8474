// Queue benchmarks: bounded_queue beside boost::lockfree::queue and
// moodycamel::ConcurrentQueue, 1 producer + 1 consumer and 2 + 2, for int and for a
// movable payload (a std::unique_ptr<std::string>, which boost::lockfree::queue cannot
// hold: it needs trivially copyable items).
//
// Each benchmark runs 2 or 4 threads on one shared queue (capacity 1024): the first half
// push, the second half pop, the same number of items each. items_per_second counts
// items popped (consumer threads only); UseRealTime.
#include <outgrow/queue/bounded_queue.hpp>

#include <atomic>
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

// threads:2 = 1P1C, threads:4 = 2P2C.
BENCHMARK(BM_bounded_queue_int)->Threads(2)->Threads(4)->UseRealTime();
BENCHMARK(BM_boost_lockfree_queue_int)->Threads(2)->Threads(4)->UseRealTime();
BENCHMARK(BM_moodycamel_queue_int)->Threads(2)->Threads(4)->UseRealTime();
BENCHMARK(BM_bounded_queue_payload)->Threads(2)->Threads(4)->UseRealTime();
BENCHMARK(BM_moodycamel_queue_payload)->Threads(2)->Threads(4)->UseRealTime();

}  // namespace
