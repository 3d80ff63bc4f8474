// examples/live_shop/scaler.cpp — the live shop's autoscaler: app processes on demand.
//
// What it shows: the textbook's horizontal scaling driven by a metric, as a real
// orchestrator does it. Every --interval-ms it scrapes the front's GET /metrics
// (front.cpp), turns the counter `front_requests` into requests/s, and feeds
// outgrow::autoscaler with a Kubernetes-style target_tracking policy ("rps", a total
// for the service, --target-rps per app instance: desired = ceil(rps / target), within
// a 10 % tolerance; scale-up at once, scale-down after --scale-down-window-ms of
// stabilization). The actuator starts and stops REAL live_shop_app processes
// (app.cpp), and the front learns about them without dropping a request:
//  - scale up: fork/exec a new app (`--id app-K --port 0 --port-file DIR/app-K.port`,
//    K = 1, 2, 3 ... never reused, its output in DIR/app-K.log), wait for its port file
//    and GET /health 200, then `POST /admin/upstreams?add=127.0.0.1:PORT` on the front
//    (in rotation at once, ramped up by the front's slow start);
//  - scale down: the newest instances go first: `POST /admin/upstreams?drain=ADDR`
//    (the front answers once the instance's in-flight requests ended, or after
//    --drain-timeout-ms), then SIGTERM, and SIGKILL after 3 s;
//  - an app that dies on its own (SIGKILLed by the demo): logged, drained out of the
//    front, and replaced at once so the running count is what the autoscaler last
//    decided (an app that dies before it was ready is replaced at the next interval,
//    so a broken command line does not turn into a fork loop). /status counts them.
// Each evaluation logs one line on stdout (`t=12.3s rps=431.0 ready=2 starting=0
// desired=3 up: rps 431/150: ratio 1.437 -> 3 replicas`), each start, join, drain,
// stop and death another (`t=14.1s app-3 ...`).
//
// Run (a front with no upstream, Redis on 6379):
//   live_shop_front --port 8080 &
//   live_shop_scaler --front 127.0.0.1:8080 --app-bin ./live_shop_app --dir /tmp/shop
//       --port 8079 -- --redis 127.0.0.1:6379            (one command line)
//   wrk -t2 -c8 -d30s http://127.0.0.1:8080/product/42  # watch it scale up, then down
//   curl 127.0.0.1:8079/status     # desired=3 ready=2 starting=1 draining=0 rps=431.2
//                                  # replaced=0   (one line)
//   curl 127.0.0.1:8079/instances  # app-3 127.0.0.1:41234 pid=1234 state=ready
//   curl 127.0.0.1:8080/admin/upstreams
// Options: --front HOST:PORT and --app-bin PATH (the live_shop_app to run) and --dir DIR
// (port files and logs; created if missing) are required. --port 0 picks a free port,
// written to --port-file FILE once the first --min apps are in the front's rotation;
// --min N (2) and --max N (6) bound the app count; --target-rps N (150) is the
// requests/s one app should take; --interval-ms N (1000) the scrape and evaluation
// period; --scale-down-window-ms N (10000) the scale-down stabilization window;
// --drain-timeout-ms N (5000) how long a drain may take before the app is stopped
// anyway. Everything after `--` is appended to every app's command line (--redis,
// --pg-primary, --pg-replica, --payment ...). It binds 127.0.0.1 only. SIGTERM or
// SIGINT stops every app (SIGTERM, then SIGKILL) and exits 0; the apps also die with
// the scaler if it is killed (PR_SET_PDEATHSIG), and run in their own process group
// (a Ctrl-C in the terminal reaches the scaler only, which stops them).
//
// HTTP (plain text): GET /health "ok"; GET /status one line `desired=N ready=N
// starting=N draining=N rps=X.X replaced=N`; GET /instances one line per app
// `app-3 127.0.0.1:PORT pid=1234 state=starting|ready|draining` (PORT is 0 until the
// app wrote its port file).
//
// Threads: one per app instance (it forks the app — PR_SET_PDEATHSIG fires when the
// forking thread ends, and this one lives as long as its app —, waits for it to listen,
// joins it to the front, watches it with waitpid, drains and stops it); one control
// thread (scrape, autoscaler tick, the actuator, replacements); one waiting for
// SIGTERM/SIGINT (sigwait); the HTTP listener's threads (http.hpp). Shared state sits
// under one mutex, never held across an HTTP call, a waitpid or a sleep.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <outgrow/autoscale/autoscaler.hpp>
#include <outgrow/autoscale/scaling_behavior.hpp>
#include <outgrow/autoscale/target_tracking.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "http.hpp"
#include "process.hpp"

