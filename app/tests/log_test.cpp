#include "core/log.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <regex>
#include <string>

namespace webstack::log {
namespace {

TEST(LogTest, FormatPlain) {
  EXPECT_EQ(format_line(Level::Info, "listening", {{"port", "8080"}, {"threads", "2"}}),
            "level=info msg=\"listening\" port=8080 threads=2");
  EXPECT_EQ(format_line(Level::Debug, "x", {}), "level=debug msg=\"x\"");
  EXPECT_EQ(format_line(Level::Warn, "", {}), "level=warn msg=\"\"");
  EXPECT_EQ(format_line(Level::Error, "boom", {{"path", "/db?x=1"}}),
            "level=error msg=\"boom\" path=\"/db?x=1\"");
}

TEST(LogTest, FormatQuotesAndEscapes) {
  EXPECT_EQ(format_line(Level::Info, "say \"hi\"", {{"k", "two words"}}),
            "level=info msg=\"say \\\"hi\\\"\" k=\"two words\"");
  EXPECT_EQ(format_line(Level::Info, "m", {{"k", "a\"b"}}), "level=info msg=\"m\" k=\"a\\\"b\"");
  EXPECT_EQ(format_line(Level::Info, "m", {{"k", "a=b"}}), "level=info msg=\"m\" k=\"a=b\"");
  EXPECT_EQ(format_line(Level::Info, "m", {{"k", ""}}), "level=info msg=\"m\" k=\"\"");
  EXPECT_EQ(format_line(Level::Info, "line1\nline2", {{"k", "a\r\n\tb"}}),
            "level=info msg=\"line1\\nline2\" k=\"a\\r\\n\\tb\"");
  EXPECT_EQ(format_line(Level::Info, "m", {{"k", std::string_view("a\x01\x7f", 3)}}),
            "level=info msg=\"m\" k=\"a\\u0001\\u007f\"");
  // A backslash alone does not force quotes; inside quotes it is escaped.
  EXPECT_EQ(format_line(Level::Info, "m", {{"k", "C:\\x"}, {"q", "a \\ b"}}),
            "level=info msg=\"m\" k=C:\\x q=\"a \\\\ b\"");
  // Keys cannot break the key=value shape.
  EXPECT_EQ(format_line(Level::Info, "m", {{"bad key=", "v"}}), "level=info msg=\"m\" bad_key_=v");
  // UTF-8 passes through.
  EXPECT_EQ(format_line(Level::Info, "m", {{"k", "h\xc3\xa9"}}),
            "level=info msg=\"m\" k=h\xc3\xa9");
}

TEST(LogTest, ParseLevel) {
  Level l = Level::Error;
  EXPECT_TRUE(parse_level("debug", l));
  EXPECT_EQ(l, Level::Debug);
  EXPECT_TRUE(parse_level("info", l));
  EXPECT_EQ(l, Level::Info);
  EXPECT_TRUE(parse_level("WARN", l));
  EXPECT_EQ(l, Level::Warn);
  EXPECT_TRUE(parse_level("error", l));
  EXPECT_EQ(l, Level::Error);
  EXPECT_FALSE(parse_level("verbose", l));
  EXPECT_FALSE(parse_level("", l));
  EXPECT_EQ(l, Level::Error);
}

TEST(LogTest, LevelFilter) {
  set_level(Level::Warn);
  EXPECT_FALSE(enabled(Level::Debug));
  EXPECT_FALSE(enabled(Level::Info));
  EXPECT_TRUE(enabled(Level::Warn));
  EXPECT_TRUE(enabled(Level::Error));
  set_level(Level::Debug);
  EXPECT_TRUE(enabled(Level::Debug));
  set_level(Level::Info);
  EXPECT_FALSE(enabled(Level::Debug));
  EXPECT_TRUE(enabled(Level::Info));
}

// write() goes to fd 2: redirect it into a pipe for the duration of the test.
TEST(LogTest, WriteEmitsOneTimestampedLine) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const int saved = ::dup(2);
  ASSERT_GE(saved, 0);
  ASSERT_GE(::dup2(fds[1], 2), 0);

  set_level(Level::Info);
  write(Level::Info, "listening", {{"port", "8080"}});
  debug("filtered out");
  warn("second", {{"k", "v w"}});

  ::dup2(saved, 2);
  ::close(saved);
  ::close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n = 0;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);

  const std::regex re(
      "ts=\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z level=info msg=\"listening\" "
      "port=8080\n"
      "ts=\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z level=warn msg=\"second\" "
      "k=\"v w\"\n");
  EXPECT_TRUE(std::regex_match(out, re)) << out;
}

}  // namespace
}  // namespace webstack::log
