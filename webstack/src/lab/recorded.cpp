#include "lab/recorded.hpp"

#include <sstream>

#include "common/process.hpp"
#include "common/text.hpp"
#include "lab/paths.hpp"

namespace webstack::lab {

using topo::DbRole;
using topo::Role;

topo::Topology with_current_primary(const topo::Topology& t, const std::string& state_dir) {
  const std::string recorded = text::trim(read_text_or_empty(StatePaths(state_dir).primary()));
  const topo::Host* h = recorded.empty() ? nullptr : t.find(recorded);
  if (h == nullptr || !h->has(Role::Database)) return t;
  topo::Topology out = t;
  for (auto& host : out.hosts) {
    if (host.has(Role::Database)) {
      host.db = host.name == recorded ? DbRole::Primary : DbRole::Replica;
    }
  }
  return out;
}

std::optional<render::Profile> recorded_profile(const std::string& state_dir) {
  const auto text = text::trim(read_text_or_empty(StatePaths(state_dir).profile()));
  if (text.empty()) return std::nullopt;
  return render::parse_profile(text);
}

std::vector<std::string> recorded_peers(const std::string& state_dir) {
  std::vector<std::string> out;
  std::istringstream in(read_text_or_empty(StatePaths(state_dir).peers()));
  for (std::string k; std::getline(in, k);)
    if (!text::trim(k).empty()) out.push_back(text::trim(k));
  return out;
}

}  // namespace webstack::lab
