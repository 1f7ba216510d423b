// The transport-free parts of the handlers: routing table, fortunes page, validation.
#include <gtest/gtest.h>

#include "handlers/app.hpp"

namespace webstack {
namespace {

TEST(Routes, MapPathsToRoutes) {
  EXPECT_EQ(App::route_for("/plaintext"), Route::Plaintext);
  EXPECT_EQ(App::route_for("/db"), Route::Db);
  EXPECT_EQ(App::route_for("/queries"), Route::Queries);
  EXPECT_EQ(App::route_for("/api/messages"), Route::MessagesList);
  EXPECT_EQ(App::route_for("/guestbook"), Route::Guestbook);
  EXPECT_EQ(App::route_for("/db/"), Route::NotFound);
  EXPECT_EQ(App::route_for("/nope"), Route::NotFound);
}

TEST(Fortunes, RendersAnEscapedTable) {
  std::string html = render_fortunes({{0, "Additional fortune added at request time."},
                                      {11, "<script>alert(\"x\");</script>"},
                                      {12, "フレームワークのベンチマーク"}});
  EXPECT_EQ(html,
            "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
            "<tr><th>id</th><th>message</th></tr>"
            "<tr><td>0</td><td>Additional fortune added at request time.</td></tr>"
            "<tr><td>11</td><td>&lt;script&gt;alert(&quot;x&quot;);&lt;/script&gt;</td></tr>"
            "<tr><td>12</td><td>フレームワークのベンチマーク</td></tr>"
            "</table></body></html>");
}

TEST(MessageValidation, NamesTheFieldAtFault) {
  EXPECT_EQ(validate_message("ann", "hello").field, "");
  EXPECT_EQ(validate_message("", "hello").field, "author");
  EXPECT_EQ(validate_message("ann", "").field, "text");
  EXPECT_EQ(validate_message("   ", "hello").field, "author");
  EXPECT_EQ(validate_message(std::string(65, 'a'), "hello").field, "author");
  EXPECT_EQ(validate_message(std::string(64, 'a'), "hello").field, "");
  // 64 code points of 3 bytes each is still 64 characters.
  std::string kana;
  for (int i = 0; i < 64; ++i) kana += "フ";
  EXPECT_EQ(validate_message(kana, "hello").field, "");
  EXPECT_EQ(validate_message("ann", std::string(2001, 'x')).field, "text");
  EXPECT_EQ(validate_message("ann", "line one\nline two").field, "");
  EXPECT_EQ(validate_message("a\nb", "hello").field, "author");
  EXPECT_EQ(validate_message("ann", "bad \xC0\xAF").field, "text");
  EXPECT_EQ(validate_message("ann", std::string("nul\0byte", 8)).field, "text");
  EXPECT_EQ(validate_message("ann", "bad \xC0\xAF").reason, "is not valid UTF-8");
}

}  // namespace
}  // namespace webstack
