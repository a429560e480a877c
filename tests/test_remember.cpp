// Short-term memory (train/remember.h): the model and every old slot stay bit for bit, least-used
// slots are evicted, a full bank without eviction writes nothing, the remembered text gets
// likelier, and several attached banks act as one.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "bank/bank_io.h"
#include "bank/indexed_bank.h"
#include "bank_test_util.h"
#include "common/check.h"
#include "model/byte_tokenizer.h"
#include "model/generate.h"
#include "model/model_io.h"
#include "model_test_util.h"
#include "test_util.h"
#include "train/remember.h"
#include "train/run_model.h"

namespace kvtune {
namespace {

using ::testing::HasSubstr;

std::vector<std::vector<int64_t>> docs_of(const std::vector<std::string>& texts) {
  ByteTokenizer tok;
  std::vector<std::vector<int64_t>> docs;
  for (const auto& t : texts) docs.push_back(tok.encode(t, true, true));
  return docs;
}

Bank deep_copy(const Bank& b) {
  Bank c = b;
  c.keys = b.keys.clone();
  c.values = b.values.clone();
  c.slot_ids = b.slot_ids.clone();
  c.usage = b.usage.clone();
  return c;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// Mean next-token loss of `docs`, each alone (they fit the micro model).
double text_loss(TransformerLM& model, const std::vector<std::vector<int64_t>>& docs) {
  torch::NoGradGuard no_grad;
  model->eval();
  double nats = 0;
  int64_t n = 0;
  for (const auto& d : docs) {
    const auto t = torch::tensor(d, torch::kInt64).unsqueeze(0);
    const auto logits = model->forward(t.narrow(1, 0, t.size(1) - 1));
    nats += torch::nn::functional::cross_entropy(
                logits.reshape({-1, logits.size(-1)}), t.narrow(1, 1, t.size(1) - 1).reshape({-1}),
                torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                .item<double>();
    n += t.size(1) - 1;
  }
  return nats / double(n);
}

RememberOptions quick(int64_t steps = 3) {
  RememberOptions o;
  o.steps = steps;
  return o;
}

TEST(Remember, LeavesTheModelAndEveryOtherSlotBitForBit) {
  const auto config = test::micro_config();
  auto model = test::make_model(config, test::test_seed());
  std::vector<std::pair<std::string, torch::Tensor>> before;
  for (const auto& p : model->named_parameters()) before.emplace_back(p.key(), p.value().clone());
  const Bank base = deep_copy(model->memory_layers()[0]->banks()[0]->bank());

  Bank bank = empty_memory_bank(model, 0, "stm");
  // The second text is longer than max_seq_len (32): it is cut into overlapping windows.
  const auto docs =
      docs_of({"The cat sat on the mat.", "A much longer paragraph that does not fit one window."});
  ASSERT_GT(docs[1].size(), 33u);
  const auto first = remember(model, bank, docs, quick());
  EXPECT_EQ(first.queries, first.tokens * config.memory.heads);
  EXPECT_EQ(first.slots_written, first.queries);  // one slot per token position and head
  EXPECT_EQ(bank.size(), first.slots_written);
  // Every token but a document's first (<bos>) is predicted once, windows or not.
  EXPECT_EQ(first.tokens, int64_t(docs[0].size() + docs[1].size() - 2));
  EXPECT_TRUE(test::same_bits(bank.slot_ids, torch::arange(bank.size(), torch::kInt64)));
  EXPECT_NO_THROW(validate_bank(bank, "remembered"));  // unit keys, finite values
  EXPECT_GT(bank.values.abs().max().item<float>(), 0.0f);
  EXPECT_GE(bank.usage.min().item<int64_t>(), 0);

  const Bank old = deep_copy(bank);
  const auto second = remember(model, bank, docs_of({"Something else entirely."}), quick());
  ASSERT_EQ(bank.size(), old.size() + second.slots_written);
  const auto kept = torch::indexing::Slice(0, old.size());
  EXPECT_TRUE(test::same_bits(bank.keys.index({kept}), old.keys));
  EXPECT_TRUE(test::same_bits(bank.values.index({kept}), old.values));
  EXPECT_TRUE(test::same_bits(bank.slot_ids.index({kept}), old.slot_ids));
  EXPECT_TRUE((bank.usage.index({kept}) >= old.usage).all().item<bool>());
  EXPECT_GE(bank.slot_ids.index({torch::indexing::Slice(old.size())}).min().item<int64_t>(),
            old.size());

  for (const auto& [name, value] : before) {
    const torch::Tensor now = model->named_parameters()[name];  // a copy: the dict is a temporary
    EXPECT_TRUE(test::same_bits(now, value)) << name << " changed";
    EXPECT_TRUE(now.requires_grad()) << name << ": requires_grad not restored";
    EXPECT_FALSE(now.grad().defined()) << name << " was left with a gradient";
  }
  const auto layer = model->memory_layers()[0];
  ASSERT_EQ(layer->banks().size(), 1u) << "remember left banks attached";
  const auto& base_now = layer->banks()[0]->bank();
  EXPECT_TRUE(test::same_bits(base_now.keys, base.keys));
  EXPECT_TRUE(test::same_bits(base_now.values, base.values));
  EXPECT_TRUE(test::same_bits(base_now.usage, base.usage));
  EXPECT_TRUE(model->is_training());
}

TEST(Remember, TheRememberedTextGetsLikelier) {
  test::TempDir dir;
  auto model = test::make_model(test::micro_config(), test::test_seed());
  {
    // An untrained model's tied embedding (std 0.02) bounds every logit to about +-0.6, so no
    // value could make any token likely; training grows it, and so does this.
    torch::NoGradGuard no_grad;
    model->token_embedding->weight.mul_(12.0);
  }
  ByteTokenizer tok;
  const std::string fact = "Zorblax is the capital of Qux.";
  write_text(dir.file("fact.txt"), fact + "\n");
  const auto docs = docs_of({fact});
  const double alone = text_loss(model, docs);
  RememberOptions o;
  o.steps = 100;
  o.lr = 0.3;
  const auto s = remember_file(model, tok, dir.file("stm.h5"), dir.file("fact.txt"), o);
  EXPECT_NEAR(s.loss_before, alone, 1e-4);
  EXPECT_LT(s.loss_after, s.loss_before - 2.0) << "100 steps barely moved the loss";
  EXPECT_GT(s.accuracy_after, s.accuracy_before + 0.3);
  EXPECT_GT(s.seconds_per_1k_tokens(), 0.0);

  // The saved bank, attached as any bank is, gives the model the loss remember reported.
  attach_bank_file(model, dir.file("stm.h5"));
  EXPECT_NEAR(text_loss(model, docs), s.loss_after, 1e-4);
}

TEST(Remember, MinLossKeepsOnlyTheSurprisingPositions) {
  auto model = test::make_model(test::micro_config(), test::test_seed());
  const auto docs = docs_of({"A text the untrained model cannot predict well."});
  Bank all = empty_memory_bank(model, 0, "all");
  const auto every = remember(model, all, docs, quick(0));
  // The untrained model's losses spread around its mean: a threshold at the mean keeps some.
  RememberOptions o = quick(0);
  o.min_loss = every.loss_before;
  Bank some = empty_memory_bank(model, 0, "some");
  const auto kept = remember(model, some, docs, o);
  EXPECT_GT(kept.slots_written, 0);
  EXPECT_LT(kept.slots_written, every.slots_written);
  EXPECT_EQ(kept.slots_written % 2, 0);  // every head of a kept position
  EXPECT_EQ(kept.tokens, every.tokens);  // the fit still sees the whole text
  o.min_loss = 1000;
  Bank none = empty_memory_bank(model, 0, "none");
  EXPECT_THAT(test::error_of([&] { remember(model, none, docs, o); }),
              HasSubstr("predicts the text already"));
  EXPECT_EQ(none.size(), 0);
}

TEST(Remember, EvictsTheLeastUsedSlotsOldestFirstOnTies) {
  // Ties: usage 1 at rows 1, 2, 4; the smallest slot ids go first.
  const auto usage = torch::tensor({5, 1, 1, 0, 1}, torch::kInt64);
  const auto ids = torch::tensor({10, 7, 3, 9, 2}, torch::kInt64);
  EXPECT_EQ(least_used_rows(usage, ids, 2), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(least_used_rows(usage, ids, 3), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_TRUE(least_used_rows(usage, ids, 0).empty());

  const uint64_t seed = test::test_seed();
  auto model = test::make_model(test::micro_config(), seed);
  Bank bank = empty_memory_bank(model, 0, "stm");
  remember(model, bank, docs_of({"First things first."}), quick(1));
  // Usage far apart (1000 x a permutation), so that the few retrievals the next text adds
  // (at most one per query: 2 heads x 6 positions) cannot reorder them.
  torch::manual_seed(seed);
  const auto perm = torch::randperm(bank.size(), torch::kInt64);
  bank.usage = perm * 1000;
  const Bank old = deep_copy(bank);
  RememberOptions o = quick(1);
  const int64_t new_slots = 2 * (2 + 5 - 1);  // "Next." as <bos> Next. <eos>: 6 positions
  o.capacity = old.size() + new_slots - 3;
  const auto s = remember(model, bank, docs_of({"Next."}), o);
  ASSERT_EQ(s.slots_written, new_slots);
  EXPECT_EQ(s.slots_evicted, 3);
  EXPECT_EQ(bank.size(), o.capacity);
  std::vector<int64_t> expected_evicted;
  std::vector<int64_t> kept_rows;
  for (int64_t r = 0; r < old.size(); ++r) {
    if (perm[r].item<int64_t>() < 3) {
      expected_evicted.push_back(old.slot_ids[r].item<int64_t>());
    } else {
      kept_rows.push_back(r);
    }
  }
  EXPECT_EQ(s.evicted_slot_ids, expected_evicted);
  const auto rows = torch::tensor(kept_rows, torch::kInt64);
  const auto kept = torch::indexing::Slice(0, old.size() - 3);
  EXPECT_TRUE(test::same_bits(bank.keys.index({kept}), old.keys.index_select(0, rows)));
  EXPECT_TRUE(test::same_bits(bank.values.index({kept}), old.values.index_select(0, rows)));
  EXPECT_TRUE(test::same_bits(bank.slot_ids.index({kept}), old.slot_ids.index_select(0, rows)));
  // Evicted ids are never handed out again.
  EXPECT_GT(bank.slot_ids.index({torch::indexing::Slice(old.size() - 3)}).min().item<int64_t>(),
            old.slot_ids.max().item<int64_t>());
}

TEST(Remember, AFullBankWithoutEvictionIsAnErrorAndNoFileChanges) {
  test::TempDir dir;
  auto model = test::make_model(test::micro_config(), test::test_seed());
  ByteTokenizer tok;
  write_text(dir.file("a.txt"), "One paragraph.\n\nAnd another one.\n");
  write_text(dir.file("b.txt"), "More text.\n");
  const auto bank = dir.file("stm.h5");
  const auto first = remember_file(model, tok, bank, dir.file("a.txt"), quick(1));
  const std::string h5 = file_bytes(bank), faiss = file_bytes(dir.file("stm.faiss"));

  RememberOptions o = quick(1);
  o.capacity = first.bank_size;
  o.evict = false;
  try {
    remember_file(model, tok, bank, dir.file("b.txt"), o);
    ADD_FAILURE() << "a full bank took new slots with eviction off";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("is full"));
    EXPECT_THAT(e.what(), HasSubstr("nothing was written"));
  }
  EXPECT_EQ(file_bytes(bank), h5);
  EXPECT_EQ(file_bytes(dir.file("stm.faiss")), faiss);
  int64_t files = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir.path())) {
    (void)f;
    ++files;
  }
  EXPECT_EQ(files, 4) << "a temporary file was left behind";

  // More new slots than the whole capacity, an empty text, a read-only bank: errors too.
  o.evict = true;
  o.capacity = 3;
  EXPECT_THAT(test::error_of([&] { remember_file(model, tok, bank, dir.file("b.txt"), o); }),
              HasSubstr("capacity is 3"));
  write_text(dir.file("empty.txt"), "\n  \n");
  EXPECT_THAT(test::error_of([&] { remember_file(model, tok, bank, dir.file("empty.txt"), {}); }),
              HasSubstr("no text"));
  Bank read_only = read_bank(bank);
  read_only.meta.trainable = false;
  write_bank(dir.file("ro.h5"), read_only);
  EXPECT_THAT(test::error_of([&] {
                remember_file(model, tok, dir.file("ro.h5"), dir.file("b.txt"), quick(1));
              }),
              HasSubstr("read-only"));
  EXPECT_EQ(file_bytes(bank), h5);
}

TEST(Remember, SeveralAttachedBanksActAsOneMergedBank) {
  test::TempDir dir;
  const auto config = test::micro_config();
  const uint64_t seed = test::test_seed();
  auto model = test::make_model(config, seed);
  ByteTokenizer tok;
  write_text(dir.file("a.txt"), "Alpha beta gamma.\n");
  write_text(dir.file("b.txt"), "Delta epsilon zeta eta.\n");
  remember_file(model, tok, dir.file("a.h5"), dir.file("a.txt"), quick(5));
  RememberOptions k_means = quick(5);
  k_means.slots = 7;  // k-means of the queries to 7 slots
  const auto b = remember_file(model, tok, dir.file("b.h5"), dir.file("b.txt"), k_means);
  EXPECT_EQ(b.slots_written, 7);

  const auto tokens = tok.encode("Alpha epsilon", true, false);
  const auto input = torch::tensor(tokens, torch::kInt64).unsqueeze(0);
  model->eval();
  const auto plain = model->forward(input).detach();
  attach_bank_file(model, dir.file("a.h5"));
  attach_bank_file(model, dir.file("b.h5"));
  ASSERT_EQ(model->memory_layers()[0]->banks().size(), 3u);
  const auto two = model->forward(input).detach();
  EXPECT_GT((two - plain).abs().max().item<double>(), 1e-4) << "the banks changed nothing";

  // One bank holding both banks' slots gives the same result: top-k merges across banks.
  auto merged_model = test::make_model(config, seed);
  merged_model->eval();
  const Bank ba = read_bank(dir.file("a.h5")), bb = read_bank(dir.file("b.h5"));
  Bank merged = ba;
  merged.keys = torch::cat({ba.keys, bb.keys});
  merged.values = torch::cat({ba.values, bb.values});
  merged.slot_ids = torch::cat({ba.slot_ids, bb.slot_ids + 1000000});
  merged.usage = torch::cat({ba.usage, bb.usage});
  merged.meta.trainable = false;
  merged_model->memory_layers()[0]->attach(std::make_shared<IndexedBank>(merged, IndexConfig{}));
  EXPECT_LT(test::rel_error(merged_model->forward(input).detach(), two), 1e-5);

  GenerateOptions g;
  g.max_new_tokens = 10;
  EXPECT_EQ(greedy_continue(model, {tokens}, g), greedy_continue(merged_model, {tokens}, g));
}

}  // namespace
}  // namespace kvtune