using namespace std::chrono_literals;
namespace http = live_shop::http;
namespace fs = std::filesystem;

namespace {

struct options {
  live_shop::address front;
  std::string app_bin;
  fs::path dir;
  unsigned short port = 0;
  std::string port_file;
  int min_apps = 2;
  int max_apps = 6;
  double target_rps = 150;
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds scale_down_window{10000};
  std::chrono::milliseconds drain_timeout{5000};
  std::vector<std::string> app_args;  // after `--`
};

options parse(int argc, char** argv) {
  const live_shop::command_line cli(
      "live_shop_scaler",
      "--front HOST:PORT --app-bin PATH --dir DIR [--port N] [--port-file FILE] "
      "[--min N] [--max N] [--target-rps N] [--interval-ms N] [--scale-down-window-ms N] "
      "[--drain-timeout-ms N] [-- ARGS FOR EVERY APP...]");
  int own = argc;  // the scaler's options end at `--`
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--") {
      own = i;
      break;
    }
  }
  options o;
  bool have_front = false;
  cli.parse(own, argv, [&](std::string_view name, const std::string& value) {
    if (name == "--front") {
      o.front = cli.where(name, value);
      have_front = true;
    } else if (name == "--app-bin") {
      o.app_bin = value;
    } else if (name == "--dir") {
      o.dir = value;
    } else if (name == "--port") {
      o.port = static_cast<unsigned short>(cli.number(name, value, 0, 65535));
    } else if (name == "--port-file") {
      o.port_file = value;
    } else if (name == "--min") {
      o.min_apps = static_cast<int>(cli.number(name, value, 1, 64));
    } else if (name == "--max") {
      o.max_apps = static_cast<int>(cli.number(name, value, 1, 64));
    } else if (name == "--target-rps") {
      o.target_rps = static_cast<double>(cli.number(name, value, 1, 10'000'000));
    } else if (name == "--interval-ms") {
      o.interval = std::chrono::milliseconds(cli.number(name, value, 50, 60'000));
    } else if (name == "--scale-down-window-ms") {
      o.scale_down_window = cli.millis(name, value);
    } else if (name == "--drain-timeout-ms") {
      o.drain_timeout = cli.millis(name, value, 1);
    } else {
      return false;
    }
    return true;
  });
  for (int i = own + 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--id" || a == "--port" || a == "--port-file") {
      cli.fail(
          fmt::format("{} after --: the scaler gives every app its own --id, --port "
                      "and --port-file",
                      a));
    }
    o.app_args.emplace_back(a);
  }
  if (!have_front) cli.fail("--front HOST:PORT is required");
  if (o.app_bin.empty()) cli.fail("--app-bin PATH is required");
  if (::access(o.app_bin.c_str(), X_OK) != 0) {
    cli.fail(fmt::format("--app-bin '{}' is not an executable file", o.app_bin));
  }
  o.app_bin = fs::absolute(o.app_bin).string();
  if (o.dir.empty()) cli.fail("--dir DIR is required");
  std::error_code ec;
  fs::create_directories(o.dir, ec);
  if (!fs::is_directory(o.dir, ec)) {
    cli.fail(
        fmt::format("--dir '{}' is not a directory and cannot be created", o.dir.string()));
  }
  if (o.min_apps > o.max_apps) {
    cli.fail(fmt::format("--min ({}) must not exceed --max ({})", o.min_apps, o.max_apps));
  }
  return o;
}

const auto started_at = std::chrono::steady_clock::now();

double seconds_since_start() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at)
      .count();
}

// One line on stdout, prefixed by the time since start; flushed (stdout is often a
// file the demo reads). One fwrite per line: lines of different threads never mix.
template <class... Args>
void say(fmt::format_string<Args...> f, Args&&... args) {
  std::string line = fmt::format("t={:.1f}s ", seconds_since_start());
  fmt::format_to(std::back_inserter(line), f, std::forward<Args>(args)...);
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) {
    return fmt::format("killed by signal {} ({})", WTERMSIG(status),
                       ::strsignal(WTERMSIG(status)));
  }
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  return "stopped";
}

