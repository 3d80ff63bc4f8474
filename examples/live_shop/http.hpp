// examples/live_shop/http.hpp — the small HTTP/1.1 kit the live shop's processes share.
//
// What it shows: a blocking Boost.Beast server (one thread per client connection,
// keep-alive) and a client connection whose every step (connect, write, read) has a
// deadline. Enough for a demo and a test on loopback; a production front would use one
// event loop per core (Beast's async model) instead of a thread per connection.
//
//   live_shop::listener server(0);                    // 127.0.0.1, a free port
//   server.serve([](const live_shop::request& req) {  // runs on connection threads
//     return live_shop::reply(req, live_shop::http::status::ok, "hello\n");
//   });
//   live_shop::client_connection c({"127.0.0.1", 8080}, 500ms);
//   std::optional<live_shop::response> r = c.get("/health");
//
// Addresses are numeric "host:port" (no DNS lookups: everything runs on 127.0.0.1).
// Boost 1.74 has no per-operation cancellation, so deadlines use beast::tcp_stream's
// expires_after on a private io_context per client connection, run to completion by the
// calling thread.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include <fmt/format.h>

namespace live_shop {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

/// Boost 1.74's Beast speaks boost::string_view; these convert at the boundary.
inline std::string_view to_std(beast::string_view s) noexcept {
  return {s.data(), s.size()};
}
inline beast::string_view to_beast(std::string_view s) noexcept {
  return {s.data(), s.size()};
}

/// The request target ("/product/42?x=1") as a std::string_view.
inline std::string_view target_of(const http::request<http::string_body>& req) noexcept {
  return to_std(req.target());
}

/// A numeric "host:port" address.
struct address {
  std::string host;
  unsigned short port = 0;

  [[nodiscard]] std::string str() const { return fmt::format("{}:{}", host, port); }
  /// "127.0.0.1:8080" → address; nullopt when it does not parse.
  static std::optional<address> parse(std::string_view text) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    unsigned port = 0;
    const char* end = text.data() + text.size();
    const auto [p, ec] = std::from_chars(text.data() + colon + 1, end, port);
    if (ec != std::errc{} || p != end || port == 0 || port > 65535) return std::nullopt;
    boost::system::error_code bad;
    (void)net::ip::make_address(std::string(text.substr(0, colon)), bad);
    if (bad) return std::nullopt;
    return address{std::string(text.substr(0, colon)), static_cast<unsigned short>(port)};
  }
};

/// "--name value" command-line options. A bad command line prints "<program>: <why>"
/// and the synopsis, and exits with status 2.
class command_line {
 public:
  command_line(std::string_view program, std::string_view synopsis)
      : program_(program), synopsis_(synopsis) {}

  /// Calls on_option(name, value) for every pair; it returns false for an unknown name.
  template <class OnOption>
  void parse(int argc, char** argv, OnOption on_option) const {
    for (int i = 1; i < argc; i += 2) {
      const std::string_view name = argv[i];
      if (i + 1 >= argc) fail(fmt::format("{} needs a value", name));
      if (!on_option(name, std::string(argv[i + 1]))) {
        fail(fmt::format("unknown option {}", name));
      }
    }
  }

  /// The integer in `value`, which must lie in [lo, hi].
  [[nodiscard]] long number(std::string_view name, std::string_view value, long lo,
                            long hi) const {
    long n = 0;
    const char* end = value.data() + value.size();
    const auto [p, ec] = std::from_chars(value.data(), end, n);
    if (ec != std::errc{} || p != end || n < lo || n > hi) {
      fail(fmt::format("{} wants a number in [{}, {}], got '{}'", name, lo, hi, value));
    }
    return n;
  }
  /// Milliseconds in [lo, 1 h].
  [[nodiscard]] std::chrono::milliseconds millis(std::string_view name,
                                                 std::string_view value,
                                                 long lo = 0) const {
    return std::chrono::milliseconds(number(name, value, lo, 3'600'000));
  }
  [[nodiscard]] address where(std::string_view name, std::string_view value) const;

  [[noreturn]] void fail(std::string_view why) const {
    fmt::print(stderr, "{}: {}\nusage: {} {}\n", program_, why, program_, synopsis_);
    std::exit(2);
  }

 private:
  std::string_view program_;
  std::string_view synopsis_;
};

inline address command_line::where(std::string_view name, std::string_view value) const {
  const auto a = address::parse(value);
  if (!a) fail(fmt::format("{} wants HOST:PORT (numeric), got '{}'", name, value));
  return *a;
}

/// A response to `req` with the given status and body (keep-alive as the client asked).
inline response reply(const request& req, http::status status, std::string body,
                      std::string_view content_type = "text/plain; charset=utf-8") {
  response res{status, req.version()};
  res.set(http::field::server, "outgrow-live-shop");
  res.set(http::field::content_type, to_beast(content_type));
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  if (req.method() == http::verb::head) res.body().clear();  // headers only, same length
  return res;
}

