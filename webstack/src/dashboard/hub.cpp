#include "dashboard/hub.hpp"

#include <fmt/format.h>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <regex>
#include <sstream>
#include <stdexcept>

#include "common/process.hpp"
#include "common/text.hpp"
#include "lab/network.hpp"
#include "lab/site.hpp"
#include "lab/status.hpp"
#include "lab/tls.hpp"

namespace webstack::dashboard {

namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr std::size_t kEvents = 100;
constexpr auto kSampleEvery = 1s;
constexpr auto kActionTimeout = std::chrono::minutes(5);

LoadTarget load_target(const topo::Topology& t, const std::string& state_dir) {
  LoadTarget target;
  const auto clients = t.with_role(topo::Role::Client);
  if (!clients.empty()) target.netns = lab::host_namespace(t, clients.front()->name);
  if (!t.virtual_addresses.empty()) {
    target.address = t.virtual_addresses.front();
  } else if (const auto lbs = t.with_role(topo::Role::LoadBalancer); !lbs.empty()) {
    target.address = lbs.front()->address;
  }
  const auto profile = lab::recorded_profile(state_dir);
  target.tls = !(profile && *profile == render::Profile::Seed);
  target.port = target.tls ? t.https_port : t.http_port;
  target.ca_file = lab::lab_ca_path(state_dir);
  target.site_name = t.site_name;
  return target;
}

json::object topology_json(const topo::Topology& t) {
  json::array hosts;
  for (const auto& h : t.hosts) {
    json::array roles;
    for (auto r : h.roles) roles.emplace_back(topo::role_name(r));
    std::string db;
    if (h.has(topo::Role::Database)) db = h.db == topo::DbRole::Primary ? "primary" : "replica";
    hosts.push_back(
        json::object{{"name", h.name}, {"address", h.address}, {"roles", roles}, {"db", db}});
  }
  json::array vips;
  for (const auto& v : t.virtual_addresses) vips.emplace_back(v);
  return {{"hosts", std::move(hosts)}, {"virtual_addresses", std::move(vips)}};
}

// A host or HOST/SERVICE name as the topology spells names: never an option or a path.
bool plain_name(const std::string& s) {
  static const std::regex name("[a-z][a-z0-9-]*(/[a-z][a-z0-9-]*)?");
  return s.size() <= 64 && std::regex_match(s, name);
}

std::string text_field(const json::object& o, const char* key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return {};
  if (!v->is_string()) throw std::invalid_argument(fmt::format("\"{}\" must be a string", key));
  return std::string(v->as_string());
}

Reply error(unsigned status, const std::string& why) {
  return {status, error_json(why)};
}

}  // namespace

std::string error_json(const std::string& why) {
  return json::serialize(json::object{{"error", why}});
}

Hub::Hub(topo::Topology topology, HubOptions options)
    : topology_(std::move(topology)),
      options_(std::move(options)),
      load_(load_target(topology_, options_.state_dir)) {
  sampler_ = std::thread([this] { sample_loop(); });
}

