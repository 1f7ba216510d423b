// The routes the app answers (the router is in handlers/app.cpp), in a header of their
// own: the router and the metrics, which count requests per route, both need them,
// and core/ (metrics) must not include handlers/.
#pragma once

#include <cstdint>
#include <string_view>

namespace webstack {

// Every route the app answers; metrics are labelled by these names.
enum class Route : std::uint8_t {
  Plaintext,
  Json,
  Db,
  Queries,
  Fortunes,
  Updates,
  MessagesList,
  MessagesPost,
  Guestbook,
  Healthz,
  Readyz,
  Metrics,
  Info,
  NotFound,  // anything unrouted, and requests refused before routing (400, 408, 413, 431)
  Count
};
std::string_view route_name(Route r);

}  // namespace webstack
