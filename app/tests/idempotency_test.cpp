#include "core/idempotency.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace webstack::idempotency {
namespace {

TEST(IdempotencyKeyHeader, AcceptsOneQuotedString) {
  EXPECT_EQ(parse_header(R"("8e03978e-40d5-43e8-bc93-6894a57f9324")").key,
            "8e03978e-40d5-43e8-bc93-6894a57f9324");
  EXPECT_EQ(parse_header(R"(  "a b"  )").key, "a b");
  EXPECT_EQ(parse_header(R"("say \"hi\" \\ bye")").key, R"(say "hi" \ bye)");
  EXPECT_EQ(parse_header("\"" + std::string(kMaxKeyLength, 'k') + "\"").key,
            std::string(kMaxKeyLength, 'k'));
}

TEST(IdempotencyKeyHeader, RefusesWhatTheDraftDoesNotAllowAndSaysWhy) {
  const auto error = [](std::string_view v) { return parse_header(v).error; };
  EXPECT_EQ(error(""), "is empty");
  EXPECT_EQ(error("   "), "is empty");
  EXPECT_EQ(error(R"("")"), "is empty");
  EXPECT_NE(error("8e03978e").find("must be a quoted string"), std::string::npos);
  EXPECT_EQ(error(R"("abc)"), "has no closing quote");
  EXPECT_NE(error(R"("a";p=1)").find("after the closing quote"), std::string::npos);
  EXPECT_NE(error(R"("a", "b")").find("after the closing quote"), std::string::npos);
  EXPECT_NE(error(R"("a\b")").find("backslash"), std::string::npos);
  EXPECT_NE(error("\"caf\xC3\xA9\"").find("not visible ASCII"), std::string::npos);
  EXPECT_NE(error("\"tab\there\"").find("not visible ASCII"), std::string::npos);
  EXPECT_EQ(error("\"" + std::string(kMaxKeyLength + 1, 'k') + "\""),
            "is longer than 255 characters");
  EXPECT_TRUE(parse_header(R"("abc)").key.empty());
}

TEST(IdempotencyKeyFormField, SameCharactersWithoutQuotes) {
  EXPECT_EQ(check_form_field("0f3a").key, "0f3a");
  EXPECT_EQ(check_form_field("").error, "is empty");
  EXPECT_EQ(check_form_field(std::string(256, 'x')).error, "is longer than 255 characters");
  EXPECT_FALSE(check_form_field("a\nb").error.empty());
}

TEST(Fingerprint, DiffersWhenAnyPartDiffersAndPartsDoNotRun) {
  const auto base = fingerprint("POST", "/api/messages", "application/json", "{}");
  EXPECT_EQ(base.size(), 32u);
  EXPECT_EQ(base, fingerprint("POST", "/api/messages", "application/json", "{}"));
  EXPECT_NE(base, fingerprint("POST", "/api/messages", "application/json", "{ }"));
  EXPECT_NE(base, fingerprint("POST", "/api/messages?x", "application/json", "{}"));
  EXPECT_NE(base, fingerprint("POST", "/api/messages", "text/plain", "{}"));
  EXPECT_NE(fingerprint("POST", "/a", "bc", ""), fingerprint("POST", "/ab", "c", ""));
}

TEST(HexLiteral, CarriesAnyBytesAsHexDigitsOnly) {
  EXPECT_EQ(hex_literal(""), "X''");
  EXPECT_EQ(hex_literal("'; DROP TABLE x; --"), "X'273B2044524F50205441424C4520783B202D2D'");
  EXPECT_EQ(hex_literal(std::string("\0\xFF", 2)), "X'00FF'");
}

TEST(NewKey, IsAValidFormKeyAndFresh) {
  std::set<std::string> keys;
  for (int i = 0; i < 100; ++i) {
    const auto k = new_key();
    EXPECT_EQ(k.size(), 32u);
    EXPECT_TRUE(check_form_field(k).error.empty());
    keys.insert(k);
  }
  EXPECT_EQ(keys.size(), 100u);
}

}  // namespace
}  // namespace webstack::idempotency
