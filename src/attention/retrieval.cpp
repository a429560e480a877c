#include "attention/retrieval.h"

#include <algorithm>
#include <atomic>

#include "common/check.h"

namespace kvtune {

std::pair<int, int64_t> locate_global_id(const std::vector<int64_t>& offsets, int64_t total,
                                         int64_t id) {
  if (id < 0 || id >= total) return {-1, -1};
  const auto it = std::upper_bound(offsets.begin(), offsets.end(), id);
  const int b = static_cast<int>(it - offsets.begin()) - 1;
  return {b, id - offsets[b]};
}

namespace {
std::atomic<int64_t> searches{0};
}  // namespace

int64_t search_count() {
  return searches.load();
}

torch::Tensor search_candidates(const torch::Tensor& q_unit, const std::vector<BankView>& banks,
                                int64_t k) {
  ++searches;
  const int64_t R = q_unit.size(0);
  const int64_t dk = q_unit.size(1);
  const auto q32 = q_unit.detach().to(torch::kFloat32).contiguous();

  std::vector<int64_t> widths;
  int64_t C = 0;
  for (const auto& b : banks) {
    widths.push_back(std::min(k, b.size()));
    C += widths.back();
  }
  auto cand = torch::empty({R, C}, torch::kInt64);
  int64_t offset = 0, column = 0;
  for (size_t b = 0; b < banks.size(); ++b) {
    const auto& bank = banks[b];
    const int64_t kb = widths[b];
    auto scores = torch::empty({R, kb}, torch::kFloat32);
    auto ids = torch::empty({R, kb}, torch::kInt64);
    if (bank.index != nullptr) {
      bank.index->search(q32.data_ptr<float>(), R, kb, scores.data_ptr<float>(),
                         ids.data_ptr<int64_t>());
    } else {
      // Exact search over the keys' own buffer (a float64 bank is searched through a float32
      // copy: float64 is for reference tests, not for production banks).
      const auto keys32 = bank.keys.detach().to(torch::kFloat32).contiguous();
      KeyIndex flat(dk, IndexConfig{});
      flat.build(keys32.data_ptr<float>(), bank.size());
      flat.search(q32.data_ptr<float>(), R, kb, scores.data_ptr<float>(), ids.data_ptr<int64_t>());
    }
    // Global ids; keep -1 for "no result".
    ids = torch::where(ids >= 0, ids + offset, ids);
    cand.narrow(1, column, kb).copy_(ids);
    offset += bank.size();
    column += kb;
  }
  return cand;
}

}  // namespace kvtune
