// webstack-devstack: the app on a real MariaDB primary + replica on loopback, for trying it
// by hand until the full lab (`webstack up`) exists. Stops everything on Ctrl-C or SIGTERM.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>

#include "app_process.hpp"
#include "mariadb_pair.hpp"

int main(int argc, char** argv) {
  try {
    CLI::App cli{"webstack-devstack: webstack-app over a MariaDB primary + replica on 127.0.0.1"};
    unsigned port = 8080;
    std::vector<std::string> sets;
    cli.add_option("-p,--port", port, "Port of webstack-app on 127.0.0.1");
    cli.add_option("--set", sets, "Passed to webstack-app as --set KEY=VALUE");
    CLI11_PARSE(cli, argc, argv);

    // Block the stop signals before any thread or child exists, then wait for one.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    std::fputs("starting MariaDB primary + replica...\n", stderr);
    webstack::it::MariaDbPair db;
    auto opts = webstack::it::app_options_for(db);
    opts.settings.push_back(fmt::format("server.port={}", port));
    for (auto& s : sets) opts.settings.push_back(s);
    opts.stop_grace = std::chrono::seconds(15);
    webstack::it::AppProcess app(std::move(opts));
    std::fprintf(stderr,
                 "\nwebstack-app  http://127.0.0.1:%u/guestbook  (pid %d, log %s)\n"
                 "primary      127.0.0.1:%u   replica 127.0.0.1:%u   (user %s)\n"
                 "root shell   mariadb --socket=%s -uroot\n\nCtrl-C stops everything.\n",
                 app.port(), app.pid(), app.log_path().c_str(), db.port(0), db.port(1),
                 db.app_user().c_str(), db.socket_path(0).c_str());
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::fputs("stopping...\n", stderr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "webstack-devstack: %s\n", e.what());
    return 1;
  }
  return 0;
}
