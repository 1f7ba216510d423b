// One way every multi-step command shows its progress (`webstack up`, `db promote`,
// `db rebuild`, `deploy`, `machines up`): a line per step, its name, then "ok (N ms)" or
// "FAILED (N ms)", and what the step had to say.
//
//   StepPrinter step(stdout);
//   step("network namespaces", [&] { network_up(t); });          // "  network ... ok (12 ms)"
//   auto files = step("render configs", [&] { return render(); });    // the step's value
//   step.note("fence lb-01", [&] { return std::string("was read-only"); });  // "ok (3 ms)  was.."
#pragma once

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <type_traits>

#include "common/time.hpp"

namespace webstack {

class StepPrinter {
 public:
  explicit StepPrinter(std::FILE* out) : out_(out) {}

  // Runs `f` as step `what` and returns what it returns; an exception is printed as
  // FAILED and passes on.
  template <class F>
  auto operator()(const std::string& what, F&& f) {
    begin(what);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      if constexpr (std::is_void_v<decltype(f())>) {
        f();
        end(t0, true, {});
      } else {
        auto r = f();
        end(t0, true, {});
        return r;
      }
    } catch (...) {
      end(t0, false, {});
      throw;
    }
  }

  // As above for a step that returns a note (a string) to print after its time.
  template <class F>
  void note(const std::string& what, F&& f) {
    begin(what);
    const auto t0 = std::chrono::steady_clock::now();
    std::string said;
    try {
      said = f();
    } catch (...) {
      end(t0, false, {});
      throw;
    }
    end(t0, true, said);
  }

  // A heading line between groups of steps ("web-01:").
  void heading(const std::string& text) const;

 private:
  void begin(const std::string& what) const;
  void end(std::chrono::steady_clock::time_point t0, bool ok, const std::string& note) const;

  std::FILE* out_;
};

}  // namespace webstack
