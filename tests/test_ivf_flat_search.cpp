// The blocked search of IVF indexes with flat codes (index/impl/ivf_flat_search.h) against an
// independent reference: the nprobe lists whose centroids score highest in double, every key of
// those lists scored in double, the top k by (score, then the smaller id). Positions may differ
// only where the two ids' exact scores are within float32 rounding of each other; faiss's own
// IndexIVFFlat::search is held to the same rule. The result does not depend on the threads.
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "index/impl/ivf_flat_search.h"
#include "index/key_index.h"
#include "test_util.h"

namespace kvtune {
namespace {

constexpr int64_t kN = 6000, kD = 16, kLists = 64, kQueries = 300;

struct IvfProblem {
  std::vector<float> keys, queries;
  std::unique_ptr<faiss::IndexFlatIP> quantizer;
  std::unique_ptr<faiss::IndexIVFFlat> ivf;
};

std::vector<float> unit_rows(int64_t rows, uint64_t seed) {
  torch::manual_seed(seed);
  const auto t = torch::nn::functional::normalize(
      torch::randn({rows, kD}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  return {t.data_ptr<float>(), t.data_ptr<float>() + rows * kD};
}

IvfProblem make_setup(int64_t nprobe) {
  IvfProblem s;
  s.keys = unit_rows(kN, test::test_seed());
  s.queries = unit_rows(kQueries, test::test_seed() + 1);
  s.quantizer = std::make_unique<faiss::IndexFlatIP>(kD);
  s.ivf = std::make_unique<faiss::IndexIVFFlat>(s.quantizer.get(), kD, kLists,
                                                faiss::METRIC_INNER_PRODUCT);
  s.ivf->train(kN, s.keys.data());
  s.ivf->add(kN, s.keys.data());
  s.ivf->nprobe = nprobe;
  return s;
}

double dot(const float* a, const float* b) {
  double s = 0;
  for (int64_t i = 0; i < kD; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// The reference: ids [kQueries, k] (-1 past the candidates).
std::vector<int64_t> reference(const IvfProblem& s, int64_t k) {
  const float* centroids = s.quantizer->get_xb();
  const int64_t nprobe = static_cast<int64_t>(s.ivf->nprobe);
  std::vector<int64_t> out(static_cast<size_t>(kQueries * k), -1);
  for (int64_t q = 0; q < kQueries; ++q) {
    const float* x = s.queries.data() + q * kD;
    std::vector<int64_t> lists(kLists);
    std::iota(lists.begin(), lists.end(), 0);
    std::vector<double> cs(kLists);
    for (int64_t l = 0; l < kLists; ++l) cs[l] = dot(x, centroids + l * kD);
    std::partial_sort(
        lists.begin(), lists.begin() + nprobe, lists.end(),
        [&](int64_t a, int64_t b) { return cs[a] > cs[b] || (cs[a] == cs[b] && a < b); });
    std::vector<int64_t> cand;
    for (int64_t p = 0; p < nprobe; ++p) {
      const auto l = static_cast<size_t>(lists[p]);
      const auto* ids = s.ivf->invlists->get_ids(l);
      cand.insert(cand.end(), ids, ids + s.ivf->invlists->list_size(l));
    }
    std::vector<double> sc(kN);
    for (const int64_t j : cand) sc[j] = dot(x, s.keys.data() + j * kD);
    std::sort(cand.begin(), cand.end(),
              [&](int64_t a, int64_t b) { return sc[a] > sc[b] || (sc[a] == sc[b] && a < b); });
    for (int64_t i = 0; i < std::min<int64_t>(k, static_cast<int64_t>(cand.size())); ++i) {
      out[q * k + i] = cand[i];
    }
  }
  return out;
}

// Positions where `got` differs from `ref` by more than a near-tie of float32 rounding.
int64_t real_differences(const IvfProblem& s, const std::vector<int64_t>& got,
                         const std::vector<int64_t>& ref, int64_t k) {
  int64_t bad = 0;
  for (int64_t q = 0; q < kQueries; ++q) {
    const float* x = s.queries.data() + q * kD;
    for (int64_t i = 0; i < k; ++i) {
      const int64_t a = got[q * k + i], b = ref[q * k + i];
      if (a == b) continue;
      if (a < 0 || b < 0) {
        ++bad;
        continue;
      }
      if (std::abs(dot(x, s.keys.data() + a * kD) - dot(x, s.keys.data() + b * kD)) > 1e-6) ++bad;
    }
  }
  return bad;
}

TEST(IvfFlatSearch, EqualsTheExactSearchOfTheProbedLists) {
  for (const int64_t nprobe : {1, 6}) {
    const IvfProblem s = make_setup(nprobe);
    // 30: within one list; 400: beyond what one list and sometimes six lists hold.
    for (const int64_t k : {30, 400}) {
      std::vector<float> scores(static_cast<size_t>(kQueries * k));
      std::vector<int64_t> ids(static_cast<size_t>(kQueries * k));
      ASSERT_TRUE(impl::ivf_flat_searchable(*s.ivf));
      impl::ivf_flat_search(*s.ivf, s.queries.data(), kQueries, k, scores.data(), ids.data());
      const auto ref = reference(s, k);
      EXPECT_EQ(real_differences(s, ids, ref, k), 0) << "nprobe " << nprobe << " k " << k;
      int64_t missing = 0;
      for (int64_t q = 0; q < kQueries; ++q) {
        for (int64_t i = 0; i < k; ++i) {
          const int64_t id = ids[q * k + i];
          const float score = scores[q * k + i];
          if (id < 0) {
            ++missing;
            EXPECT_EQ(score, -std::numeric_limits<float>::infinity());
            continue;
          }
          EXPECT_NEAR(score, dot(s.queries.data() + q * kD, s.keys.data() + id * kD), 1e-5);
          if (i > 0) EXPECT_GE(scores[q * k + i - 1], score) << "best first";
        }
      }
      if (nprobe == 1 && k == 400) EXPECT_GT(missing, 0) << "a list holds fewer than 400 keys";
      // faiss's own scan of the same lists, under the same rule.
      std::vector<float> fs(static_cast<size_t>(kQueries * k));
      std::vector<int64_t> fi(static_cast<size_t>(kQueries * k));
      s.ivf->search(kQueries, s.queries.data(), k, fs.data(), fi.data());
      EXPECT_EQ(real_differences(s, fi, ref, k), 0) << "faiss, nprobe " << nprobe << " k " << k;
    }
  }
}

TEST(IvfFlatSearch, SameResultWhateverTheThreads) {
  const IvfProblem s = make_setup(5);
  const int64_t k = 50;
  const int threads = omp_get_max_threads();
  std::vector<float> s1(kQueries * k), s2(kQueries * k);
  std::vector<int64_t> i1(kQueries * k), i2(kQueries * k);
  omp_set_num_threads(1);
  impl::ivf_flat_search(*s.ivf, s.queries.data(), kQueries, k, s1.data(), i1.data());
  omp_set_num_threads(std::max(2, threads));
  impl::ivf_flat_search(*s.ivf, s.queries.data(), kQueries, k, s2.data(), i2.data());
  omp_set_num_threads(threads);
  EXPECT_EQ(i1, i2);
  EXPECT_EQ(s1, s2);
}

// Indexes with small lists (under 64 keys per list on average) keep faiss's own scan.
TEST(IvfFlatSearch, SmallListsAreLeftToFaiss) {
  const IvfProblem s = make_setup(4);
  EXPECT_TRUE(impl::ivf_flat_searchable(*s.ivf));
  faiss::IndexFlatIP quantizer(kD);
  faiss::IndexIVFFlat small(&quantizer, kD, kLists, faiss::METRIC_INNER_PRODUCT);
  small.train(kN, s.keys.data());
  small.add(kLists * 63, s.keys.data());
  EXPECT_FALSE(impl::ivf_flat_searchable(small));
}

}  // namespace
}  // namespace kvtune
