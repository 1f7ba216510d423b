// The mustache contexts of render.cpp's templates, shared by render.cpp and
// render_context.cpp.
#pragma once

#include <string_view>

#include <kainjow/mustache.hpp>

#include "render/render.hpp"
#include "topology/topology.hpp"

namespace webstack::render {

// Everything every template may use; the per-host keys are set by host_context().
kainjow::mustache::data site_context(const topo::Topology& t, const Options& o);

// `site` with the keys of host `h`.
kainjow::mustache::data host_context(const kainjow::mustache::data& site, const topo::Topology& t,
                                     const topo::Host& h, const Options& o);

// The web host runs application server `kind`: its own, or a benchmark peer.
bool runs(const Options& o, const topo::Host& h, std::string_view kind);

}  // namespace webstack::render
