#include "common/steps.hpp"

namespace webstack {

void StepPrinter::heading(const std::string& text) const {
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

void StepPrinter::begin(const std::string& what) const {
  std::fprintf(out_, "  %-58s ", (what + " ...").c_str());
  std::fflush(out_);
}

void StepPrinter::end(std::chrono::steady_clock::time_point t0, bool ok,
                      const std::string& note) const {
  std::fprintf(out_, "%s (%.0f ms)%s\n", ok ? "ok" : "FAILED", ms_since(t0),
               note.empty() ? "" : ("  " + note).c_str());
  std::fflush(out_);
}

}  // namespace webstack
