// distributed_queue: a work queue on Redis Streams. 2 producer processes enqueue
// 2,000 jobs (1 % poison), 3 worker processes run them; prints throughput, metrics, dead
// letters. Uses --redis host:port, or starts redis-server on a free loopback port (none:
// exit 0).
#include <outgrow/redis/redis_stream_queue.hpp>

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "redis_process.hpp"

using namespace std::chrono_literals;
using job_queue = outgrow::redis_stream_queue<std::int64_t>;
using job_worker = outgrow::redis_stream_worker<std::int64_t>;

constexpr std::int64_t total_jobs = 2'000;
std::atomic<job_worker*> current_worker{nullptr};

pid_t spawn(auto body) {  // a child process that dies with its parent
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    body();
    std::fflush(stdout);
    std::_Exit(0);
  }
  return pid;
}

std::string find_redis_server() {  // on PATH
  const char* path = std::getenv("PATH");
  std::string dirs = std::string(path != nullptr ? path : "/usr/bin") + ":";
  for (std::size_t at = 0, end; (end = dirs.find(':', at)) != std::string::npos;
       at = end + 1) {
    const auto exe = std::filesystem::path(dirs.substr(at, end - at)) / "redis-server";
    if (::access(exe.c_str(), X_OK) == 0) return exe.string();
  }
  return {};
}

int main(int argc, char** argv) {
  outgrow::redis_stream_queue_config config{
      .connection = {.connect_timeout = 500ms, .command_timeout = 1s},
      .stream = fmt::format("outgrow:example:{}", ::getpid()),
      .max_attempts = 3,
      .visibility_timeout = 5s,
      .retry_delay = 10ms,
      .block_timeout = 20ms,
      .claim_interval = 10ms,
      .idempotency_ttl = 1min};
  pid_t server = -1;
  if (argc == 3 && std::string(argv[1]) == "--redis") {
    const std::string where = argv[2];
    config.connection.host = where.substr(0, where.rfind(':'));
    config.connection.port = std::atoi(where.substr(where.rfind(':') + 1).c_str());
  } else {
    const std::string exe = find_redis_server();
    if (exe.empty()) {
      fmt::print("redis-server not found on PATH (or pass --redis host:port); skipping\n");
      return 77;  // "skipped" (the smoke test reports it so, never as passed)
    }
    config.connection.port = example::free_port();
    const std::string port = std::to_string(config.connection.port);
    server = spawn([&] {
      ::execl(exe.c_str(), exe.c_str(), "--port", port.c_str(), "--bind", "127.0.0.1",
              "--save", "", "--appendonly", "no", "--logfile", "/dev/null", nullptr);
    });
  }
  job_queue queue(config);
  for (int i = 0; i < 200 && !queue.metrics(); ++i) std::this_thread::sleep_for(10ms);
  if (!queue.metrics()) {
    fmt::print("no Redis at {}:{}\n", config.connection.host, config.connection.port);
    return 1;
  }

  const auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> workers;
  for (int w = 0; w < 3; ++w) {
    workers.push_back(spawn([&] {
      config.consumer = fmt::format("worker-{}", w);
      const std::string counter = config.stream + ":done-count";
      job_worker worker(config, [&](std::int64_t& id, outgrow::redis_job_context& ctx) {
        if (id % 100 == 42) throw std::runtime_error(fmt::format("order {} is poison", id));
        ctx.commit({"INCR", counter});  // with the acknowledgement, once per key
      });
      current_worker = &worker;
      ::signal(SIGTERM, [](int) { current_worker.load()->request_stop(); });
      worker.run();
      fmt::print("  {}: {}\n", worker.consumer(), worker.metrics());
    }));
  }
  std::vector<pid_t> producers;
  for (std::int64_t p = 0; p < 2; ++p) {
    producers.push_back(spawn([&] {
      job_queue q(config);
      for (std::int64_t id = p; id < total_jobs; id += 2) {
        if (!q.enqueue(id, std::to_string(id))) std::_Exit(1);
      }
    }));
  }
  for (const pid_t p : producers) ::waitpid(p, nullptr, 0);

  outgrow::redis_stream_queue_metrics m{};
  for (int i = 0; i < 1000; ++i) {  // wait (at most 10 s) until every job is settled
    m = queue.metrics().value_or(m);
    if (m.completed + m.dead_lettered >= static_cast<std::uint64_t>(total_jobs)) break;
    std::this_thread::sleep_for(10ms);
  }
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  fmt::print("workers (3 processes):\n");
  std::fflush(stdout);
  for (const pid_t w : workers) ::kill(w, SIGTERM);
  for (const pid_t w : workers) ::waitpid(w, nullptr, 0);
  fmt::print(
      "{} jobs from 2 producer processes on {}:{}, settled in {:.3f} s: {:.0f} jobs/s\n",
      total_jobs, config.connection.host, config.connection.port, took.count(),
      total_jobs / took.count());
  fmt::print("{}\ndead letters:\n", m);
  queue.dead_letters().for_each([](const auto& e) {
    fmt::print("  {} job={} attempts={} error=\"{}\" ({})\n", e.id, e.job.value_or(-1),
               e.attempts, e.error, e.error_type);
  });
  queue.dead_letters().purge_all();  // leave a shared Redis clean
  if (server > 0) ::kill(server, SIGTERM);
  if (server > 0) ::waitpid(server, nullptr, 0);
  return m.completed + m.dead_lettered == static_cast<std::uint64_t>(total_jobs) ? 0 : 1;
}
