#include "common/text.hpp"

#include <gtest/gtest.h>

namespace webstack::text {
namespace {

TEST(JsonEscape, EscapesControlsAndQuotes) {
  std::string out;
  json_escape("a\"b\\c\n\x01", out);
  EXPECT_EQ(out, "a\\\"b\\\\c\\n\\u0001");
}

TEST(Trim, DropsBlanksAndLineEndsAtBothEnds) {
  EXPECT_EQ(trim(" \t a b\r\n"), "a b");
  EXPECT_EQ(trim("\n\n"), "");
  EXPECT_EQ(trim(""), "");
}

TEST(Located, FileLineKeyWhyEachLeftOutWhenAbsent) {
  EXPECT_EQ(located("site.toml", 12, "host[1].address", "outside the subnet"),
            "site.toml:12: host[1].address: outside the subnet");
  EXPECT_EQ(located("site.toml", 0, "lab", "missing"), "site.toml: lab: missing");
  EXPECT_EQ(located("--set", 0, "", "expected KEY=VALUE"), "--set: expected KEY=VALUE");
  EXPECT_EQ(located("", 0, "db.user", "empty"), "db.user: empty");
}

TEST(Split, KeepsEmptyFields) {
  EXPECT_EQ(split("a,,b", ','), (std::vector<std::string>{"a", "", "b"}));
  EXPECT_EQ(split("", ','), (std::vector<std::string>{""}));
}

TEST(ToLl, WholeNumbersOnly) {
  EXPECT_EQ(to_ll("42", -1), 42);
  EXPECT_EQ(to_ll("-7", 0), -7);
  EXPECT_EQ(to_ll("", -1), -1);
  EXPECT_EQ(to_ll("12 ", -1), -1);
  EXPECT_EQ(to_ll("99999999999999999999", -1), -1);
}

}  // namespace
}  // namespace webstack::text
