// outgrow/redis/detail/reply.hpp — ownership of hiredis contexts and replies.
//
// unique_ptr aliases that free a redisContext / redisReply with hiredis's own functions,
// and the three outcomes of a bounded read. Shared by every Redis part through
// redis/detail/connection.hpp.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <memory>

namespace outgrow::detail {

struct redis_context_free {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
/// An open hiredis connection; freeing it closes the socket.
using redis_context_ptr = std::unique_ptr<redisContext, redis_context_free>;

struct redis_reply_free {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
/// One reply (and its elements).
using redis_reply_ptr = std::unique_ptr<redisReply, redis_reply_free>;

/// Outcome of a bounded read: a reply, a transport failure (the connection is unusable),
/// or a reply larger than allowed (unread bytes remain: close the connection too).
enum class redis_io : std::uint8_t { ok, transport, too_large };

}  // namespace outgrow::detail
