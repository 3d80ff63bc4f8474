// outgrow/redis/detail/stream_keys.hpp — the Redis keys and names a redis_stream_queue
// derives from its config.
//
// One stream key names the whole queue: the consumer group, <stream>:dead (dead letters),
// <stream>:failures (last error of entries waiting for a retry), <stream>:stats (totals)
// and <stream>:done:<key> (completed idempotency keys) all derive from it. The config
// refuses stream names that end in, or contain, these suffixes (rsq_reserved_name), so no
// queue's key can equal another queue's. On a Redis Cluster the stream must carry a hash
// tag (rsq_has_hash_tag) so all of them share its slot. Also the default consumer name
// of a worker.
// No hiredis here.
#pragma once

#include <unistd.h>

#include <random>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace outgrow::detail {

/// The keys derived from a queue's stream and group.
struct rsq_keys {
  std::string stream, group, dead, failures, stats, done_prefix;
  rsq_keys(std::string_view stream_key, std::string_view group_name)
      : stream(stream_key),
        group(group_name),
        dead(stream + ":dead"),
        failures(stream + ":failures"),
        stats(stream + ":stats"),
        done_prefix(stream + ":done:") {}
};

/// True when `stream` could be, or could contain, a key that another queue derives from
/// its own stream: with these names refused, no two queues' keys can coincide.
inline bool rsq_reserved_name(std::string_view stream) noexcept {
  return stream.ends_with(":dead") || stream.ends_with(":failures") ||
         stream.ends_with(":stats") || stream.ends_with(":done") ||
         stream.find(":done:") != std::string_view::npos;
}

/// True when `stream` has a Redis Cluster hash tag: after its first '{' a '}' with at
/// least one byte between. Keys made by appending to it then hash like it (only the
/// tag is hashed), so every key a queue derives shares the stream's slot.
inline bool rsq_has_hash_tag(std::string_view stream) noexcept {
  const std::size_t open = stream.find('{');
  if (open == std::string_view::npos) return false;
  const std::size_t close = stream.find('}', open + 1);
  return close != std::string_view::npos && close > open + 1;
}

/// "<hostname>:<pid>:<8 random hex digits>": unique per worker object in practice.
inline std::string rsq_default_consumer() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  std::random_device rd;
  return fmt::format("{}:{}:{:08x}", host, ::getpid(), rd());
}

}  // namespace outgrow::detail
