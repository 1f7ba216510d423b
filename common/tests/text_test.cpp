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

}  // namespace
}  // namespace webstack::text
