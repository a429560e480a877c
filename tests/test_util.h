// Shared test helpers: fixed seeds, temp folders, tolerances declared once per dtype.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/corpus.h"
#include "data/dictd_reader.h"

namespace kvtune::test {

// A whole file's bytes ("" when it cannot be read), and bytes written over a file.
inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Relative tolerances, declared once (CTranslate2 style), for results computed in the given dtype
// against a float64 reference with no sampling or finite differencing. float64: the ops sum at
// most a few hundred terms, so their rounding error is ~1e-15 relative; 1e-12 leaves a margin and
// still catches a float32 step anywhere on the path (~1e-7).
inline double rel_tol(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat64:
      return 1e-12;
    case torch::kFloat32:
      return 1e-5;
    case torch::kBFloat16:
      return 4e-2;
    case torch::kFloat16:
      return 1e-2;
    default:
      return 0.0;
  }
}

// max |a-b| / max(max|b|, tiny)
inline double rel_error(const torch::Tensor& a, const torch::Tensor& b) {
  auto diff = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
  auto scale = b.to(torch::kFloat64).abs().max().item<double>();
  return diff / std::max(scale, 1e-30);
}

// Test seeds. Every seed a test draws is fixed by default, so every run of the suite sees the
// same data and no test can fail by chance (CI included). The environment variable
// KVTUNE_TEST_SEED picks the base seed all of them derive from:
//   unset or "fixed"  the fixed base kFixedBaseSeed;
//   "random"          a fresh base from std::random_device, printed at the start of each test;
//   an integer N      base N: replays a run that printed "base N".
// The k-th seed a test asks for (k = 0, 1, ...) is a hash of (base, the test's full name, k), so
// different tests get different seeds, and a test gets the same seeds whether it runs alone (ctest
// runs each test in its own process) or among others (./kvtune_tests, --gtest_filter, repeats).
// SeedListener (installed by tests/main.cpp) starts the count at each test and seeds torch's
// global generator the same way, for the tests that draw from it without asking for a seed.
inline constexpr uint64_t kFixedBaseSeed = 0x6b7674756e65ull;  // "kvtune"

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct SeedBase {
  uint64_t value = kFixedBaseSeed;
  bool random = false;  // drawn from std::random_device: printed, so that it can be replayed
  bool fixed = true;    // the default base (nothing is printed)
};

