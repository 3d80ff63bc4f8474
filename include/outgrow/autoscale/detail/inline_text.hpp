// outgrow/autoscale/detail/inline_text.hpp — a fixed-capacity string stored inline.
//
// recommendation and scaling_decision carry their reason, metric and policy names as
// inline_text so an evaluation allocates nothing: the text lives in the object, cut at
// N bytes. Formats with {fmt} like a string_view.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace outgrow::detail {

/// A string of at most N bytes stored inline (no allocation); longer text is cut.
template <std::size_t N>
class inline_text {
 public:
  constexpr inline_text() noexcept = default;
  inline_text(std::string_view s) noexcept { assign(s); }    // NOLINT: implicit on purpose
  inline_text(const char* s) noexcept { assign(s); }         // NOLINT
  inline_text(const std::string& s) noexcept { assign(s); }  // NOLINT

  void assign(std::string_view s) noexcept {
    size_ = std::min(s.size(), N);
    if (size_ != 0) std::memcpy(data_, s.data(), size_);
  }
  /// Formats into the buffer (cut at N bytes); allocation-free.
  template <class... Args>
  void format(fmt::format_string<Args...> f, Args&&... args) {
    const auto r = fmt::format_to_n(data_, N, f, std::forward<Args>(args)...);
    size_ = std::min<std::size_t>(r.size, N);
  }
  [[nodiscard]] std::string_view view() const noexcept { return {data_, size_}; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  friend bool operator==(const inline_text& a, std::string_view b) noexcept {
    return a.view() == b;
  }

 private:
  char data_[N]{};
  std::size_t size_ = 0;
};

}  // namespace outgrow::detail

template <std::size_t N>
struct fmt::formatter<outgrow::detail::inline_text<N>> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(const outgrow::detail::inline_text<N>& t, FormatContext& ctx) const
      -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(t.view(), ctx);
  }
};
