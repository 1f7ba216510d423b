#include "db/routing.hpp"

#include <algorithm>

namespace webstack::db {

std::optional<std::size_t> choose_writer(std::span<const NodeStatus> nodes) {
  std::optional<std::size_t> writer;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (!nodes[i].reachable || !nodes[i].writable) {
      continue;
    }
    if (writer) {
      return std::nullopt;  // ambiguous: refuse rather than guess
    }
    writer = i;
  }
  return writer;
}

bool healthy_replica(const NodeStatus& node, std::chrono::milliseconds max_lag) {
  return node.reachable && !node.writable && node.replicating && node.lag_ms && *node.lag_ms >= 0 &&
         *node.lag_ms <= max_lag.count();
}

ReadChoice choose_reader(std::span<const NodeStatus> nodes, std::chrono::milliseconds max_lag,
                         std::uint64_t rr) {
  const auto healthy =
      static_cast<std::size_t>(std::count_if(nodes.begin(), nodes.end(), [&](const NodeStatus& n) {
        return healthy_replica(n, max_lag);
      }));
  if (healthy > 0) {
    std::size_t pick = static_cast<std::size_t>(rr % healthy);
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (!healthy_replica(nodes[i], max_lag)) {
        continue;
      }
      if (pick-- == 0) {
        return {i, ReadPath::Replica};
      }
    }
  }
  const ReadPath primary_path = nodes.size() == 1 ? ReadPath::Primary : ReadPath::Fallback;
  if (auto w = choose_writer(nodes)) {
    return {*w, primary_path};
  }
  // No single writer (primary down, or several claim it): a possibly stale answer from
  // any reachable node beats none. Writes are refused meanwhile, so nothing diverges.
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].reachable) {
      return {i, ReadPath::Fallback};
    }
  }
  return {std::nullopt, ReadPath::Fallback};
}

bool valid_gtid(std::string_view gtid) {
  if (gtid.empty() || gtid.size() > 256) {
    return false;
  }
  // States: reading the 3 numbers of one triple, separated by '-', triples by ','.
  int part = 0;  // 0 domain, 1 server, 2 sequence
  std::size_t digits = 0;
  for (char c : gtid) {
    if (c >= '0' && c <= '9') {
      if (++digits > 20) {
        return false;  // beyond uint64
      }
    } else if (c == '-' && part < 2 && digits > 0) {
      ++part;
      digits = 0;
    } else if (c == ',' && part == 2 && digits > 0) {
      part = 0;
      digits = 0;
    } else {
      return false;
    }
  }
  return part == 2 && digits > 0;
}

bool is_connection_error(unsigned code) {
  switch (code) {
    // Client side (errmsg.h): the socket or the protocol state is gone.
    case 2001:  // CR_SOCKET_CREATE_ERROR
    case 2002:  // CR_CONNECTION_ERROR
    case 2003:  // CR_CONN_HOST_ERROR
    case 2004:  // CR_IPSOCK_ERROR
    case 2005:  // CR_UNKNOWN_HOST
    case 2006:  // CR_SERVER_GONE_ERROR
    case 2008:  // CR_OUT_OF_MEMORY
    case 2011:  // CR_TCP_CONNECTION
    case 2012:  // CR_SERVER_HANDSHAKE_ERR
    case 2013:  // CR_SERVER_LOST
    case 2014:  // CR_COMMANDS_OUT_OF_SYNC
    case 2020:  // CR_NET_PACKET_TOO_LARGE
    case 2026:  // CR_SSL_CONNECTION_ERROR
    case 2027:  // CR_MALFORMED_PACKET
    case 2055:  // CR_SERVER_LOST_EXTENDED
    case 5013:  // CR_ERR_NET_READ
    case 5014:  // CR_ERR_NET_WRITE
    case 5015:  // CR_ERR_NET_UNCOMPRESS
    // Server side (mysqld_error.h): the session is being torn down.
    case 1053:  // ER_SERVER_SHUTDOWN
    case 1152:  // ER_ABORTING_CONNECTION
    case 1158:  // ER_NET_READ_ERROR
    case 1159:  // ER_NET_READ_INTERRUPTED
    case 1160:  // ER_NET_ERROR_ON_WRITE
    case 1161:  // ER_NET_WRITE_INTERRUPTED
    case 1317:  // ER_QUERY_INTERRUPTED
    case 1927:  // ER_CONNECTION_KILLED
      return true;
    default:
      return false;
  }
}

}  // namespace webstack::db
