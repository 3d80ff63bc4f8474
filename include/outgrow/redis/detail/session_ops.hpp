// outgrow/redis/detail/session_ops.hpp — the operations of session_store, out of line.
//
// The member functions of outgrow::session_store that build keys, run a script of
// session_scripts.hpp through session_link.hpp and turn its reply into a result; kept
// apart so that redis/session_store.hpp reads as the interface. Included at the end of
// session_store.hpp (and includes it: either order works). The semantics are documented
// in session_store.hpp.
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include <outgrow/core/error.hpp>
#include <outgrow/redis/codec.hpp>
#include <outgrow/redis/detail/session_keys.hpp>
#include <outgrow/redis/detail/session_link.hpp>
#include <outgrow/redis/session_store.hpp>

namespace outgrow {

template <class Data, class Codec, clock_source Clock>
requires redis_codec<Codec, Data>
session_store_config session_store<Data, Codec, Clock>::validated(session_store_config c) {
  using namespace std::chrono_literals;
  constexpr std::string_view who = "session_store";
  detail::validate_connection(who, c.connection);
  require_in_range(who, "key_prefix (bytes)", c.key_prefix.size(), std::size_t{0},
                   max_key_prefix_size);  // first: the next message quotes the prefix
  require((c.key_prefix.empty() || c.key_prefix.back() == ':') &&
              c.key_prefix.find_first_of("{}") == std::string::npos,
          who, "key_prefix", "empty or ending with ':', without '{' or '}'",
          fmt::format("\"{}\"", c.key_prefix));
  const std::chrono::nanoseconds most = 366 * 24h;
  require_in_range(who, "idle_timeout", c.idle_timeout, std::chrono::nanoseconds{1ms},
                   most);
  require_in_range(who, "absolute_lifetime", c.absolute_lifetime, c.idle_timeout, most);
  if (c.max_sessions_per_user) {
    require_in_range(who, "max_sessions_per_user", *c.max_sessions_per_user, std::size_t{1},
                     std::size_t{1'000'000});
  }
  require_in_range(who, "pool_size", c.pool_size, std::size_t{1}, std::size_t{1024});
  if (c.pool_timeout) {
    require_in_range(who, "pool_timeout", *c.pool_timeout, std::chrono::nanoseconds{0},
                     std::chrono::nanoseconds{1h});
  }
  require_in_range(who, "max_value_size", c.max_value_size, std::size_t{1},
                   std::size_t{512} << 20);
  require_in_range(who, "l1_capacity", c.l1_capacity, std::size_t{0},
                   std::size_t{10'000'000});
  if (c.l1_capacity == 0) {
    require(c.l1_ttl == session_store_config{}.l1_ttl, who, "l1_ttl",
            "left at its default (1s) while l1_capacity is 0", c.l1_ttl);
  } else {
    require(std::is_copy_constructible_v<Data>, who, "l1_capacity",
            "0 for a Data type that cannot be copied", c.l1_capacity);
    require(c.connection.cluster.nodes.empty(), who, "l1_capacity",
            "0 with connection.cluster (tracking is per node)", c.l1_capacity);
    require(c.idle_timeout >= 4ms, who, "idle_timeout",
            "at least 4ms while l1_capacity > 0 (l1_ttl must fit in [1ms, idle_timeout / "
            "4])",
            c.idle_timeout);
    require_in_range(who, "l1_ttl", c.l1_ttl, std::chrono::nanoseconds{1ms},
                     c.idle_timeout / 4);
  }
  return c;
}

template <class Data, class Codec, clock_source Clock>
requires redis_codec<Codec, Data>
session_result<session_id> session_store<Data, Codec, Clock>::create_impl(
    std::string_view user, const Data& data) noexcept {
  try {
    std::string value, tag, base, index;
    if (!valid_user(user) || !encode(data, value)) return {session_status::rejected};
    user_keys(user, tag, base, index);
    std::int64_t evicted = 0;
    auto r = with_fresh_id(
        tag, base, [&](std::string_view id, std::string_view key, std::int64_t& code) {
          const std::string_view args[] = {
              key,          index,        base, detail::session_id_secret(id),
              idle_ms_,     absolute_ms_, user, value,
              max_per_user_};
          return run_coded(script::create, 2, args, code,
                           [&](const redisReply& reply, std::int64_t c) {
                             if (c != 1) return true;
                             const auto e = detail::session_int(reply, 3);
                             evicted = e.value_or(0);
                             return e.has_value();
                           });
        });
    if (r) {
      created_.add();
      evicted_.add(static_cast<std::uint64_t>(evicted));
    }
    return r;
  } catch (...) {
    return {session_status::unavailable};
  }
}

template <class Data, class Codec, clock_source Clock>
requires redis_codec<Codec, Data>
session_result<session<Data>> session_store<Data, Codec, Clock>::get_impl(
    std::string_view id, l1_fill* fill) noexcept {
  return on_id<session_type>(
      id, [&](std::string_view base, std::string_view key, std::string_view secret) {
        const std::string_view args[] = {key,      base,         secret,
                                         idle_ms_, absolute_ms_, min_slide_ms_};
        session_result<session_type> out;
        const status st = link_.eval(script::get, 1, args, [&](const redisReply& r) {
          const auto c = code_of(r);
          if (!c) return status::server;
          out.status = status_of(*c);
          if (*c != 1) return status::ok;
          const auto user = detail::session_str(r, 1);
          const auto version = detail::session_int(r, 2);
          const auto created = detail::session_int(r, 3);
          const auto expires = detail::session_int(r, 4);
          const auto bytes = detail::session_str(r, 5);
          if (!user || !version || !created || !expires || !bytes) return status::server;
          // The L1's extra fields (server time, slid); without an L1, a neutral 0.
          const std::optional<std::int64_t> none{0};
          const auto now = fill != nullptr ? detail::session_int(r, 6) : none;
          const auto slid = fill != nullptr ? detail::session_int(r, 7) : none;
          if (!now || !slid) return status::server;
          // Times system_clock cannot hold (the script refuses a `created` in the
          // future; this also guards the conversion) are corrupt, never converted.
          const auto created_at = server_time(*created);
          const auto expires_at = server_time(*expires);
          const auto now_at = server_time(*now);
          if (!created_at || !expires_at || !now_at) {
            out.status = session_status::corrupt;
            return status::ok;
          }
          if (fill != nullptr) {
            fill->now = *now_at;
            fill->slid = *slid != 0;
          }
          std::string tag;
          detail::session_append_tag(*user, tag);
          auto data =
              tag == detail::session_id_tag(id)  // a user of this id's slot
                  ? detail::redis_decode_value<Data>(codec_, *bytes, config_.max_value_size)
                  : std::nullopt;
          if (!data) {
            out.status = session_status::corrupt;
            return status::ok;
          }
          out.value.emplace(session_type{std::move(*data), std::string(*user),
                                         static_cast<std::uint64_t>(*version), *created_at,
                                         *expires_at});
          return status::ok;
        });
        if (st != status::ok) return session_result<session_type>{failed(st)};
        return out;
      });
}

template <class Data, class Codec, clock_source Clock>
requires redis_codec<Codec, Data>
session_result<session<Data>> session_store<Data, Codec, Clock>::get_l1(
    std::string_view id) noexcept {
  if (!detail::session_id_well_formed(id)) return get_impl(id, nullptr);  // counted there
  if constexpr (std::is_copy_constructible_v<Data>) {
    try {
      std::string base, key;
      detail::session_keys::base(config_.key_prefix, detail::session_id_tag(id), base);
      detail::session_keys::session(base, detail::session_id_secret(id), key);
      detail::session_l1_ticket ticket;
      if (auto hit = l1_->lookup(key, ticket)) {
        return {session_status::ok, std::move(hit)};
      }
      l1_fill fill;
      auto r = get_impl(id, &fill);
      // A get that slid wrote the key: Redis reports that write to every L1, this one
      // included, so its entry would be dropped at once; the next get (which does not
      // slide again for l1_ttl) fills the L1.
      if (r.status == session_status::ok && !fill.slid) {
        try {
          l1_->insert(key, *r.value, r.value->expires - fill.now, ticket);
        } catch (...) {  // not held (no memory, Data's copy threw): the read stands
        }
      }
      return r;
    } catch (...) {
      return {session_status::unavailable};
    }
  } else {
    return get_impl(id, nullptr);
  }
}

template <class Data, class Codec, clock_source Clock>
requires redis_codec<Codec, Data>
void session_store<Data, Codec, Clock>::forget(std::string_view id) noexcept {
  if (!l1_ || !detail::session_id_well_formed(id)) return;
  try {
    std::string base, key;
    detail::session_keys::base(config_.key_prefix, detail::session_id_tag(id), base);
    detail::session_keys::session(base, detail::session_id_secret(id), key);
    l1_->erase(key);
  } catch (...) {  // no memory for the key: drop everything rather than keep it
    l1_->erase_all();
  }
}

template <class Data, class Codec, clock_source Clock>
requires redis_codec<Codec, Data>
session_result<bool> session_store<Data, Codec, Clock>::update_impl(
    std::string_view id, std::uint64_t expected, const Data& data) noexcept {
  return on_id<bool>(id,
                     [&](std::string_view base, std::string_view key,
                         std::string_view secret) -> session_result<bool> {
                       std::string value;
                       if (!encode(data, value)) return {session_status::rejected};
                       const std::string version = std::to_string(expected);
                       const std::string_view args[] = {
                           key, base, secret, idle_ms_, absolute_ms_, version, value};
                       const session_status s = run_coded(script::update, 1, args);
                       if (s == session_status::ok) updates_.add();
                       if (s == session_status::conflict) conflicts_.add();
                       return {s};
                     });
}

template <class Data, class Codec, clock_source Clock>
requires redis_codec<Codec, Data>
session_result<session_id> session_store<Data, Codec, Clock>::rotate_impl(
    std::string_view id) noexcept {
  return on_id<session_id>(
      id, [&](std::string_view base, std::string_view key, std::string_view secret) {
        auto r = with_fresh_id(
            detail::session_id_tag(id), base,
            [&](std::string_view fresh, std::string_view fresh_key, std::int64_t& code) {
              const std::string_view args[] = {key,
                                               fresh_key,
                                               base,
                                               secret,
                                               idle_ms_,
                                               absolute_ms_,
                                               detail::session_id_secret(fresh)};
              return run_coded(script::rotate, 2, args, code,
                               [](const redisReply&, std::int64_t) { return true; });
            });
        if (r) rotations_.add();
        return r;
      });
}

template <class Data, class Codec, clock_source Clock>
requires redis_codec<Codec, Data>
session_result<bool> session_store<Data, Codec, Clock>::destroy_impl(
    std::string_view id) noexcept {
  return on_id<bool>(id,
                     [&](std::string_view base, std::string_view key,
                         std::string_view secret) -> session_result<bool> {
                       const std::string_view args[] = {key, base, secret};
                       const session_status s = run_coded(script::destroy, 1, args);
                       if (s == session_status::ok) destroyed_.add();
                       return {s};
                     });
}

template <class Data, class Codec, clock_source Clock>
requires redis_codec<Codec, Data>
session_result<std::size_t> session_store<Data, Codec, Clock>::destroy_all_impl(
    std::string_view user) noexcept {
  try {
    if (!valid_user(user)) return {session_status::rejected};
    std::string tag, base, index;
    user_keys(user, tag, base, index);
    const std::string_view args[] = {index, base};
    std::int64_t code = 0;
    std::int64_t n = 0;
    const session_status s = run_coded(script::destroy_all, 1, args, code,
                                       [&](const redisReply& r, std::int64_t c) {
                                         if (c != 1) return true;
                                         const auto d = detail::session_int(r, 1);
                                         n = d.value_or(0);
                                         return d.has_value() && *d >= 0;
                                       });
    if (s != session_status::ok) return {s};
    destroyed_.add(static_cast<std::uint64_t>(n));
    return {session_status::ok, static_cast<std::size_t>(n)};
  } catch (...) {
    return {session_status::unavailable};
  }
}

}  // namespace outgrow