/// The value of `name` in the query string of `target` ("/x?add=a&b=c"), or "".
inline std::string_view query_param(std::string_view target, std::string_view name) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return {};
}

/// The value of cookie `name` in a Cookie header ("a=1; shop_lsn=42"), or "".
inline std::string_view cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    const auto semi = header.find(';');
    std::string_view pair = header.substr(0, semi);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    const auto eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
      return pair.substr(eq + 1);
    }
    if (semi == std::string_view::npos) break;
    header.remove_prefix(semi + 1);
  }
  return {};
}

/// The cookie that carries a user's session id (session_store, app.cpp).
inline constexpr std::string_view session_cookie = "shop_session";

/// Writes `port` to `path` atomically (a temporary file renamed), for the parent
/// process that started this one with --port 0.
inline void write_port_file(const std::string& path, unsigned short port) {
  if (path.empty()) return;
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << port << '\n';
  std::rename(tmp.c_str(), path.c_str());
}

/// A listening socket on 127.0.0.1 and a blocking accept loop.
class listener {
 public:
  /// Throws: boost::system::system_error when the port cannot be bound.
  explicit listener(unsigned short port)
      : acceptor_(io_, tcp::endpoint(net::ip::make_address("127.0.0.1"), port)) {}

  [[nodiscard]] unsigned short port() const { return acceptor_.local_endpoint().port(); }

  /// Accepts forever; each connection gets a thread that reads requests, calls
  /// handler(request) -> response and writes the response, until the client closes or
  /// asks for Connection: close. The handler runs on many threads at once.
  template <class Handler>
  [[noreturn]] void serve(Handler handler) {
    for (;;) {
      tcp::socket socket(io_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec) continue;  // e.g. EMFILE: try again
      socket.set_option(tcp::no_delay(true), ec);
      std::thread([s = std::move(socket), handler]() mutable {
        session(std::move(s), handler);
      }).detach();
    }
  }

 private:
  template <class Handler>
  static void session(tcp::socket socket, Handler& handler) {
    beast::flat_buffer buffer;
    for (;;) {
      request req;
      beast::error_code ec;
      http::read(socket, buffer, req, ec);
      if (ec) break;  // closed by the client, or a malformed request
      response res = handler(req);
      http::write(socket, res, ec);
      if (ec || !res.keep_alive()) break;
    }
    beast::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
  }

  net::io_context io_;
  tcp::acceptor acceptor_;
};

/// One keep-alive connection to an upstream, with a deadline on every step. Not
/// thread-safe: one per thread (the front keeps one per upstream per client thread).
class client_connection {
 public:
  client_connection(address where, std::chrono::milliseconds timeout)
      : where_(std::move(where)), timeout_(timeout), stream_(io_) {}

  /// Sends `req` and reads the response, connecting first if needed. `reused` tells the
  /// caller whether an existing connection was used (a failure on a reused connection
  /// may just mean the server closed it while idle).
  beast::error_code exchange(request& req, response& res, bool& reused) {
    reused = open_;
    beast::error_code ec;
    if (!open_) {
      const tcp::endpoint ep(net::ip::make_address(where_.host), where_.port);
      stream_.expires_after(timeout_);
      stream_.async_connect(ep, [&ec](beast::error_code e) { ec = e; });
      run();
      if (ec) return close(ec);
      stream_.socket().set_option(tcp::no_delay(true), ec);
      open_ = true;
    }
    req.set(http::field::host, where_.str());
    stream_.expires_after(timeout_);
    http::async_write(stream_, req, [&ec](beast::error_code e, std::size_t) { ec = e; });
    run();
    if (ec) return close(ec);
    http::response_parser<http::string_body> parser;
    parser.body_limit(64U << 20);
    parser.skip(req.method() == http::verb::head);  // a HEAD response has no body
    http::async_read(stream_, buffer_, parser,
                     [&ec](beast::error_code e, std::size_t) { ec = e; });
    run();
    if (ec) return close(ec);
    res = parser.release();
    if (!res.keep_alive()) close({});
    return {};
  }

  /// GET `target`; nullopt on any transport error or timeout.
  std::optional<response> get(std::string_view target) {
    request req{http::verb::get, to_beast(target), 11};
    req.keep_alive(true);
    response res;
    bool reused = false;
    if (exchange(req, res, reused)) return std::nullopt;
    return res;
  }

  [[nodiscard]] const address& where() const noexcept { return where_; }

 private:
  void run() {
    io_.restart();
    io_.run();
  }
  beast::error_code close(beast::error_code ec) {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    buffer_.clear();
    open_ = false;
    return ec;
  }

  address where_;
  std::chrono::milliseconds timeout_;
  net::io_context io_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  bool open_ = false;
};

}  // namespace live_shop
