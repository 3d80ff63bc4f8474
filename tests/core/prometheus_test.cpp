#include <outgrow/core/prometheus.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "catch.hpp"

using namespace std::chrono_literals;

namespace {

struct lookup_metrics {
  static constexpr std::string_view metrics_name = "lookup_metrics";
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::size_t size = 0;  // a level: in prometheus_default_gauges
  template <class F>
  void for_each_metric(F&& f) const {
    f("hits", hits);
    f("misses", misses);
    f("size", size);
    f("hit_rate", outgrow::ratio(hits, hits + misses));
  }
};

struct mixed_metrics {  // no metrics_name: HELP is the field name
  std::int64_t balance = -3;
  bool open = true;
  bool closed = false;
  std::chrono::milliseconds latency{1500};
  std::chrono::nanoseconds total_load_time{2'000'000'000};
  std::string_view state = "half_open";
  std::string owner = "a\"b";
  double ratio = 0.1;
  lookup_metrics inner{.hits = 7};
  std::vector<int> skipped{1, 2};  // neither a number nor printable as one: skipped
  std::uint64_t in_flight = 4;
  template <class F>
  void for_each_metric(F&& f) const {
    f("balance", balance);
    f("open", open);
    f("closed", closed);
    f("latency", latency);
    f("total_load_time", total_load_time);
    f("state", state);
    f("owner", owner);
    f("ratio", ratio);
    f("inner", inner);
    f("skipped", skipped);
    f("in_flight", in_flight);
  }
};

struct odd_names_metrics {
  std::uint64_t value = 1;
  template <class F>
  void for_each_metric(F&& f) const {
    f("bad-name.x", value);
    f("9lives", value);
  }
};

struct real_metrics {
  double nan = std::numeric_limits<double>::quiet_NaN();
  double up = std::numeric_limits<double>::infinity();
  double down = -std::numeric_limits<double>::infinity();
  double big = 1e20;
  double small = 2.5e-7;
  double third = 1.0 / 3.0;
  template <class F>
  void for_each_metric(F&& f) const {
    f("nan", nan);
    f("up", up);
    f("down", down);
    f("big", big);
    f("small", small);
    f("third", third);
  }
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool has_line(const std::string& text, std::string_view line) {
  for (const std::string& l : lines_of(text)) {
    if (l == line) return true;
  }
  return false;
}

// The 0.0.4 grammar of one line: a comment (HELP / TYPE) or a sample.
const std::string label = R"re([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")re";
const std::regex sample_line("^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{" + label + "(," + label +
                             ")*\\})? (NaN|[+-]Inf|[-+]?[0-9.]+([eE][-+]?[0-9]+)?)$");
const std::regex type_line(R"(^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge)$)");
const std::regex help_line(R"(^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$)");

void require_well_formed(const std::string& text) {
  REQUIRE((text.empty() || text.back() == '\n'));
  for (const std::string& l : lines_of(text)) {
    INFO(l);
    CHECK((std::regex_match(l, sample_line) || std::regex_match(l, type_line) ||
           std::regex_match(l, help_line)));
  }
}

}  // namespace

TEST_CASE("prometheus: a snapshot becomes HELP TYPE and sample lines") {
  outgrow::prometheus_writer w;
  w.add("shop_l1", lookup_metrics{.hits = 99, .misses = 1, .size = 5}, {{"instance", "a"}});
  const std::string text = w.str();
  require_well_formed(text);
  const std::vector<std::string> expected = {
      "# HELP shop_l1_hits lookup_metrics hits",
      "# TYPE shop_l1_hits counter",
      "shop_l1_hits{instance=\"a\"} 99",
      "# HELP shop_l1_misses lookup_metrics misses",
      "# TYPE shop_l1_misses counter",
      "shop_l1_misses{instance=\"a\"} 1",
      "# HELP shop_l1_size lookup_metrics size",
      "# TYPE shop_l1_size gauge",
      "shop_l1_size{instance=\"a\"} 5",
      "# HELP shop_l1_hit_rate lookup_metrics hit_rate",
      "# TYPE shop_l1_hit_rate gauge",
      "shop_l1_hit_rate{instance=\"a\"} 0.99",
  };
  CHECK(lines_of(text) == expected);
  CHECK(w.families() == 4);
}

TEST_CASE("prometheus: without labels a sample has no braces") {
  outgrow::prometheus_writer w;
  w.add("x", lookup_metrics{.hits = 2});
  CHECK(has_line(w.str(), "x_hits 2"));
  outgrow::prometheus_writer bare;  // an empty prefix: the field names alone
  bare.add("", lookup_metrics{.hits = 3});
  CHECK(has_line(bare.str(), "hits 3"));
}

TEST_CASE("prometheus: one TYPE line per family across label sets and add calls") {
  outgrow::prometheus_writer w;
  w.add("lb", lookup_metrics{.hits = 1}, {{"endpoint", "a"}});
  w.add("other", lookup_metrics{.hits = 5});
  w.add("lb", lookup_metrics{.hits = 2}, {{"endpoint", "b"}});
  const std::string text = w.str();
  require_well_formed(text);
  const auto lines = lines_of(text);
  std::size_t type_lines = 0;
  std::size_t help_lines = 0;
  for (const auto& l : lines) {
    if (l == "# TYPE lb_hits counter") ++type_lines;
    if (l.rfind("# HELP lb_hits ", 0) == 0) ++help_lines;
  }
  CHECK(type_lines == 1);
  CHECK(help_lines == 1);
  // Grouped: b's sample follows a's directly, before the next family.
  const auto a = std::find(lines.begin(), lines.end(), "lb_hits{endpoint=\"a\"} 1");
  REQUIRE(a != lines.end());
  REQUIRE(a + 1 != lines.end());
  CHECK(*(a + 1) == "lb_hits{endpoint=\"b\"} 2");
  // Family order is first appearance: lb_*, then other_*.
  const auto lb_pos = text.find("# TYPE lb_hit_rate");
  const auto other_pos = text.find("# TYPE other_hits");
  CHECK(lb_pos < other_pos);
  CHECK(w.families() == 8);
}

TEST_CASE("prometheus: the same label set added twice keeps one series") {
  outgrow::prometheus_writer w;
  w.add("lb", lookup_metrics{.hits = 1}, {{"endpoint", "a"}});
  w.add("lb", lookup_metrics{.hits = 3}, {{"endpoint", "a"}});
  const std::string text = w.str();
  CHECK(has_line(text, "lb_hits{endpoint=\"a\"} 3"));
  CHECK_FALSE(has_line(text, "lb_hits{endpoint=\"a\"} 1"));
}

TEST_CASE("prometheus: label values escape backslash quote and newline") {
  CHECK(outgrow::prometheus_writer::escape_label_value("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
  CHECK(outgrow::prometheus_writer::escape_label_value("plain é") == "plain é");
  outgrow::prometheus_writer w;
  w.add("x", lookup_metrics{.hits = 1}, {{"path", "C:\\tmp\n\"q\""}});
  const std::string text = w.str();
  require_well_formed(text);
  CHECK(has_line(text, R"(x_hits{path="C:\\tmp\n\"q\""} 1)"));
}

TEST_CASE("prometheus: HELP escapes backslash and newline but not quotes") {
  CHECK(outgrow::prometheus_writer::escape_help("a\\b\n\"c\"") == "a\\\\b\\n\"c\"");
  outgrow::prometheus_writer w;
  w.add_value("up", 1, outgrow::prometheus_type::gauge);
  w.set_help("up", "1 while \"serving\"\nsecond line");
  w.set_help("later", "set before the family exists");
  w.add_value("later", 2, outgrow::prometheus_type::counter);
  const std::string text = w.str();
  require_well_formed(text);
  CHECK(has_line(text, R"(# HELP up 1 while "serving"\nsecond line)"));
  CHECK(has_line(text, "# HELP later set before the family exists"));
  CHECK(has_line(text, "# TYPE later counter"));
  CHECK(has_line(text, "later 2"));
}

TEST_CASE("prometheus: metric and label names are sanitized") {
  using w_t = outgrow::prometheus_writer;
  CHECK(w_t::sanitize_name("shop.l1-cache") == "shop_l1_cache");
  CHECK(w_t::sanitize_name("ns:sub") == "ns:sub");
  CHECK(w_t::sanitize_name("9lives") == "_9lives");
  CHECK(w_t::sanitize_name("") == "_");
  CHECK(w_t::sanitize_name("caf\xc3\xa9") == "caf__");
  CHECK(w_t::sanitize_label_name("ns:sub") == "ns_sub");
  CHECK(w_t::sanitize_label_name("0x") == "_0x");
  outgrow::prometheus_writer w;
  w.add("my-shop", odd_names_metrics{}, {{"zone.name", "eu"}});
  const std::string text = w.str();
  require_well_formed(text);
  CHECK(has_line(text, "my_shop_bad_name_x{zone_name=\"eu\"} 1"));
  CHECK(has_line(text, "my_shop_9lives{zone_name=\"eu\"} 1"));
}

TEST_CASE("prometheus: bools durations strings and nested snapshots") {
  outgrow::prometheus_writer w;
  w.add("m", mixed_metrics{}, {{"state", "given"}});
  const std::string text = w.str();
  require_well_formed(text);
  CHECK(has_line(text, "# TYPE m_balance gauge"));  // signed: a gauge
  CHECK(has_line(text, "m_balance{state=\"given\"} -3"));
  CHECK(has_line(text, "m_open{state=\"given\"} 1"));
  CHECK(has_line(text, "m_closed{state=\"given\"} 0"));
  CHECK(has_line(text, "# TYPE m_open gauge"));
  CHECK(has_line(text, "# TYPE m_latency_seconds gauge"));
  CHECK(has_line(text, "m_latency_seconds{state=\"given\"} 1.5"));
  CHECK(has_line(text, "# TYPE m_total_load_time_seconds counter"));  // default counter
  CHECK(has_line(text, "m_total_load_time_seconds{state=\"given\"} 2"));
  // Strings are info-style; the caller's label of the same name is not repeated.
  CHECK(has_line(text, "m_state{state=\"given\"} 1"));
  CHECK(has_line(text, "m_owner{state=\"given\",owner=\"a\\\"b\"} 1"));
  CHECK(has_line(text, "m_ratio{state=\"given\"} 0.1"));
  CHECK(has_line(text, "# HELP m_inner_hits lookup_metrics hits"));
  CHECK(has_line(text, "m_inner_hits{state=\"given\"} 7"));
  CHECK(text.find("skipped") == std::string::npos);
  CHECK(has_line(text, "# TYPE m_in_flight gauge"));  // unsigned level: default gauge
  CHECK(has_line(text, "# HELP m_balance balance"));  // no metrics_name
}

TEST_CASE("prometheus: doubles NaN and infinities follow the spec") {
  using w_t = outgrow::prometheus_writer;
  CHECK(w_t::format_value(std::numeric_limits<double>::quiet_NaN()) == "NaN");
  CHECK(w_t::format_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(w_t::format_value(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(w_t::format_value(0.1) == "0.1");
  CHECK(w_t::format_value(42) == "42");
  CHECK(std::stod(w_t::format_value(1.0 / 3.0)) == 1.0 / 3.0);  // round-trips
  outgrow::prometheus_writer w;
  w.add("r", real_metrics{});
  const std::string text = w.str();
  require_well_formed(text);
  CHECK(has_line(text, "r_nan NaN"));
  CHECK(has_line(text, "r_up +Inf"));
  CHECK(has_line(text, "r_down -Inf"));
  CHECK(has_line(text, "r_big 1e+20"));
  CHECK(has_line(text, "r_small 2.5e-07"));
}

TEST_CASE("prometheus: integers are exact up to 2^64 - 1") {
  outgrow::prometheus_writer w;
  w.add("big", lookup_metrics{.hits = std::numeric_limits<std::uint64_t>::max()});
  CHECK(has_line(w.str(), "big_hits 18446744073709551615"));
}

TEST_CASE("prometheus: config gauges and counters override the default rule") {
  outgrow::prometheus_writer w({.gauges = {"hits"}, .counters = {"hit_rate", "size"}});
  w.add("c", lookup_metrics{.hits = 1});
  const std::string text = w.str();
  CHECK(has_line(text, "# TYPE c_hits gauge"));
  CHECK(has_line(text, "# TYPE c_misses counter"));
  CHECK(has_line(text, "# TYPE c_hit_rate counter"));
  CHECK(has_line(text, "# TYPE c_size counter"));  // counters win over the default gauges
}

TEST_CASE("prometheus: a family keeps its first type and clear empties the writer") {
  outgrow::prometheus_writer w;
  w.add_value("v", 1, outgrow::prometheus_type::counter, {{"k", "a"}}, "first");
  w.add_value("v", 2, outgrow::prometheus_type::gauge, {{"k", "b"}}, "second");
  const std::string text = w.str();
  CHECK(has_line(text, "# TYPE v counter"));
  CHECK(has_line(text, "# HELP v first"));
  CHECK(has_line(text, "v{k=\"b\"} 2"));
  CHECK(w.families() == 1);
  w.clear();
  CHECK(w.families() == 0);
  CHECK(w.str().empty());
}

TEST_CASE("prometheus: the content type names version 0.0.4") {
  CHECK(outgrow::prometheus_content_type == "text/plain; version=0.0.4; charset=utf-8");
}
