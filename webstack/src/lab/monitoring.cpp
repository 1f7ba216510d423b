#include "lab/monitoring.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <cstdio>
#include <stdexcept>

#include "common/process.hpp"
#include "common/text.hpp"
#include "lab/network.hpp"

namespace webstack::lab::monitoring {

namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

constexpr int kPrometheusPort = 9090;  // templates/s6/prometheus/run.mustache
constexpr int kAlertmanagerPort = 9093;

const topo::Host& monitor_of(const topo::Topology& t) {
  const topo::Host* mon = t.monitor();
  if (mon == nullptr) {
    throw std::runtime_error(
        "the topology has no monitor host (a [[host]] with roles = "
        "[\"monitor\"]): no Prometheus or Alertmanager to ask");
  }
  return *mon;
}

// GET from inside the monitor host; the body parsed as JSON.
json::value get_json(const topo::Topology& t, int port, const std::string& path_and_query,
                     const std::vector<std::string>& form = {}) {
  const topo::Host& mon = monitor_of(t);
  const std::string url = fmt::format("http://{}:{}{}", mon.address, port, path_and_query);
  std::vector<std::string> argv = {"curl", "-sS", "--fail", "--max-time", "5"};
  if (!form.empty()) argv.insert(argv.end(), {"-G"});
  for (const auto& f : form) argv.insert(argv.end(), {"--data-urlencode", f});
  argv.push_back(url);
  const auto r = run(in_host(t, mon.name, argv), 10s);
  if (r.exit_code != 0) {
    throw std::runtime_error(fmt::format("{} on {} does not answer: {}", url, mon.name,
                                         text::trim(r.err.empty() ? r.out : r.err)));
  }
  json::error_code ec;
  json::value v = json::parse(r.out, ec);
  if (ec) {
    throw std::runtime_error(
        fmt::format("{} answered something not JSON: {}", url, r.out.substr(0, 200)));
  }
  return v;
}

std::string text(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

const json::value& prometheus_data(const json::value& answer, const std::string& what) {
  const auto& o = answer.as_object();
  if (text(o, "status") != "success") {
    throw std::runtime_error(fmt::format("Prometheus refused {}: {}", what, text(o, "error")));
  }
  return o.at("data");
}

}  // namespace

std::vector<ScrapeTarget> scrape_targets(const topo::Topology& t) {
  const json::value answer = get_json(t, kPrometheusPort, "/api/v1/targets?state=active");
  std::vector<ScrapeTarget> out;
  for (const auto& v : prometheus_data(answer, "targets").at("activeTargets").as_array()) {
    const auto& o = v.as_object();
    const auto& labels = o.at("labels").as_object();
    out.push_back(ScrapeTarget{text(labels, "job"), text(labels, "host"), text(o, "scrapeUrl"),
                               text(o, "health"), text(o, "lastError")});
  }
  return out;
}

std::vector<Alert> firing_alerts(const topo::Topology& t) {
  const json::value answer = get_json(t, kAlertmanagerPort,
                                      "/api/v2/alerts?active=true&silenced=false&"
                                      "inhibited=false&unprocessed=false");
  std::vector<Alert> out;
  for (const auto& v : answer.as_array()) {
    const auto& o = v.as_object();
    Alert a;
    for (const auto& [k, value] : o.at("labels").as_object()) {
      if (value.is_string()) a.labels[std::string(k)] = std::string(value.as_string());
    }
    a.name = a.labels["alertname"];
    a.host = a.labels.count("host") != 0 ? a.labels["host"] : std::string();
    a.severity = a.labels.count("severity") != 0 ? a.labels["severity"] : std::string();
    if (const auto* ann = o.if_contains("annotations"); ann != nullptr && ann->is_object()) {
      a.summary = text(ann->as_object(), "summary");
    }
    a.since = text(o, "startsAt");
    out.push_back(std::move(a));
  }
  return out;
}

std::map<std::string, double> query_by_host(const topo::Topology& t, const std::string& promql) {
  const json::value answer = get_json(t, kPrometheusPort, "/api/v1/query", {"query=" + promql});
  std::map<std::string, double> out;
  const auto& data = prometheus_data(answer, promql).as_object();
  for (const auto& v : data.at("result").as_array()) {
    const auto& o = v.as_object();
    const std::string host = text(o.at("metric").as_object(), "host");
    const auto& value = o.at("value").as_array();  // [time, "number"]
    try {
      out[host] = std::stod(std::string(value.at(1).as_string()));
    } catch (const std::exception&) {
      // NaN or Inf as text: no figure
    }
  }
  return out;
}

std::map<std::string, HostFigures> host_figures(const topo::Topology& t) {
  std::map<std::string, HostFigures> out;
  const auto fill = [&](const std::string& promql, double HostFigures::*field) {
    for (const auto& [host, value] : query_by_host(t, promql)) {
      if (!host.empty() && value == value) out[host].*field = value;  // NaN: no figure
    }
  };
  // The routes users call (not the monitoring and health ones), over the last 10 s.
  const std::string routes = R"(route!~"metrics|healthz|readyz|info")";
  fill(fmt::format("sum by (host) (rate(webstack_http_requests_total{{{}}}[10s]))", routes),
       &HostFigures::requests_per_s);
  fill(fmt::format(R"(sum by (host) (rate(webstack_http_requests_total{{{},status=~"5.."}}[10s])))",
                   routes),
       &HostFigures::errors_5xx_per_s);
  fill("host:webstack_http_request_duration_seconds:p99", &HostFigures::p99_s);
  fill(fmt::format(
           "histogram_quantile(0.5, sum by (host, le) "
           "(rate(webstack_http_request_duration_seconds_bucket{{job=\"webstack-app\",{}}}[10s])))",
           routes),
       &HostFigures::p50_s);
  fill(R"(sum by (host) (rate(haproxy_frontend_http_requests_total{proxy="site"}[10s])))",
       &HostFigures::requests_per_s);
  fill(
      R"(sum by (host) (rate(haproxy_frontend_http_responses_total{proxy="site",code="5xx"}[10s])))",
      &HostFigures::errors_5xx_per_s);
  fill("max by (host) (mysql_slave_status_seconds_behind_master)", &HostFigures::replication_lag_s);
  for (const auto& a : firing_alerts(t)) {
    if (!a.host.empty()) ++out[a.host].alerts;
  }
  return out;
}

std::string alerts_json(const std::vector<Alert>& alerts) {
  json::array out;
  for (const auto& alert : alerts) {
    json::object o;
    for (const auto& [k, v] : alert.labels) o[k] = v;
    o["summary"] = alert.summary;
    o["since"] = alert.since;
    out.push_back(std::move(o));
  }
  return json::serialize(out);
}

void print_alerts(const std::vector<Alert>& alerts, std::FILE* out) {
  if (alerts.empty()) {
    std::fprintf(out, "no alerts firing\n");
    return;
  }
  std::fprintf(out, "%-22s %-10s %-9s %-20s %s\n", "ALERT", "HOST", "SEVERITY", "SINCE", "SUMMARY");
  for (const auto& a : alerts) {
    std::fprintf(out, "%-22s %-10s %-9s %-20s %s\n", a.name.c_str(),
                 a.host.empty() ? "-" : a.host.c_str(), a.severity.c_str(),
                 a.since.substr(0, 19).c_str(), a.summary.c_str());
  }
}

}  // namespace webstack::lab::monitoring
