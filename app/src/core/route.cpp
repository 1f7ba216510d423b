#include "core/route.hpp"

namespace webstack {

std::string_view route_name(Route r) {
  switch (r) {
    case Route::Plaintext:
      return "plaintext";
    case Route::Json:
      return "json";
    case Route::Db:
      return "db";
    case Route::Queries:
      return "queries";
    case Route::Fortunes:
      return "fortunes";
    case Route::Updates:
      return "updates";
    case Route::MessagesList:
      return "messages_list";
    case Route::MessagesPost:
      return "messages_post";
    case Route::Guestbook:
      return "guestbook";
    case Route::Healthz:
      return "healthz";
    case Route::Readyz:
      return "readyz";
    case Route::Metrics:
      return "metrics";
    case Route::Info:
      return "info";
    case Route::NotFound:
      return "not_found";
    case Route::Count:
      break;
  }
  return "unknown";
}

}  // namespace webstack
