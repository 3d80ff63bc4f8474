// examples/live_shop/process.hpp — starting and stopping the live shop's programs.
//
// spawn(): fork/exec with the output in a log file, the child dying with the thread
// that forked it (PR_SET_PDEATHSIG: a crashed parent leaves nothing running), default
// signal mask and SIGPIPE disposition restored (both survive exec), optionally in its
// own process group (a Ctrl-C in the terminal then reaches the parent only, which stops
// its children in order). child_process: one such program, SIGTERM then SIGKILL and
// reaped by stop() or the destructor. Used by the scaler (app instances), the demo (every
// server) and the live shop's tests. Not part of the library: a service gets its
// processes from its orchestrator.
//
// Linux only (prctl, close_range). Between fork and exec the child makes only
// async-signal-safe calls, so spawning from a multi-threaded program is safe.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace live_shop {

struct spawn_options {
  /// Append to the log (a restarted program keeps its history) instead of truncating.
  bool append_log = false;
  /// Its own process group (setpgid): terminal signals reach the parent only.
  bool own_process_group = false;
};

/// fork/exec of `args` (args[0] a path), stdout and stderr to `log`; the pid, or -1 when
/// the log cannot be opened or fork fails (an exec failure shows as exit status 127).
inline pid_t spawn(std::vector<std::string> args, const std::filesystem::path& log,
                   spawn_options options = {}) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int flags =
      O_WRONLY | O_CREAT | O_CLOEXEC | (options.append_log ? O_APPEND : O_TRUNC);
  const int log_fd = ::open(log.c_str(), flags, 0644);
  if (log_fd < 0) return -1;
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before the prctl
    if (options.own_process_group) ::setpgid(0, 0);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &dfl, nullptr);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::close_range(3, ~0U, 0);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(log_fd);
  return pid;
}

/// One program started with spawn(); stopped (SIGTERM, SIGKILL after `grace`) and reaped
/// by stop() or the destructor. Not thread-safe: one owner.
class child_process {
 public:
  /// Throws: std::runtime_error when it cannot be started.
  child_process(std::vector<std::string> args, std::filesystem::path log,
                spawn_options options = {})
      : log_(std::move(log)) {
    const std::string program = args.empty() ? std::string() : args.front();
    pid_ = spawn(std::move(args), log_, options);
    if (pid_ <= 0) throw std::runtime_error("cannot start " + program);
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process() { stop(); }

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] const std::filesystem::path& log_path() const noexcept { return log_; }

  /// True while it runs; once it has ended it is reaped (exit_status() then tells how).
  [[nodiscard]] bool running() noexcept {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == 0) return true;
    reaped(status);
    return false;
  }
  /// Waits until it ends; its exit status (128 + the signal when killed).
  int wait() noexcept {
    if (pid_ > 0) {
      int status = 0;
      ::waitpid(pid_, &status, 0);
      reaped(status);
    }
    return exit_status_;
  }
  /// The exit status once reaped (128 + signal when killed), -1 before.
  [[nodiscard]] int exit_status() const noexcept { return exit_status_; }

  /// SIGKILL: a crash.
  void kill_now() noexcept {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    wait();
  }
  void stop(std::chrono::milliseconds grace = std::chrono::seconds{3}) noexcept {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
      if (!running()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    kill_now();
  }

  /// The program's output so far.
  [[nodiscard]] std::string log() const {
    std::ifstream in(log_);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

 private:
  void reaped(int status) noexcept {
    pid_ = -1;
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  std::filesystem::path log_;
  pid_t pid_ = -1;
  int exit_status_ = -1;
};

}  // namespace live_shop
