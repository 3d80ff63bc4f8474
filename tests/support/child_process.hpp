// tests/support/child_process.hpp — a program a test starts and stops (the live shop's
// servers): the live shop's own child_process (examples/live_shop/process.hpp: fork/exec
// with its output in a log file, SIGTERM then SIGKILL and reaped by stop() or the
// destructor, killed with the test process by PDEATHSIG). A failure to start throws,
// which fails the test case.
#pragma once

#include "../../examples/live_shop/process.hpp"

namespace outgrow_test {

using child_process = live_shop::child_process;

}  // namespace outgrow_test
