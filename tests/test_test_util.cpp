// The test helpers themselves (test_util.h): fixed seeds by test name, and the rule that a
// missing package skips a test, or fails it under CI=true when tools/setup installs it.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "test_util.h"

namespace kvtune::test {
namespace {

// Sets an environment variable for the scope, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(TestSeeds, FixedPerTestNameAndCallAndBelowTwoToThe53) {
  const uint64_t a = derive_seed("Suite.Name", 0);
  EXPECT_EQ(derive_seed("Suite.Name", 0), a);
  EXPECT_NE(derive_seed("Suite.Name", 1), a);
  EXPECT_NE(derive_seed("Suite.Other", 0), a);
  EXPECT_LT(a, uint64_t{1} << 53);
  // test_seed() counts from 0 in each test (the listener resets the count).
  EXPECT_EQ(test_seed(), derive_seed("TestSeeds.FixedPerTestNameAndCallAndBelowTwoToThe53", 0));
  EXPECT_EQ(test_seed(), derive_seed("TestSeeds.FixedPerTestNameAndCallAndBelowTwoToThe53", 1));
}

TEST(TestPackages, AMissingSetupPackageSkipsLocallyAndFailsUnderCi) {
  EXPECT_TRUE(installed_by_setup("dict-wn"));
  EXPECT_TRUE(installed_by_setup("python3-h5py"));
  EXPECT_FALSE(installed_by_setup("dict-gcide"));
  EXPECT_FALSE(installed_by_setup("dict"));  // whole names only
  const MissingPackages wn{{"dict-wn"}, "/usr/share/dictd/wn.index missing"};
  const MissingPackages gcide{{"dict-gcide"}, ""};
  {
    ScopedEnv ci("CI", "false");
    EXPECT_FALSE(wn.fails());
    EXPECT_EQ(wn.message(),
              "dict-wn not installed (/usr/share/dictd/wn.index missing): tools/setup installs it "
              "(a failure, not a skip, under CI=true)");
  }
  {
    ScopedEnv ci("CI", "true");
    EXPECT_TRUE(wn.fails());
    EXPECT_EQ(wn.message(),
              "CI=true: dict-wn not installed (/usr/share/dictd/wn.index missing): run "
              "tools/setup, which installs tools/packages.txt");
    EXPECT_FALSE(gcide.fails()) << "a package tools/setup does not install only skips";
    EXPECT_FATAL_FAILURE(KVTUNE_REQUIRE_PACKAGES((MissingPackages{{"dict-wn"}, "test"})),
                         "CI=true: dict-wn not installed (test): run tools/setup");
  }
  EXPECT_TRUE(missing_dictd({}).empty());
  const auto nope = missing_dictd({"kvtune-no-such-dictionary"});
  ASSERT_EQ(nope.packages.size(), 1u);
  EXPECT_EQ(nope.packages[0], "dict-kvtune-no-such-dictionary");
  EXPECT_NE(nope.detail.find("kvtune-no-such-dictionary.index missing"), std::string::npos);
}

TEST(TestStatistics, FailedTwiceFailsOnlyWhenBothDrawsFail) {
  int calls = 0;
  EXPECT_EQ(failed_twice([&](int) { return ++calls == 1 ? " first" : ""; }), "");
  EXPECT_EQ(calls, 2);
  calls = 0;
  EXPECT_EQ(failed_twice([&](int) { return ++calls, std::string(); }), "");
  EXPECT_EQ(calls, 1) << "a passing first draw is not repeated";
  EXPECT_EQ(failed_twice([&](int attempt) { return " draw " + std::to_string(attempt); }),
            "failed on two independent draws:  draw 0 /  draw 1");
}

}  // namespace
}  // namespace kvtune::test