Hub::~Hub() {
  {
    std::lock_guard lock(m_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (sampler_.joinable()) sampler_.join();
  load_.stop();
  if (action_.joinable()) action_.join();
}

void Hub::sample_loop() {
  std::unique_lock lock(m_);
  // A sample every second, from start to start (one takes about 0.2 s).
  for (auto next = std::chrono::steady_clock::now(); !stopping_;) {
    next = std::max(next + kSampleEvery, std::chrono::steady_clock::now());
    lock.unlock();
    std::string status, err;
    try {
      // Without the firewalls' full rulesets: the page does not show them, and they
      // would be most of every answer.
      status = lab::to_json(lab::lab_status(topology_, options_.state_dir), false);
    } catch (const std::exception& e) {
      err = e.what();
    }
    lock.lock();
    if (err.empty()) {
      status_json_ = std::move(status);
      status_error_.clear();
    } else {
      status_error_ = std::move(err);
    }
    wake_.wait_until(lock, next, [this] { return stopping_; });
  }
}

void Hub::event(const std::string& level, const std::string& text) {
  std::lock_guard lock(m_);
  events_.push_back({next_event_++, wall_ms(), level, text});
  while (events_.size() > kEvents) events_.pop_front();
}

std::string Hub::state_json() const {
  const auto load = load_.stats();
  json::object by_host;
  for (const auto& [host, n] : load.by_host) by_host[host] = n;
  json::object o{{"lab", topology_.name},
                 {"site", topology_.site_name},
                 {"time_ms", wall_ms()},
                 {"topology", topology_json(topology_)},
                 {"load", json::object{{"running", load.running},
                                       {"rate", load.rate},
                                       {"sent", load.sent},
                                       {"ok", load.ok},
                                       {"failed", load.failed},
                                       {"by_host", std::move(by_host)}}}};
  std::string status;
  {
    std::lock_guard lock(m_);
    json::array events;
    for (const auto& e : events_) {
      events.push_back(json::object{
          {"seq", e.seq}, {"time_ms", e.time_ms}, {"level", e.level}, {"text", e.text}});
    }
    o["events"] = std::move(events);
    o["action"] = json::object{{"running", !action_label_.empty()}, {"label", action_label_}};
    o["status_error"] = status_error_;
    status = status_json_;
  }
  // The status report is JSON already: spliced in rather than parsed again.
  std::string out = json::serialize(o);
  out.pop_back();
  return out + ",\"status\":" + status + "}";
}

std::string Hub::requests_json(std::uint64_t after) const {
  // The app names the database node by address:port (X-DB-Node): shown by host name.
  const auto node_name = [this](const std::string& node) {
    const std::string address = node.substr(0, node.rfind(':'));
    for (const auto& h : topology_.hosts) {
      if (h.address == address) return h.name;
    }
    return node;
  };
  std::uint64_t next = 0;
  json::array rows;
  for (const auto& r : load_.after(after, 200, &next)) {
    rows.push_back(json::object{{"seq", r.seq},
                                {"time_ms", r.time_ms},
                                {"method", r.method},
                                {"path", r.path},
                                {"status", r.status},
                                {"served_by", r.served_by},
                                {"db_node", node_name(r.db_node)},
                                {"ms", r.ms},
                                {"error", r.error}});
  }
  return json::serialize(json::object{{"next", next}, {"requests", std::move(rows)}});
}

Reply Hub::act(const std::string& body) {
  std::lock_guard serial(act_m_);
  json::object req;
  std::string action, target, state;
  try {
    auto v = json::parse(body);
    if (!v.is_object()) return error(400, "the body must be a JSON object");
    req = std::move(v.as_object());
    action = text_field(req, "action");
    target = text_field(req, "target");
    state = text_field(req, "state");
  } catch (const std::exception& e) {
    return error(400, fmt::format("bad request body: {}", e.what()));
  }
  if (!target.empty() && !plain_name(target)) {
    return error(400, fmt::format("target \"{}\": not a host or HOST/SERVICE name", target));
  }
  const auto host_of = [&](const std::string& spec) { return spec.substr(0, spec.find('/')); };
  if (!target.empty() && topology_.find(host_of(target)) == nullptr) {
    return error(400,
                 fmt::format("target \"{}\": no host {} in the topology", target, host_of(target)));
  }

  if (action == "load") {
    if (state == "stop") {
      load_.stop();
      event("info", "load generator stopped");
      return {202, json::serialize(json::object{{"accepted", true}, {"label", "load stopped"}})};
    }
    if (state != "start") return error(400, "load: state must be \"start\" or \"stop\"");
    int rate = 20;
    if (const auto* r = req.if_contains("rate"); r != nullptr && !r->is_null()) {
      if (!r->is_int64()) return error(400, "load: rate must be an integer");
      rate = static_cast<int>(std::clamp<std::int64_t>(r->as_int64(), -1, 1'000'000));
    }
    try {
      load_.start(rate);
    } catch (const std::invalid_argument& e) {
      return error(400, std::string("load: ") + e.what());
    }
    const auto label = fmt::format("load generator: {} requests/s from the client host", rate);
    event("info", label);
    return {202, json::serialize(json::object{{"accepted", true}, {"label", label}})};
  }

  std::vector<std::string> argv;
  std::string label;
  if (action == "stop" || action == "start" || action == "kill" || action == "pause" ||
      action == "resume") {
    if (target.find('/') == std::string::npos) {
      return error(400, fmt::format("{}: target must be HOST/SERVICE", action));
    }
    argv = {action, target};
    label = fmt::format("{} {}", action, target);
  } else if (action == "link") {
    if (target.empty() || target.find('/') != std::string::npos) {
      return error(400, "link: target must be a host");
    }
    if (state != "up" && state != "down") return error(400, "link: state must be up or down");
    argv = {"link", target, state};
    label = fmt::format("link {} {}", target, state);
  } else if (action == "promote") {
    const auto* h = topology_.find(target);
    if (h == nullptr || !h->has(topo::Role::Database)) {
      return error(400, "promote: target must be a database host");
    }
    argv = {"db", "promote", target};
    label = "promote " + target;
  } else if (action == "deploy") {
    argv = {"deploy"};
    label = "rolling deploy";
  } else {
    return error(400, fmt::format("unknown action \"{}\" (stop, start, kill, pause, resume, "
                                  "link, promote, deploy, load)",
                                  action));
  }
  return start_action(std::move(argv), std::move(label));
}

Reply Hub::start_action(std::vector<std::string> args, std::string label) {
  // In a session of its own (setsid): a ^C at the dashboard's terminal stops the
  // dashboard, which then waits for the action, rather than cutting a deploy or a
  // promotion in the middle.
  std::vector<std::string> argv = {"setsid", options_.cli_path};
  argv.insert(argv.end(), args.begin(), args.end());
  if (!options_.topology_file.empty()) argv.insert(argv.end(), {"-f", options_.topology_file});
  argv.insert(argv.end(), {"--state-dir", options_.state_dir});
  {
    std::lock_guard lock(m_);
    if (!action_label_.empty()) {
      return error(409, fmt::format("\"{}\" is still running", action_label_));
    }
    action_label_ = label;
  }
  if (action_.joinable()) action_.join();  // the previous one has finished
  event("info", label + ": started");
  try {
    start_thread(std::move(argv), label);
  } catch (const std::exception& e) {
    std::lock_guard lock(m_);
    action_label_.clear();
    return error(500, fmt::format("{}: cannot start: {}", label, e.what()));
  }
  return {202, json::serialize(json::object{{"accepted", true}, {"label", label}})};
}

void Hub::start_thread(std::vector<std::string> argv, const std::string& label) {
  action_ = std::thread([this, argv = std::move(argv), label] {
    ProcessResult r;
    try {
      r = run(argv, kActionTimeout);
    } catch (const std::exception& e) {
      r.err = e.what();
    }
    std::string out = text::trim(r.out + (r.err.empty() ? "" : "\n" + r.err));
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      if (!text::trim(line).empty()) event(r.exit_code == 0 ? "info" : "error", line);
    }
    event(r.exit_code == 0 ? "info" : "error",
          fmt::format("{}: {}", label,
                      r.exit_code == 0 ? "done" : fmt::format("failed (exit {})", r.exit_code)));
    std::lock_guard lock(m_);
    action_label_.clear();
  });
}

}  // namespace webstack::dashboard
