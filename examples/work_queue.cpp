// work_queue: an order pipeline. Three workers charge orders against a price catalog.
// One order is for a SKU the catalog does not know yet — a poison message: it fails on
// every attempt, is retried with backoff, and after 3 attempts lands in the dead-letter
// queue instead of blocking the pipeline. We print it with its error, fix the cause (the
// SKU is added to the catalog), replay the dead letters, and every order is charged
// exactly once. Idempotency keys make a re-sent order a no-op.
#include <outgrow/queue/work_queue.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

using namespace std::chrono_literals;

namespace {

struct order {
  int id = 0;
  std::string sku;
  int quantity = 0;
};

/// Prices in cents; read by the workers, updated by the operator.
class catalog {
 public:
  catalog(std::initializer_list<std::pair<const std::string, long>> prices)
      : prices_(prices) {}

  long price(const std::string& sku) const {
    std::lock_guard lock(mutex_);
    const auto it = prices_.find(sku);
    if (it == prices_.end()) throw std::out_of_range(fmt::format("unknown SKU '{}'", sku));
    return it->second;
  }
  void add(const std::string& sku, long cents) {
    std::lock_guard lock(mutex_);
    prices_[sku] = cents;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, long> prices_;
};

std::string key_of(const order& o) {
  return fmt::format("order-{}", o.id);
}

}  // namespace

int main() {
  catalog prices{{"book", 1299}, {"mug", 850}, {"pen", 199}};
  std::atomic<long> revenue{0};
  std::atomic<int> charged{0};

  // Retries after 1 ms, then 2 ms (exponential backoff): quick for a demo; a service
  // would keep the defaults (full jitter, 100 ms .. 10 s).
  outgrow::work_queue<order, outgrow::steady_clock_source, outgrow::exponential_backoff>
      queue(
          {.capacity = 64, .workers = 3, .max_attempts = 3},
          [&](order& o) {
            revenue += prices.price(o.sku) * o.quantity;  // throws for an unknown SKU
            ++charged;
          },
          {}, outgrow::exponential_backoff{1ms, 10ms});

  const char* skus[] = {"book", "mug", "pen"};
  constexpr int orders = 20;
  for (int id = 1; id <= orders; ++id) {
    order o{id, id == 13 ? "gift-card" : skus[id % 3], 1 + id % 4};  // #13 is the poison
    const std::string key = key_of(o);
    if (auto r = queue.submit(std::move(o), key); !r) {  // refused: the order comes back
      fmt::print("order {} was not accepted\n", r.rejected->id);
      return 1;
    }
  }
  if (!queue.wait_until_idle(5s)) return 1;

  auto m = queue.metrics();
  fmt::print(
      "first pass: {} orders charged, {} retries, {} dead-lettered, revenue ${:.2f}\n",
      m.succeeded, m.retried, m.dead_lettered, static_cast<double>(revenue) / 100);
  queue.dead_letters().for_each([](const auto& e) {
    fmt::print("  dead letter #{}: order {} ({} x {}) failed {} times: {}: {}\n", e.id,
               e.job.id, e.job.quantity, e.job.sku, e.attempts, e.error_type, e.error);
  });

  // A re-sent order is refused: its key already succeeded.
  const auto again = queue.submit(order{7, "pen", 1}, "order-7");
  fmt::print("re-sent order 7: {}\n", outgrow::to_string(again.status));

  // The fix: the catalog learns the SKU. Replay the dead letters (attempts reset).
  prices.add("gift-card", 2500);
  const auto replay = queue.dead_letters().replay_all(queue);
  fmt::print("after the fix: {}\n", replay);
  if (!queue.wait_until_idle(5s)) return 1;

  m = queue.metrics();
  fmt::print(
      "second pass: {} orders charged in all, dead-letter queue holds {}, "
      "revenue ${:.2f}\n",
      charged.load(), queue.dead_letters().size(), static_cast<double>(revenue) / 100);
  using micros = std::chrono::duration<double, std::micro>;
  fmt::print("handler latency p50 {:.1f} us, p99 {:.1f} us; {} attempts for {} orders\n",
             micros(m.latency_p50).count(), micros(m.latency_p99).count(), m.processed,
             orders);

  const auto left = queue.stop(1s);  // nothing left: everything ran
  fmt::print("stopped with {} jobs handed back\n", left.size());
  return charged == orders && left.empty() && queue.dead_letters().empty() ? 0 : 1;
}