inline SeedBase read_seed_base() {
  const char* env = std::getenv("KVTUNE_TEST_SEED");
  const std::string s = env ? env : "";
  SeedBase b;
  if (s.empty() || s == "fixed") return b;
  b.fixed = false;
  if (s == "random") {
    std::random_device rd;
    b.value = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    b.random = true;
    return b;
  }
  size_t used = 0;
  try {
    if (s.find_first_not_of("0123456789") == std::string::npos) b.value = std::stoull(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || used == 0) {
    std::cerr << "KVTUNE_TEST_SEED is '" << s << "': expected fixed, random or an integer\n";
    std::exit(2);
  }
  return b;
}

inline const SeedBase& seed_base() {
  static const SeedBase base = read_seed_base();
  return base;
}

// Seeds stay below 2^53: one that passes through a double (JSON) or an int64 stays exact.
inline uint64_t derive_seed(const std::string& name, uint64_t index) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the name
  for (const unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return splitmix64(splitmix64(splitmix64(seed_base().value) ^ h) ^ index) >> 11;
}

// The full name of the running test ("Suite.Name", "Prefix/Suite.Name/0"), or of the running
// suite outside a test (SetUpTestSuite); "" outside both.
inline std::string current_test_name() {
  const auto* unit = ::testing::UnitTest::GetInstance();
  if (const auto* info = unit->current_test_info())
    return std::string(info->test_suite_name()) + "." + info->name();
  if (const auto* suite = unit->current_test_suite()) return suite->name();
  return "";
}

// How many seeds the running test has drawn (reset by SeedListener at each test start).
inline uint64_t& seeds_drawn() {
  static uint64_t count = 0;
  return count;
}

// The running test's next seed (see above); printed unless the base is the fixed default.
inline uint64_t test_seed() {
  const uint64_t seed = derive_seed(current_test_name(), seeds_drawn()++);
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  if (!seed_base().fixed) {
    std::cout << "[ seed     ] " << seed << " (base " << seed_base().value
              << ": KVTUNE_TEST_SEED=" << seed_base().value << " replays it)\n";
  }
  return seed;
}

// Restarts the seed count at each test and seeds torch's global generator per suite (before
// SetUpTestSuite) and per test, from the same base; prints a random base once per test.
class SeedListener : public ::testing::EmptyTestEventListener {
 public:
  void OnTestSuiteStart(const ::testing::TestSuite& suite) override {
    torch::manual_seed(derive_seed(std::string(suite.name()) + " [torch]", 0));
  }
  void OnTestStart(const ::testing::TestInfo& info) override {
    seeds_drawn() = 0;
    const std::string name = std::string(info.test_suite_name()) + "." + info.name();
    torch::manual_seed(derive_seed(name + " [torch]", 0));
    if (seed_base().random) {
      std::cout << "[ seed     ] random base " << seed_base().value
                << " (KVTUNE_TEST_SEED=" << seed_base().value << " replays " << name << ")\n";
    }
  }
};

// A statistical check drawn a second time before it fails. `draw(attempt)` runs the check on
// fresh, independent randomness (attempt 0, then 1) and returns "" when it passed, else what
// failed. Only when the first draw fails is the second run; the result is "" when either passed,
// else both failures. A correct implementation then fails with probability alpha^2 when one draw
// fails with alpha; a wrong one fails every draw and is not rescued.
template <typename Draw>
std::string failed_twice(Draw&& draw) {
  const std::string first = draw(0);
  if (first.empty()) return "";
  std::cout << "[ redraw   ] failed:" << first << " (drawn again, independently)\n";
  const std::string second = draw(1);
  if (second.empty()) return "";
  return "failed on two independent draws: " + first + " / " + second;
}

// A temporary folder removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    auto base = std::filesystem::temp_directory_path();
    // A unique name, not a test seed: it must differ between processes running at once.
    std::mt19937_64 rng(std::random_device{}());
    path_ = base / ("kvtune_test_" + std::to_string(rng()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The least-squares slope of y against x (at least two distinct x).
inline double least_squares_slope(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sx += x[i];
    sy += y[i];
    sxx += x[i] * x[i];
    sxy += x[i] * y[i];
  }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

inline std::string source_dir() {
  return KVTUNE_SOURCE_DIR;
}

// ---- Packages a test needs ----
//
// A test that needs a Debian package (a dictd dictionary, python3-h5py) skips with a message when
// it is missing, so that a partial setup still runs the rest. Under CI=true (CI runs
// `CI=true bash .ci/run`, after tools/setup) a missing package that tools/packages.txt lists is a
// failure instead: CI would otherwise pass while silently testing less. A package outside that
// list (dict-gcide) still only skips.

// True when the environment variable CI is "true".
inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// True when tools/packages.txt lists `package` (tools/setup installs it).
inline bool installed_by_setup(const std::string& package) {
  std::ifstream f(source_dir() + "/tools/packages.txt");
  std::string line;
  while (std::getline(f, line)) {
    const auto end = line.find_first_of(" \t#");
    if (line.substr(0, end) == package) return true;
  }
  return false;
}

// Missing Debian packages, and what showed they are missing (files, an error message).
struct MissingPackages {
  std::vector<std::string> packages;
  std::string detail;
  bool empty() const { return packages.empty(); }
  // Under CI=true, a missing package that tools/setup installs fails the test.
  bool fails() const {
    if (!in_ci()) return false;
    return std::any_of(packages.begin(), packages.end(), installed_by_setup);
  }
  std::string message() const {
    std::string names;
    for (const auto& p : packages) names += (names.empty() ? "" : ", ") + p;
    std::string m = names + " not installed" + (detail.empty() ? "" : " (" + detail + ")");
    if (fails()) return "CI=true: " + m + ": run tools/setup, which installs tools/packages.txt";
    const bool in_setup = std::any_of(packages.begin(), packages.end(), installed_by_setup);
    return m + (in_setup ? ": tools/setup installs it (a failure, not a skip, under CI=true)"
                         : ": apt-get install it (tools/setup does not)");
  }
};

// The Debian packages of the dictd dictionaries among `names` ("wn", "elements") whose
// NAME.index or NAME.dict.dz is missing from /usr/share/dictd.
inline MissingPackages missing_dictd(const std::vector<std::string>& names) {
  MissingPackages m;
  for (const auto& name : names) {
    std::string package = "dict-" + name;
    for (const auto& c : dictd_corpora()) {
      if (name == c.name) package = c.package;
    }
    for (const auto& path : {dictd_index_path(name), dictd_dict_path(name)}) {
      if (std::filesystem::is_regular_file(path)) continue;
      if (m.packages.empty() || m.packages.back() != package) m.packages.push_back(package);
      m.detail += (m.detail.empty() ? "" : ", ") + path + " missing";
    }
  }
  return m;
}

// In a test body: when `missing` (a MissingPackages) is not empty, skips the test, or fails it
// under CI=true when tools/setup installs one of the packages. The one place that decides.
#define KVTUNE_REQUIRE_PACKAGES(missing)                                      \
  do {                                                                        \
    const ::kvtune::test::MissingPackages kvtune_missing_ = (missing);        \
    if (!kvtune_missing_.empty()) {                                           \
      if (kvtune_missing_.fails()) GTEST_FAIL() << kvtune_missing_.message(); \
      GTEST_SKIP() << kvtune_missing_.message();                              \
    }                                                                         \
  } while (false)

// KVTUNE_REQUIRE_DICTD("wn", "elements"): the dictd dictionaries a test reads.
#define KVTUNE_REQUIRE_DICTD(...) \
  KVTUNE_REQUIRE_PACKAGES(::kvtune::test::missing_dictd({__VA_ARGS__}))

}  // namespace kvtune::test