// The exit status once `pid` has ended (reaped), nullopt while it runs.
std::optional<int> reaped(pid_t pid) {
  int status = 0;
  const pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == pid) return status;
  if (r < 0) return 0;  // not our child any more (cannot happen: one reaper per pid)
  return std::nullopt;
}

// SIGTERM, then SIGKILL after 3 s; reaps it. Returns the exit status.
int terminate(pid_t pid) {
  ::kill(pid, SIGTERM);
  const auto give_up = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < give_up) {
    if (const auto status = reaped(pid)) return *status;
    std::this_thread::sleep_for(10ms);
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

std::optional<unsigned short> read_port_file(const fs::path& path) {
  std::ifstream in(path);
  unsigned port = 0;
  if (!(in >> port) || port == 0 || port > 65535) return std::nullopt;
  return static_cast<unsigned short>(port);
}

// One request on a fresh connection; nullopt on a transport error or timeout.
std::optional<live_shop::response> call(const live_shop::address& where, http::verb verb,
                                        const std::string& target,
                                        std::chrono::milliseconds timeout) {
  live_shop::client_connection c(where, timeout);
  live_shop::request req{verb, live_shop::to_beast(target), 11};
  req.keep_alive(false);
  if (verb == http::verb::post) req.prepare_payload();
  live_shop::response res;
  bool reused = false;
  if (c.exchange(req, res, reused)) return std::nullopt;
  return res;
}

// The value of the sample `name` (no labels) in Prometheus text, if present.
std::optional<double> prometheus_sample(std::string_view text, std::string_view name) {
  while (!text.empty()) {
    const auto nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    if (line.size() > name.size() && line.starts_with(name) && line[name.size()] == ' ') {
      const std::string_view v = line.substr(name.size() + 1);
      double value = 0;
      const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
      if (ec == std::errc{}) return value;
      return std::nullopt;
    }
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return std::nullopt;
}

enum class app_state { starting, ready, draining };

std::string_view to_string(app_state s) {
  switch (s) {
    case app_state::starting:
      return "starting";
    case app_state::ready:
      return "ready";
    case app_state::draining:
      return "draining";
  }
  return "unknown";
}

// What its supervising thread is asked to do.
enum class stop_kind { none, drain, shutdown };

struct app {
  int number = 0;
  std::string id;  // app-K
  pid_t pid = 0;
  unsigned short port = 0;
  app_state state = app_state::starting;
  stop_kind stop = stop_kind::none;
};

class scaler {
 public:
  explicit scaler(const options& opt) : opt_(opt), autoscaler_(make_config(opt)) {
    outgrow::scaling_behavior behavior;  // scale up: the HPA default (+100 % or +4 / 15 s)
    behavior.scale_down.stabilization_window = opt.scale_down_window;
    // Loose: down to --min in one step once the window has passed.
    behavior.scale_down.policies = {{outgrow::rate_limit_type::percent, 100, opt.interval}};
    autoscaler_.add_policy(outgrow::target_tracking(
        {.metrics = {{"rps", opt.target_rps, outgrow::metric_target_type::total}},
         .behavior = behavior}));
    autoscaler_.on_scale([this](const outgrow::scaling_decision& d) {
      std::lock_guard lock(mutex_);
      desired_ = d.desired;
      reconcile_locked();
    });
  }

  /// Starts --min apps and waits until all are in the front's rotation. False (after
  /// stopping them) when one died first or they were not ready within 60 s.
  bool start() {
    std::unique_lock lock(mutex_);
    desired_ = opt_.min_apps;
    reconcile_locked();
    const bool ok = changed_.wait_for(lock, 60s, [this] {
      return start_failures_ > 0 || count(app_state::ready) == opt_.min_apps;
    });
    if (ok && start_failures_ == 0) return true;
    lock.unlock();
    say("the first {} apps did not all start: giving up (see {}/app-*.log)", opt_.min_apps,
        opt_.dir.string());
    shutdown(5s);
    return false;
  }

  /// The control loop: scrape, evaluate, act; replacements as soon as an app died.
  void run() {
    live_shop::client_connection front(
        opt_.front, std::min(opt_.interval, std::chrono::milliseconds(1000)));
    scrape(front);  // the baseline for the first rate
    auto next = std::chrono::steady_clock::now() + opt_.interval;
    std::unique_lock lock(mutex_);
    while (!shutting_down_) {
      changed_.wait_until(lock, next, [this] { return replace_now_ || shutting_down_; });
      if (shutting_down_) break;
      if (replace_now_) {
        replace_now_ = false;
        reconcile_locked();
      }
      if (std::chrono::steady_clock::now() < next) continue;
      lock.unlock();
      try {
        evaluate(front);
      } catch (const std::exception& e) {  // no thread for a new app: try next time
        say("evaluation failed: {}", e.what());
      }
      lock.lock();
      next += opt_.interval;
      const auto now = std::chrono::steady_clock::now();
      if (next < now) next = now + opt_.interval;  // fell behind: no burst of ticks
    }
  }

  /// Stops every app (SIGTERM, then SIGKILL); waits for them at most `bound`, then
  /// SIGKILLs what is left.
  void shutdown(std::chrono::milliseconds bound) {
    std::unique_lock lock(mutex_);
    shutting_down_ = true;
    for (const auto& a : apps_) a->stop = stop_kind::shutdown;
    changed_.notify_all();
    if (!changed_.wait_for(lock, bound, [this] { return apps_.empty(); })) {
      for (const auto& a : apps_) {
        if (a->pid > 0) ::kill(a->pid, SIGKILL);
      }
    }
  }

  std::size_t app_count() {
    std::lock_guard lock(mutex_);
    return apps_.size();
  }

  live_shop::response handle(const live_shop::request& req) {
    const std::string_view target = live_shop::target_of(req);
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      return live_shop::reply(req, http::status::method_not_allowed, "GET only\n");
    }
    if (target == "/health") return live_shop::reply(req, http::status::ok, "ok\n");
    std::lock_guard lock(mutex_);
    if (target == "/status") {
      return live_shop::reply(
          req, http::status::ok,
          fmt::format(
              "desired={} ready={} starting={} draining={} rps={:.1f} replaced={}\n",
              desired_, count(app_state::ready), count(app_state::starting),
              count(app_state::draining), rps_, replaced_));
    }
    if (target == "/instances") {
      std::string body;
      for (const auto& a : apps_) {
        body += fmt::format("{} 127.0.0.1:{} pid={} state={}\n", a->id, a->port, a->pid,
                            to_string(a->state));
      }
      return live_shop::reply(req, http::status::ok, body);
    }
    return live_shop::reply(req, http::status::not_found, "not found\n");
  }

 private:
  static outgrow::autoscaler_config make_config(const options& opt) {
    // A rate older than three intervals (the front stopped answering) is missing: the
    // autoscaler holds rather than scale down blind. History: enough for a 1 h window.
    return {.min_replicas = opt.min_apps,
            .max_replicas = opt.max_apps,
            .stale_after = 3 * opt.interval,
            .history = std::chrono::hours{2}};
  }

  // front_requests now; the rate since the previous scrape into the autoscaler.
  void scrape(live_shop::client_connection& front) {
    const auto now = std::chrono::steady_clock::now();
    const auto res = front.get("/metrics");
    std::optional<double> total;
    if (res && res->result() == http::status::ok) {
      total = prometheus_sample(res->body(), "front_requests");
    }
    if (!total) {
      if (!scrape_failed_)
        say("front {}: no front_requests in GET /metrics", opt_.front.str());
      scrape_failed_ = true;
      return;
    }
    scrape_failed_ = false;
    if (last_total_ && *total >= *last_total_ && now > last_scrape_) {
      const double rate = (*total - *last_total_) /
                          std::chrono::duration<double>(now - last_scrape_).count();
      autoscaler_.observe("rps", rate, now);
      std::lock_guard lock(mutex_);
      rps_ = rate;
    }  // else the first scrape, or the front restarted: a new baseline
    last_total_ = total;
    last_scrape_ = now;
  }

  void evaluate(live_shop::client_connection& front) {
    scrape(front);
    int ready = 0;
    int starting = 0;
    double rps = 0;
    {
      std::lock_guard lock(mutex_);
      reconcile_locked();  // apps that failed to start since the last interval
      ready = count(app_state::ready);
      starting = count(app_state::starting);
      rps = rps_;
    }
    autoscaler_.set_replicas(ready + starting, starting);
    const outgrow::scaling_decision d = autoscaler_.tick();  // calls the actuator
    std::string limit;
    if (d.limited_by != outgrow::scale_limit::none) {
      limit = fmt::format(" (limited by {})", outgrow::to_string(d.limited_by));
    }
    say("rps={:.1f} ready={} starting={} desired={} {}: {}{}", rps, ready, starting,
        d.desired, outgrow::to_string(d.direction()), d.reason.view(), limit);
  }

  [[nodiscard]] int count(app_state s) const {
    return static_cast<int>(std::count_if(apps_.begin(), apps_.end(),
                                          [s](const auto& a) { return a->state == s; }));
  }

  // Starts or stops apps until the running ones (starting or ready) are desired_.
  void reconcile_locked() {
    if (shutting_down_) return;
    int running = count(app_state::starting) + count(app_state::ready);
    for (; running < desired_; ++running) {
      auto a = std::make_shared<app>();
      a->number = next_number_++;
      a->id = fmt::format("app-{}", a->number);
      try {
        // It touches the list only under the lock we hold: pushed before it can finish.
        std::thread supervisor([this, a] { supervise(a); });
        apps_.push_back(a);
        supervisor.detach();
      } catch (const std::system_error& e) {  // no thread: try again at the next call
        say("{} not started: {}", a->id, e.what());
        break;
      }
      if (pending_replacements_ > 0) {
        --pending_replacements_;
        ++replaced_;
      }
    }
    pending_replacements_ = 0;  // deaths the autoscaler no longer wants replaced
    // Too many: the newest go first (the last started are the least warmed up).
    for (auto it = apps_.rbegin(); it != apps_.rend() && running > desired_; ++it) {
      app& a = **it;
      if (a.state == app_state::draining) continue;
      a.state = app_state::draining;
      a.stop = stop_kind::drain;
      --running;
    }
    changed_.notify_all();
  }

  // The life of one app, on its own thread: start it, join it to the front, watch it,
  // drain and stop it.
  void supervise(const std::shared_ptr<app>& a) {
    const fs::path port_file = opt_.dir / (a->id + ".port");
    const fs::path log_file = opt_.dir / (a->id + ".log");
    std::error_code ignored;
    fs::remove(port_file, ignored);  // left by an earlier run
    std::vector<std::string> args{
        opt_.app_bin, "--id", a->id, "--port", "0", "--port-file", port_file.string()};
    args.insert(args.end(), opt_.app_args.begin(), opt_.app_args.end());
    // Appended: a log survives its app; its own process group: a Ctrl-C reaches the
    // scaler only, which stops the apps in order.
    const pid_t pid = live_shop::spawn(std::move(args), log_file,
                                       {.append_log = true, .own_process_group = true});
    if (pid < 0) {
      say("{} could not be started: {}", a->id, std::strerror(errno));
      finish(a, /*crashed=*/true, /*was_ready=*/false);
      return;
    }
    {
      std::lock_guard lock(mutex_);
      a->pid = pid;
    }
    say("{} started, pid={}", a->id, pid);

    // Starting: port file, /health, then into the front's rotation.
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    std::optional<live_shop::address> where;
    bool healthy = false;
    for (;;) {
      if (const auto status = reaped(pid)) {
        say("{} pid={} {} before it was ready (see {})", a->id, pid, describe_exit(*status),
            log_file.string());
        finish(a, true, false);
        return;
      }
      if (stop_requested(*a) != stop_kind::none) {
        const int status = terminate(pid);
        say("{} pid={} stopped before it was ready ({})", a->id, pid,
            describe_exit(status));
        finish(a, false, false);
        return;
      }
      if (std::chrono::steady_clock::now() > give_up) {
        const int status = terminate(pid);
        say("{} pid={} not ready within 30 s: stopped ({})", a->id, pid,
            describe_exit(status));
        finish(a, true, false);
        return;
      }
      if (!where) {
        if (const auto port = read_port_file(port_file)) {
          where = live_shop::address{"127.0.0.1", *port};
          std::lock_guard lock(mutex_);
          a->port = *port;
        }
      } else if (!healthy) {
        const auto res = call(*where, http::verb::get, "/health", 500ms);
        healthy = res && res->result() == http::status::ok;
      } else {
        // Only 200 counts: a 409 means the address is still a member (the port of an
        // app that died and is being drained, reused by this one): try again.
        const auto res = call(opt_.front, http::verb::post,
                              "/admin/upstreams?add=" + where->str(), 1000ms);
        if (res && res->result() == http::status::ok) break;
      }
      wait_for_stop(*a, where && healthy ? 200ms : 20ms);
    }
    say("{} ready at {}, in the front's rotation", a->id, where->str());
    {
      std::lock_guard lock(mutex_);
      if (a->state == app_state::starting) a->state = app_state::ready;
      changed_.notify_all();
    }

    // Running, until it dies or is asked to stop.
    stop_kind stop = stop_kind::none;
    for (;;) {
      if (const auto status = reaped(pid)) {
        say("{} pid={} {}: draining it from the front, replacing it", a->id, pid,
            describe_exit(*status));
        {
          std::lock_guard lock(mutex_);
          a->state = app_state::draining;
          ++pending_replacements_;
          replace_now_ = true;
          changed_.notify_all();
        }
        drain(*a, *where);
        finish(a, true, true);
        return;
      }
      stop = wait_for_stop(*a, 100ms);
      if (stop != stop_kind::none) break;
    }
    if (stop == stop_kind::drain) drain(*a, *where);
    const int status = terminate(pid);
    say("{} pid={} stopped ({})", a->id, pid, describe_exit(status));
    finish(a, false, true);
  }

  void drain(const app& a, const live_shop::address& where) {
    say("{} draining: POST /admin/upstreams?drain={}", a.id, where.str());
    const auto res = call(opt_.front, http::verb::post,
                          "/admin/upstreams?drain=" + where.str(), opt_.drain_timeout);
    if (!res) {
      say("{} drain: no answer from the front within {} ms", a.id,
          opt_.drain_timeout.count());
    } else if (res->result() != http::status::ok) {
      say("{} drain: front answered {} {}", a.id, res->result_int(), res->body());
    } else {
      std::string body = res->body();
      if (!body.empty() && body.back() == '\n') body.pop_back();
      say("{} {}", a.id, body);
    }
  }

  stop_kind stop_requested(const app& a) {
    std::lock_guard lock(mutex_);
    return a.stop;
  }

  stop_kind wait_for_stop(const app& a, std::chrono::milliseconds at_most) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, at_most, [&a] { return a.stop != stop_kind::none; });
    return a.stop;
  }

  // The app is gone (its process reaped): off the list.
  void finish(const std::shared_ptr<app>& a, bool crashed, bool was_ready) {
    std::lock_guard lock(mutex_);
    std::erase(apps_, a);
    if (crashed && !was_ready) {
      ++start_failures_;
      ++pending_replacements_;  // replaced at the next interval (no fork loop)
    }
    changed_.notify_all();
  }

  const options& opt_;
  outgrow::autoscaler<> autoscaler_;

  std::mutex mutex_;
  std::condition_variable changed_;         // apps' states, stop requests, deaths
  std::vector<std::shared_ptr<app>> apps_;  // in start order
  int desired_ = 0;
  int next_number_ = 1;
  int pending_replacements_ = 0;  // deaths not replaced yet
  int start_failures_ = 0;
  std::uint64_t replaced_ = 0;
  bool replace_now_ = false;
  bool shutting_down_ = false;
  double rps_ = 0.0;

  // The control thread's own.
  std::optional<double> last_total_;
  std::chrono::steady_clock::time_point last_scrape_{};
  bool scrape_failed_ = false;
};

}  // namespace

