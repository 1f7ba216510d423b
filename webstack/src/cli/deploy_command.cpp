// deploy: the lab's rolling restart, or --target hosts (the topology on real servers
// with Ansible).
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.hpp"
#include "hosts/deploy.hpp"
#include "lab/rolling_restart.hpp"

namespace webstack::cli {

namespace {

struct DeployCommandOptions {
  bool rolling = true;
  std::string target = "lab";
  hosts::DeployOptions hosts;
  std::vector<CLI::Option*> hosts_only;  // refused without --target hosts
};

int deploy_hosts(const Context& ctx, const topo::Topology& t, hosts::DeployOptions h) {
  if (h.vault.empty()) {
    throw std::invalid_argument(
        "deploy --target hosts: --vault FILE is required (the site's secrets; made when "
        "the file does not exist)");
  }
  h.render.templates_dir = ctx.templates();
  h.render.www_dir = ctx.www();
  h.ansible_dir = ctx.source_path("WEBSTACK_ANSIBLE", "deploy/ansible");
  h.vault = absolute(h.vault);
  if (h.ca_dir.empty()) {
    h.ca_dir = std::filesystem::path(h.vault).replace_extension().string() + "-ca";
  }
  h.ca_dir = absolute(h.ca_dir);
  if (!h.vault_password_file.empty()) h.vault_password_file = absolute(h.vault_password_file);
  if (!h.bundle_dir.empty()) h.bundle_dir = absolute(h.bundle_dir);
  return hosts::deploy(t, h);
}

}  // namespace

void add_deploy_command(CLI::App& cli, Context& ctx, Commands& out) {
  auto o = std::make_shared<DeployCommandOptions>();
  auto* deploy = cli.add_subcommand(
      "deploy",
      "Lab: restart every web host's app with no failed request (one host at a time, drained "
      "on every load balancer, restarted, ready, back in rotation). --target hosts: put the "
      "topology on real servers (render, secrets, deploy/ansible/site.yml over SSH)");
  add_lab_options(deploy, ctx);
  deploy->add_flag("--rolling", o->rolling, "One host at a time (the only way it deploys)");
  deploy->add_option("--target", o->target, "lab (the running lab) or hosts (real servers)")
      ->check(CLI::IsMember({"lab", "hosts"}))
      ->capture_default_str();
  auto& h = o->hosts;
  o->hosts_only = {
      deploy->add_option("--vault", h.vault,
                         "hosts: the secrets (ansible-vault file); made when missing"),
      deploy->add_option("--vault-password-file", h.vault_password_file,
                         "hosts: the vault's password (default: asked when it is encrypted)"),
      deploy->add_option("--ca-dir", h.ca_dir,
                         "hosts: where a new vault's CA is kept (default: <vault>-ca)"),
      deploy->add_option("--bundle", h.bundle_dir,
                         "hosts: keep the rendered bundle here (default: a temporary directory)"),
      deploy->add_flag("--check", h.check,
                       "hosts: show what would change (ansible --check --diff), change nothing"),
      deploy->add_option("ansible_args", h.ansible_args,
                         "hosts: more ansible-playbook arguments, after -- (--limit, "
                         "--private-key, -e webstack_app_restart=true ...)")};
  out.push_back({deploy, [&ctx, o](const topo::Topology& t) {
                   if (o->target == "hosts") return deploy_hosts(ctx, t, o->hosts);
                   for (const auto* opt : o->hosts_only) {
                     if (opt->count() > 0) {
                       throw std::invalid_argument(fmt::format(
                           "deploy: {} is for --target hosts (the lab's deploy is a rolling "
                           "restart)",
                           opt->get_name()));
                     }
                   }
                   lab::RollingRestartOptions d;
                   d.state_dir = ctx.lab_dir(t);
                   lab::rolling_restart(t, d, stdout);
                   return 0;
                 }});
}

}  // namespace webstack::cli
