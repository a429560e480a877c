// bank_merge.h: the output depends only on the inputs' content (not their order), near-duplicates
// fold by the documented policy, every slot keeps its origin (through files and re-merges), and
// banks that do not belong together are refused with both files named.
#include "bank/bank_merge.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <tuple>

#include "bank/bank_compact.h"
#include "bank/bank_io.h"
#include "bank_test_util.h"
#include "test_util.h"

namespace kvtune {
namespace {

using test::error_of;
using ::testing::AllOf;
using ::testing::HasSubstr;

Bank model_bank(const std::string& name, int64_t n, uint64_t seed, int64_t key_dim = 12) {
  Bank b = make_random_bank(name, n, key_dim, 5, seed, /*trainable=*/false, 1.0);
  auto gen = at::detail::createCPUGenerator(seed + 1);
  b.usage = torch::randint(0, 20, {n}, gen, torch::kInt64);
  b.meta.model_fingerprint = "0123456789abcdef";
  b.meta.memory_layer = 0;
  return b;
}

// Three banks sharing some slots: B holds 5 of A's keys nudged (cosine > 0.999), C holds 3 of
// A's keys exactly (with its own values and usage).
std::vector<MergeInput> overlapping_inputs(uint64_t seed) {
  Bank a = model_bank("a", 50, seed), b = model_bank("b", 40, seed + 10),
       c = model_bank("c", 30, seed + 20);
  auto gen = at::detail::createCPUGenerator(seed + 30);
  for (int64_t i = 0; i < 5; ++i) {
    auto k = a.keys[i * 7] + 0.01 * torch::randn({12}, gen) / std::sqrt(12.0);
    b.keys[i * 3].copy_(k / k.norm());
  }
  for (int64_t i = 0; i < 3; ++i) c.keys[i * 2].copy_(a.keys[40 + i]);
  return {{"a.h5", a}, {"b.h5", b}, {"c.h5", c}};
}

void expect_same_merge(const Bank& x, const Bank& y) {
  test::expect_same_bank(x, y);
  EXPECT_EQ(x.origin.sources, y.origin.sources);
  EXPECT_TRUE(test::same_bits(x.origin.slot_id, y.origin.slot_id));
  EXPECT_TRUE(test::same_bits(x.origin.source, y.origin.source));
  EXPECT_TRUE(test::same_bits(x.origin.source_slot_id, y.origin.source_slot_id));
}

// Rows (key bits, value bits, usage), sorted: the multiset a bank holds.
std::vector<std::tuple<std::vector<float>, std::vector<float>, int64_t>> row_multiset(
    const std::vector<const Bank*>& banks) {
  std::vector<std::tuple<std::vector<float>, std::vector<float>, int64_t>> rows;
  for (const Bank* b : banks) {
    for (int64_t i = 0; i < b->size(); ++i) {
      const auto k = b->keys[i].contiguous(), v = b->values[i].contiguous();
      rows.emplace_back(std::vector<float>(k.data_ptr<float>(), k.data_ptr<float>() + k.numel()),
                        std::vector<float>(v.data_ptr<float>(), v.data_ptr<float>() + v.numel()),
                        b->usage[i].item<int64_t>());
    }
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

TEST(BankMerge, OutputDoesNotDependOnTheOrderOfTheInputs) {
  const auto inputs = overlapping_inputs(test::test_seed());
  MergeReport first_report;
  const Bank first = merge_banks(inputs, {}, &first_report);
  EXPECT_EQ(first_report.slots_in, 120);
  EXPECT_EQ(first_report.slots_out, 112);  // 5 nudged + 3 exact copies folded
  EXPECT_EQ(first_report.merged_slots, 8);
  std::vector<int> order = {0, 1, 2};
  while (std::next_permutation(order.begin(), order.end())) {
    SCOPED_TRACE(::testing::PrintToString(order));
    const Bank again = merge_banks({inputs[order[0]], inputs[order[1]], inputs[order[2]]}, {});
    expect_same_merge(again, first);
    EXPECT_EQ(row_multiset({&again}), row_multiset({&first}));
  }
  EXPECT_TRUE(torch::equal(first.slot_ids, torch::arange(112, torch::kInt64)));
}

TEST(BankMerge, WithoutDedupTheRowsAreTheUnionOfTheInputs) {
  const auto inputs = overlapping_inputs(test::test_seed());
  MergeOptions no_dedup;
  no_dedup.dedup_cosine = 0;
  const Bank m = merge_banks(inputs, no_dedup);
  const Bank r = merge_banks({inputs[2], inputs[0], inputs[1]}, no_dedup);
  EXPECT_EQ(row_multiset({&m}), row_multiset({&inputs[0].bank, &inputs[1].bank, &inputs[2].bank}));
  expect_same_merge(m, r);
  EXPECT_EQ(m.origin.rows(), 120);
}

TEST(BankMerge, NearDuplicatesFoldByThePolicy) {
  // Two pairs in d = 2: a most-used key and its near copy, and two unused near copies.
  const auto make = [](const std::string& name, std::vector<float> keys, std::vector<float> values,
                       std::vector<int64_t> usage, std::vector<int64_t> ids) {
    Bank b = make_random_bank(name, static_cast<int64_t>(usage.size()), 2, 2, 0, false);
    b.keys = torch::tensor(keys).view({-1, 2});
    b.keys = b.keys / b.keys.norm(2, 1, true);
    b.values = torch::tensor(values).view({-1, 2});
    b.usage = torch::tensor(usage, torch::kInt64);
    b.slot_ids = torch::tensor(ids, torch::kInt64);
    return b;
  };
  const Bank a = make("a", {1, 0, 0, 1}, {1, 1, 2, 2}, {3, 0}, {10, 11});
  const Bank b = make("b", {1, 0.01f, 0.02f, 1}, {5, 5, 4, 4}, {1, 0}, {20, 21});
  MergeReport report;
  const Bank m = merge_banks({{"x/b.h5", b}, {"x/a.h5", a}}, {}, &report);
  ASSERT_EQ(m.size(), 2);
  EXPECT_EQ(report.merged_slots, 2);
  // Slot 0: the used pair. Key of the most used (a's slot 10), values weighted 3:1, usage summed.
  EXPECT_TRUE(torch::equal(m.keys[0], a.keys[0]));
  EXPECT_TRUE(torch::allclose(m.values[0], torch::tensor({2.0f, 2.0f})));
  EXPECT_EQ(m.usage[0].item<int64_t>(), 4);
  // Slot 1: never used, so the plain mean of the values.
  EXPECT_TRUE(torch::allclose(m.values[1], torch::tensor({3.0f, 3.0f})));
  EXPECT_EQ(m.usage[1].item<int64_t>(), 0);
  // Origins: sources sorted by file; the kept key's slot first.
  ASSERT_EQ(m.origin.sources.size(), 2u);
  EXPECT_EQ(m.origin.sources[0].file, "x/a.h5");
  EXPECT_EQ(m.origin.sources[1].name, "b");
  EXPECT_TRUE(torch::equal(m.origin.slot_id, torch::tensor({0, 0, 1, 1}, torch::kInt64)));
  EXPECT_EQ(m.origin.source[0].item<int64_t>(), 0);
  EXPECT_EQ(m.origin.source_slot_id[0].item<int64_t>(), 10);
  EXPECT_EQ(m.origin.source_slot_id[1].item<int64_t>(), 20);
  // Below the threshold nothing folds.
  MergeOptions strict;
  strict.dedup_cosine = 0.99999;
  EXPECT_EQ(merge_banks({{"x/b.h5", b}, {"x/a.h5", a}}, strict).size(), 4);
}

TEST(BankMerge, OriginsSurviveFilesCompactionAndReMerges) {
  test::TempDir dir;
  const auto inputs = overlapping_inputs(test::test_seed());
  MergeOptions no_dedup;
  no_dedup.dedup_cosine = 0;
  // A merge of a merge names the original banks: the same as merging all three at once.
  const Bank ab = merge_banks({inputs[0], inputs[1]}, no_dedup);
  write_bank(dir.file("ab.h5"), ab);
  const Bank ab_read = read_bank(dir.file("ab.h5"));
  expect_same_merge(ab_read, ab);
  expect_same_merge(merge_banks({{"ab.h5", ab_read}, inputs[2]}, no_dedup),
                    merge_banks(inputs, no_dedup));
  // Compaction keeps the origin rows of the slots it keeps, and the file stays valid.
  CompactOptions half;
  half.keep_fraction = 0.5;
  const Bank c = compact_bank(ab_read, half);
  EXPECT_EQ(c.origin.rows(), c.size());
  EXPECT_TRUE(torch::equal(std::get<0>(c.origin.slot_id.sort()), std::get<0>(c.slot_ids.sort())));
  write_bank(dir.file("c.h5"), c);
  expect_same_merge(read_bank(dir.file("c.h5")), c);
  // Merging a merge with one of its own sources would count that source twice.
  EXPECT_THAT(
      error_of([&] {
        merge_banks({{"ab.h5", ab_read}, inputs[0]}, no_dedup);
      }),
      AllOf(HasSubstr("of a.h5 (bank 'a') reaches the merge twice"), HasSubstr("leave out one")));
}

TEST(BankMerge, RefusesBanksThatDoNotBelongTogether) {
  const uint64_t seed = test::test_seed();
  const MergeInput a{"runs/a.h5", model_bank("a", 10, seed)};
  const auto refused = [&](Bank b) {
    return error_of([&] { merge_banks({a, {"runs/b.h5", std::move(b)}}, {}); });
  };
  const auto names_both = AllOf(HasSubstr("runs/a.h5 (bank 'a') and runs/b.h5 (bank 'b')"),
                                HasSubstr("merge only banks trained for the same model"));
  EXPECT_THAT(refused(model_bank("b", 10, seed + 1, /*key_dim=*/16)),
              AllOf(names_both, HasSubstr("key_dim 12 vs 16")));
  Bank b = model_bank("b", 10, seed + 1);
  b.meta.model_fingerprint = "fedcba9876543210";
  EXPECT_THAT(refused(b), AllOf(names_both, HasSubstr("fingerprint 0123456789abcdef vs "
                                                      "fedcba9876543210")));
  b.meta.model_fingerprint = "";
  EXPECT_THAT(refused(b), HasSubstr("vs none (a bank made without a model)"));
  b = model_bank("b", 10, seed + 1);
  b.meta.memory_layer = 1;
  EXPECT_THAT(refused(b), AllOf(names_both, HasSubstr("memory layers (0 vs 1)")));
  b = model_bank("b", 10, seed + 1);
  b.meta.score_scale = 2.0;
  EXPECT_THAT(refused(b), AllOf(names_both, HasSubstr("score scales")));
  EXPECT_THAT(error_of([&] {
                merge_banks({a, {"runs/./a.h5", a.bank}}, {});
              }),
              HasSubstr("is given twice"));
  EXPECT_THAT(error_of([] { merge_banks({}, {}); }), HasSubstr("no input bank"));
}

// Writes `b` with H5Cpp plus an /origin group whose rows the caller chooses.
void write_with_origin(const std::string& path, const Bank& b, const std::string& sources,
                       const torch::Tensor& slot_id, const torch::Tensor& source,
                       const torch::Tensor& source_slot_id) {
  test::write_raw_bank(path, b, {}, [&](test::RawH5File& raw) {
    H5::Group g = raw.file().createGroup("origin");
    H5::StrType type(H5::PredType::C_S1, sources.size());
    g.createAttribute("sources", type, H5::DataSpace(H5S_SCALAR)).write(type, sources);
    raw.tensor("origin/slot_id", slot_id, H5::PredType::STD_I64LE);
    raw.tensor("origin/source", source, H5::PredType::STD_I64LE);
    raw.tensor("origin/source_slot_id", source_slot_id, H5::PredType::STD_I64LE);
  });
}

TEST(BankMerge, BadOriginsAreRefusedOnRead) {
  test::TempDir dir;
  const Bank b = model_bank("b", 3, 1);
  const auto path = dir.file("o.h5");
  const auto ids = [](std::vector<int64_t> v) { return torch::tensor(v, torch::kInt64); };
  const std::string one = R"([{"file": "a.h5", "name": "a"}])";
  write_with_origin(path, b, one, ids({0, 1, 2}), ids({0, 0, 0}), ids({7, 8, 9}));
  EXPECT_EQ(read_bank(path).origin.sources[0].file, "a.h5");
  write_with_origin(path, b, one, ids({0, 1, 2}), ids({0, 1, 0}), ids({7, 8, 9}));
  EXPECT_THAT(error_of([&] { read_bank(path); }),
              HasSubstr("/origin/source row 1 is 1 but there are 1 sources"));
  write_with_origin(path, b, one, ids({0, 1, 5}), ids({0, 0, 0}), ids({7, 8, 9}));
  EXPECT_THAT(error_of([&] { read_bank(path); }),
              HasSubstr("/origin/slot_id row 2 names slot id 5, which is not in /slot_ids"));
  write_with_origin(path, b, one, ids({0, 1, 1}), ids({0, 0, 0}), ids({7, 8, 9}));
  EXPECT_THAT(error_of([&] { read_bank(path); }), HasSubstr("slot id 2 has no row in /origin"));
  write_with_origin(path, b, "[{\"file\": 3}]", ids({0, 1, 2}), ids({0, 0, 0}), ids({7, 8, 9}));
  EXPECT_THAT(error_of([&] { read_bank(path); }), HasSubstr("without string file and name"));
  write_with_origin(path, b, one, ids({0, 1, 2}), ids({0, 0}), ids({7, 8, 9}));
  EXPECT_THAT(error_of([&] { read_bank(path); }), HasSubstr("/origin/source has shape [2]"));
}

}  // namespace
}  // namespace kvtune
