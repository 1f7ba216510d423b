#include "common/gtid.hpp"

#include <algorithm>
#include <map>

namespace webstack {

namespace {

// "0-1-17,1-2-5": domain -> sequence number.
std::map<std::string, unsigned long long> gtid_sequences(const std::string& pos) {
  std::map<std::string, unsigned long long> out;
  std::size_t start = 0;
  while (start < pos.size()) {
    const auto end = std::min(pos.find(',', start), pos.size());
    std::string one = pos.substr(start, end - start);
    one.erase(0, one.find_first_not_of(" \n\t"));
    const auto first = one.find('-');
    const auto last = one.rfind('-');
    if (first != std::string::npos && last != first) {
      try {
        out[one.substr(0, first)] = std::stoull(one.substr(last + 1));
      } catch (const std::exception&) {
        // Not a GTID: ignored (the comparison then treats the domain as missing).
      }
    }
    start = end + 1;
  }
  return out;
}

}  // namespace

bool gtid_covers(const std::string& have, const std::string& want) {
  const auto h = gtid_sequences(have);
  for (const auto& [domain, seq] : gtid_sequences(want)) {
    const auto it = h.find(domain);
    if (it == h.end() || it->second < seq) return false;
  }
  return true;
}

}  // namespace webstack
