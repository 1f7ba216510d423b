#include "core/text.hpp"

#include <gtest/gtest.h>

namespace webstack::text {
namespace {

TEST(HtmlEscape, EscapesTheFiveSpecialCharacters) {
  EXPECT_EQ(html_escape(R"(<script>alert("x" & 'y');</script>)"),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#x27;y&#x27;);&lt;/script&gt;");
}

TEST(HtmlEscape, LeavesUtf8Untouched) {
  EXPECT_EQ(html_escape("フレームワークのベンチマーク"), "フレームワークのベンチマーク");
}

TEST(QueriesCount, FollowsTheTechEmpowerRules) {
  EXPECT_EQ(queries_count(""), 1);
  EXPECT_EQ(queries_count("queries="), 1);
  EXPECT_EQ(queries_count("queries=foo"), 1);
  EXPECT_EQ(queries_count("queries=5x"), 1);
  EXPECT_EQ(queries_count("queries=0"), 1);
  EXPECT_EQ(queries_count("queries=-3"), 1);
  EXPECT_EQ(queries_count("queries=1"), 1);
  EXPECT_EQ(queries_count("queries=20"), 20);
  EXPECT_EQ(queries_count("queries=500"), 500);
  EXPECT_EQ(queries_count("queries=501"), 500);
  EXPECT_EQ(queries_count("queries=99999999999999999999999"), 500);
  EXPECT_EQ(queries_count("a=1&queries=7&b=2"), 7);
  EXPECT_EQ(queries_count("queriesx=7"), 1);
}

TEST(QueryParam, FindsExactKeys) {
  EXPECT_EQ(query_param("a=1&b=2", "b"), "2");
  EXPECT_EQ(query_param("a=1&b", "b"), "");
  EXPECT_FALSE(query_param("a=1&bb=2", "b"));
  EXPECT_FALSE(query_param("", "a"));
}

TEST(UrlDecode, DecodesFormEncoding) {
  EXPECT_EQ(url_decode("hello+world%21%E3%83%95"), "hello world!\xE3\x83\x95");
  EXPECT_FALSE(url_decode("bad%2"));
  EXPECT_FALSE(url_decode("bad%zz"));
  EXPECT_FALSE(url_decode("%"));
}

TEST(CookieValue, ParsesCookieHeaders) {
  EXPECT_EQ(cookie_value("a=1; ws_gtid=0-1-42; b=2", "ws_gtid"), "0-1-42");
  EXPECT_EQ(cookie_value("ws_gtid=\"0-1-42\"", "ws_gtid"), "0-1-42");
  EXPECT_FALSE(cookie_value("xws_gtid=1", "ws_gtid"));
  EXPECT_FALSE(cookie_value("", "ws_gtid"));
}

TEST(Utf8, RejectsMalformedSequences) {
  EXPECT_TRUE(valid_utf8("plain"));
  EXPECT_TRUE(valid_utf8("フレーム"));
  EXPECT_TRUE(valid_utf8("\xF0\x9F\x98\x80"));  // emoji
  EXPECT_FALSE(valid_utf8("\xC0\xAF"));         // overlong '/'
  EXPECT_FALSE(valid_utf8("\xED\xA0\x80"));     // surrogate
  EXPECT_FALSE(valid_utf8("\xE3\x83"));         // truncated
  EXPECT_FALSE(valid_utf8("\xFF"));
  EXPECT_EQ(utf8_length("aフb"), 3u);
}

TEST(RequestId, AcceptsOnlySafeIds) {
  EXPECT_TRUE(acceptable_request_id("3f2a-01:lb.x_y"));
  EXPECT_FALSE(acceptable_request_id(""));
  EXPECT_FALSE(acceptable_request_id("has space"));
  EXPECT_FALSE(acceptable_request_id(std::string(129, 'a')));
}

}  // namespace
}  // namespace webstack::text
