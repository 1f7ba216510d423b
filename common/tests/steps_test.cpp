#include "common/steps.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace webstack {
namespace {

// What the printer wrote, through an in-memory FILE*.
class Captured {
 public:
  Captured() : file_(::open_memstream(&buf_, &len_)) {}
  ~Captured() {
    std::fclose(file_);
    std::free(buf_);
  }
  Captured(const Captured&) = delete;
  Captured& operator=(const Captured&) = delete;
  std::FILE* file() { return file_; }
  std::string text() {
    std::fflush(file_);
    return std::string(buf_, len_);
  }

 private:
  char* buf_ = nullptr;
  std::size_t len_ = 0;
  std::FILE* file_;
};

TEST(StepPrinter, AStepIsItsNameThenOkAndItsValuePassesThrough) {
  Captured out;
  StepPrinter step(out.file());
  EXPECT_EQ(step("render configs", [] { return 42; }), 42);
  const auto text = out.text();
  EXPECT_EQ(text.rfind("  render configs ...", 0), 0u) << text;
  EXPECT_NE(text.find(" ok ("), std::string::npos) << text;
  EXPECT_EQ(text.back(), '\n');
}

TEST(StepPrinter, AFailedStepSaysFailedAndRethrows) {
  Captured out;
  StepPrinter step(out.file());
  EXPECT_THROW(step("bootstrap", []() -> void { throw std::runtime_error("no"); }),
               std::runtime_error);
  EXPECT_NE(out.text().find(" FAILED ("), std::string::npos) << out.text();
}

TEST(StepPrinter, ANoteFollowsTheTime) {
  Captured out;
  StepPrinter step(out.file());
  step.note("fence web-01", [] { return std::string("was read-only"); });
  const auto text = out.text();
  EXPECT_NE(text.find(" ms)  was read-only\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace webstack