int main(int argc, char** argv) try {
  const options opt = parse(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // a peer that vanished is an error code, not a signal
  // SIGTERM and SIGINT are taken by one thread with sigwait: blocked here, before any
  // thread starts, so every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  live_shop::listener server(opt.port);
  static scaler s(opt);  // static: detached threads may still use it during _Exit
  std::thread([&stop_signals, &opt] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    say("{}: stopping {} apps", sig == SIGINT ? "SIGINT" : "SIGTERM", s.app_count());
    s.shutdown(opt.drain_timeout + 5s);
    say("stopped");
    std::fflush(stdout);
    std::_Exit(0);  // the listener's and the apps' threads are not joined
  }).detach();

  say("live_shop_scaler on 127.0.0.1:{}: front {}, {}..{} apps at {} rps each, "
      "starting {}",
      server.port(), opt.front.str(), opt.min_apps, opt.max_apps, opt.target_rps,
      opt.min_apps);
  if (!s.start()) {
    std::fflush(stdout);
    std::_Exit(1);  // the signal thread still waits; nothing to unwind
  }
  live_shop::write_port_file(opt.port_file, server.port());
  say("started: {} in the front's rotation; listening on 127.0.0.1:{}", opt.min_apps,
      server.port());
  std::thread([] { s.run(); }).detach();
  server.serve([](const live_shop::request& req) { return s.handle(req); });
} catch (const std::exception& e) {  // a port in use, a bad configuration
  fmt::print(stderr, "live_shop_scaler: {}\n", e.what());
  return 1;
}
