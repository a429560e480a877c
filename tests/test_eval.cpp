// Evaluation: held-out metrics against hand-computed cases, batched greedy generation, the fact
// question sets, method comparisons and their reports.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "data/corpus.h"
#include "data/elements.h"
#include "data/split.h"
#include "eval/compare.h"
#include "eval/facts.h"
#include "model/byte_tokenizer.h"
#include "model/generate.h"
#include "model/transformer.h"
#include "model_test_util.h"
#include "recipe_test_util.h"
#include "test_util.h"
#include "train/lm_metrics.h"
#include "train/trainer.h"

namespace kvtune {
namespace {

using ::testing::HasSubstr;

TEST(EvalMetrics, CountsMatchAHandComputedCase) {
  // Three positions over a vocabulary of 4; token 3 is special (no bytes), token 2 two bytes.
  const auto logits = torch::tensor({2.0, 0.0, 0.0, 0.0,  //
                                     0.0, 1.0, 3.0, 0.0,  //
                                     1.0, 0.0, 0.0, 5.0},
                                    torch::kFloat64)
                          .reshape({3, 4});
  const auto targets = torch::tensor({0, 1, 3}, torch::kInt64);
  const auto token_bytes = torch::tensor({1, 1, 2, 0}, torch::kInt64);
  const double e = std::exp(1.0);
  const double nats = (std::log(e * e + 3) - 2) + (std::log(2 + e + e * e * e) - 1) +
                      (std::log(e + 2 + std::pow(e, 5)) - 5);
  const auto c = count_predictions(logits, targets, token_bytes);
  EXPECT_NEAR(c.nats, nats, 1e-12);
  EXPECT_EQ(c.correct, 2);  // positions 0 and 2; position 1 predicts token 2
  EXPECT_EQ(c.tokens, 3);
  EXPECT_EQ(c.bytes, 2);  // 1 + 1 + 0: the special target stands for no text

  LmCounts total = c;
  total += c;
  const auto m = metrics_from_counts(total, 7);
  EXPECT_NEAR(m.loss, nats / 3, 1e-12);
  EXPECT_NEAR(m.token_accuracy, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(m.bits_per_byte, 2 * nats / std::log(2.0) / 4, 1e-12);
  EXPECT_EQ(m.tokens, 6);
  EXPECT_EQ(m.bytes, 4);
  EXPECT_EQ(m.sequences, 7);
  const auto j = to_json(m);
  for (const char* key : {"token_accuracy", "loss", "bits_per_byte", "examples"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["examples"].get<int64_t>(), 7);

  // No tokens: zeros, not NaN.
  const auto empty = metrics_from_counts(LmCounts{}, 0);
  EXPECT_EQ(empty.loss, 0.0);
  EXPECT_EQ(empty.bits_per_byte, 0.0);
  EXPECT_THROW(count_predictions(logits, targets, torch::ones({3}, torch::kInt64)), Error);
}

TEST(EvalMetrics, ByteTokensStandForOneByteAndSpecialsForNone) {
  ByteTokenizer tok;
  const auto lengths = token_byte_lengths(tok);
  const auto table = token_table(tok);
  ASSERT_EQ(table.texts.size(), static_cast<size_t>(tok.vocab_size()));
  EXPECT_EQ(table.texts['a'], "a");
  EXPECT_EQ(table.texts[tok.eos_id()], "");
  ASSERT_EQ(lengths.numel(), tok.vocab_size());
  EXPECT_EQ(lengths.narrow(0, 0, 256).sum().item<int64_t>(), 256);
  EXPECT_EQ(lengths[tok.pad_id()].item<int64_t>(), 0);
  EXPECT_EQ(lengths[tok.bos_id()].item<int64_t>(), 0);
  EXPECT_EQ(lengths[tok.eos_id()].item<int64_t>(), 0);
}

// Whole words under teacher forcing, worked out by hand (lm_metrics.h: count_words).
TEST(EvalMetrics, WordAccuracyCountsWholeWordsInsideTheWindow) {
  //                                  0    1       2      3      4    5    6    7
  const std::vector<std::string> texts = {"", " the", "cat", " ca", "t", ".", " ", "sat",
                                          //   8     9      10
                                          "th", "e c", "at "};
  const auto ids = [](std::vector<int64_t> v) { return torch::tensor(v, torch::kInt64); };
  // "the", "cat" (two tokens, the second wrong), "sat" (closed by the special token 0).
  auto c = count_words(0, ids({1, 3, 4, 6, 7, 0}), ids({1, 3, 9, 6, 7, 0}), texts);
  EXPECT_EQ(c.words, 3);
  EXPECT_EQ(c.words_correct, 2);
  // The window opens inside "cat" (the token before it, "cat", ends in a letter): "t" finishes a
  // word begun outside, not counted; "the" counts, and a wrong space token does not spoil it;
  // "sat" is still open at the end, not counted.
  c = count_words(2, ids({4, 1, 6, 7}), ids({4, 1, 5, 7}), texts);
  EXPECT_EQ(c.words, 1);
  EXPECT_EQ(c.words_correct, 1);
  // One token holding the end of one word and the start of the next ("e c") counts for both.
  c = count_words(0, ids({8, 9, 10, 0}), ids({8, 5, 10, 0}), texts);
  EXPECT_EQ(c.words, 2);
  EXPECT_EQ(c.words_correct, 0);
  c = count_words(0, ids({8, 9, 10, 0}), ids({5, 9, 10, 0}), texts);
  EXPECT_EQ(c.words, 2);
  EXPECT_EQ(c.words_correct, 1);
  EXPECT_THROW(count_words(0, ids({11}), ids({11}), texts), Error);
  // Sums add up across windows, and the metric divides them.
  LmCounts sum;
  sum += count_words(0, ids({1, 3, 4, 6, 7, 0}), ids({1, 3, 9, 6, 7, 0}), texts);
  sum += count_words(2, ids({4, 1, 6, 7}), ids({4, 1, 5, 7}), texts);
  sum.tokens = 10;
  const auto m = metrics_from_counts(sum, 2);
  EXPECT_EQ(m.words, 4);
  EXPECT_DOUBLE_EQ(m.word_accuracy, 3.0 / 4.0);
  EXPECT_DOUBLE_EQ(to_json(m)["word_accuracy"].get<double>(), 0.75);
}

TEST(EvalMetrics, EvaluateLmOfAUniformModelIsLogVocab) {
  // A model that predicts every token with equal probability has loss ln V on any text and
  // bits per byte log2(V) when every target is one byte.
  std::vector<std::vector<int64_t>> docs = {{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}};
  LmDataset data(docs, 4);
  const TokenTable bytes{torch::ones({32}, torch::kInt64), std::vector<std::string>(32, "x")};
  auto uniform = [](const torch::Tensor& x) {
    return torch::zeros({x.size(0), x.size(1), 32}, torch::kFloat32);
  };
  const auto m = evaluate_lm(uniform, data, 0, 2, bytes);
  EXPECT_GT(m.tokens, 0);
  EXPECT_NEAR(m.loss, std::log(32.0), 1e-6);
  EXPECT_NEAR(m.bits_per_byte, 5.0, 1e-6);
}

TEST(EvalGenerate, BatchedGreedyEqualsOneByOne) {
  // Right padding must not change any row: prompts of different lengths in one batch give what
  // each gives alone.
  auto config = test::micro_config();
  config.max_seq_len = 40;
  auto model = test::make_model(config, test::test_seed());
  ByteTokenizer tok;
  std::vector<std::vector<int64_t>> prompts = {tok.encode("a", true, false),
                                               tok.encode("hello there", true, false),
                                               tok.encode("xyz!", true, false)};
  GenerateOptions o;
  o.max_new_tokens = 12;
  o.eos_id = tok.eos_id();
  o.pad_id = tok.pad_id();
  const auto together = greedy_continue(model, prompts, o);
  ASSERT_EQ(together.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto alone = greedy_continue(model, {prompts[i]}, o);
    EXPECT_EQ(together[i], alone[0]) << "prompt " << i;
    EXPECT_LE(together[i].size(), 12u);
  }
  // Too long for the model: an error, not a crash.
  o.max_new_tokens = 39;
  EXPECT_THROW(greedy_continue(model, {prompts[1]}, o), Error);
}

TEST(EvalFacts, ExactMatchIsExactStringEquality) {
  EXPECT_TRUE(answer_matches(" Iron", " Iron"));
  EXPECT_FALSE(answer_matches(" Iron.", " Iron"));
  EXPECT_FALSE(answer_matches(" iron", " Iron"));
  EXPECT_FALSE(answer_matches(" Iro", " Iron"));
  EXPECT_FALSE(answer_matches("", " Iron"));
}

nlohmann::json fake_report(const std::string& method, double d_before, double d_after,
                           double g_before, double g_after, bool facts) {
  nlohmann::json before = {{"token_accuracy", d_before}}, after = {{"token_accuracy", d_after}};
  if (facts) {
    before = {{"token_accuracy", 0.3},
              {"exact_match", d_before},
              {"exact_match_control", 0.0},
              {"chance", 0.01}};
    after = {{"token_accuracy", 0.5},
             {"exact_match", d_after},
             {"exact_match_control", 0.02},
             {"chance", 0.01}};
  }
  return {{"recipe", "r"},
          {"method", method},
          {"steps", 100},
          {"trainable_parameters", 1000},
          {"wall_seconds", 12.5},
          {"peak_memory_bytes", 1 << 20},
          {"domain", {{"before", before}, {"after", after}}},
          {"general",
           {{"before", {{"token_accuracy", g_before}}}, {"after", {{"token_accuracy", g_after}}}}}};
}

TEST(EvalCompare, GainsAndForgettingInPointsWithTargetsChecked) {
  std::vector<MethodRun> runs = {
      {"memory", "m", fake_report("memory", 0.30, 0.39, 0.45, 0.44, false), {}, {}},
      {"full", "f", fake_report("full", 0.30, 0.40, 0.45, 0.39, false), {}, {}},
      {"lora", "l", fake_report("lora", 0.30, 0.35, 0.45, 0.42, false), {}, {}}};
  const auto c = compare_runs(runs);
  EXPECT_EQ(c["domain_metric"], "token_accuracy");
  EXPECT_NEAR(c["methods"]["memory"]["domain_gain"].get<double>(), 9.0, 1e-9);
  EXPECT_NEAR(c["methods"]["memory"]["general_forgetting"].get<double>(), 1.0, 1e-9);
  EXPECT_NEAR(c["methods"]["full"]["general_forgetting"].get<double>(), 6.0, 1e-9);
  // Against full: cap = 6 / 3 = 2 points; memory has 9 / 10 of full's gain at 1 point.
  const auto& full = c["targets"]["against_full"];
  EXPECT_NEAR(full["forgetting_cap"].get<double>(), 2.0, 1e-9);
  EXPECT_NEAR(full["best_gain_fraction_under_cap"].get<double>(), 0.9, 1e-9);
  EXPECT_TRUE(full["met"].get<bool>());
  // Against LoRA: its one point (forgetting 3, gain 5) is dominated by memory's (1, 9).
  EXPECT_TRUE(c["targets"]["against_lora"]["met"].get<bool>());
  EXPECT_NEAR(c["budget"].get<double>(), 2.0, 1e-9);
  EXPECT_EQ(c["best_under_budget"]["memory"]["run"], "m");
  EXPECT_TRUE(c["best_under_budget"]["lora"].is_null());  // forgets 3 > 2
  for (const char* key : {"domain_gain", "general_forgetting", "trainable_parameters",
                          "wall_seconds", "peak_memory_bytes"}) {
    EXPECT_TRUE(c["methods"]["lora"].contains(key)) << key;
  }
  const auto md = compare_markdown(c);
  EXPECT_THAT(md, HasSubstr("| memory | 30.00% → 39.00% | +9.00 |"));
  EXPECT_THAT(md, HasSubstr("best 90% of full's gain (memory): met"));

  // Forgetting above the cap: not met; LoRA's point (3, 5) is still dominated by (2.5, 9).
  runs[0].report = fake_report("memory", 0.30, 0.39, 0.45, 0.425, false);
  const auto above = compare_runs(runs);
  EXPECT_FALSE(above["targets"]["against_full"]["met"].get<bool>());
  EXPECT_TRUE(above["targets"]["against_full"]["point"].is_null());
  EXPECT_TRUE(above["targets"]["against_lora"]["met"].get<bool>());
  // A LoRA point that forgets less than every memory point is not covered.
  runs.push_back(
      {"lora", "l2", fake_report("lora", 0.30, 0.31, 0.45, 0.449, false), {}, {"optim.lr=1e-4"}});
  const auto swept = compare_runs(runs);
  EXPECT_FALSE(swept["targets"]["against_lora"]["met"].get<bool>());
  EXPECT_EQ(swept["targets"]["against_lora"]["uncovered_lora_points"].size(), 1u);
  EXPECT_EQ(swept["points"].size(), 4u);
  EXPECT_EQ(swept["methods"]["lora"]["run"], "l");  // the shipped setting stays the headline
  EXPECT_THAT(compare_markdown(swept), HasSubstr("| lora | optim.lr=1e-4 | 100 | +1.00 | 0.10 |"));
  runs.pop_back();
  // Facts: the domain metric is exact match.
  std::vector<MethodRun> facts = {
      {"memory", "m", fake_report("memory", 0.0, 0.92, 0.45, 0.44, true), {}, {}}};
  const auto cf = compare_runs(facts);
  EXPECT_EQ(cf["domain_metric"], "exact_match");
  EXPECT_NEAR(cf["methods"]["memory"]["domain_gain"].get<double>(), 92.0, 1e-9);
  EXPECT_NEAR(cf["methods"]["memory"]["domain_token_accuracy_gain"].get<double>(), 20.0, 1e-9);
  // A report with the held-out-wording recall (a): that is the headline, and the facts table
  // shows (a), (b), their controls and both chance rates.
  for (auto* when : {&facts[0].report["domain"]["before"], &facts[0].report["domain"]["after"]}) {
    (*when)["wording_recall_control"] = 0.03;
    (*when)["wording_chance"] = 0.004;
    (*when)["verbatim_recall"] = 0.99;
  }
  facts[0].report["domain"]["before"]["wording_recall"] = 0.01;
  facts[0].report["domain"]["after"]["wording_recall"] = 0.75;
  const auto cw = compare_runs(facts);
  EXPECT_EQ(cw["domain_metric"], "wording_recall");
  EXPECT_NEAR(cw["methods"]["memory"]["domain_gain"].get<double>(), 74.0, 1e-9);
  EXPECT_NEAR(cw["methods"]["memory"]["exact_match_after"].get<double>(), 0.92, 1e-15);
  const auto mdw = compare_markdown(cw);
  EXPECT_THAT(mdw, HasSubstr("| memory | 75.00 | 3.00 | 92.00 | 2.00 | 99.00 |"));
  EXPECT_THAT(mdw, HasSubstr("Chance: (a) 0.40%, (b) 1.00%."));
  // Methods at their shipped settings on different budgets are not compared.
  runs[1].report["steps"] = 50;
  EXPECT_THAT(test::error_of([&] { compare_runs(runs); }), HasSubstr("one budget"));
  runs[1].report["recipe"] = "other";
  EXPECT_THAT(test::error_of([&] { compare_runs(runs); }), HasSubstr("one recipe"));
  runs[1].report["recipe"] = "r";
  runs[1].report.erase("wall_seconds");
  runs[1].report["steps"] = 100;
  EXPECT_THAT(test::error_of([&] { compare_runs(runs); }), HasSubstr("lacks a field"));
}

TEST(EvalCompare, SweepsParseIntoAGridPerMethod) {
  const auto lr = parse_sweep("optim.bank_lr=1e-2,3e-2");
  EXPECT_EQ(lr.method, "");
  EXPECT_EQ(lr.key, "optim.bank_lr");
  EXPECT_THAT(lr.values, ::testing::ElementsAre("1e-2", "3e-2"));
  const auto t = parse_sweep("sparse:sparse.top_t=100,500,2000");
  EXPECT_EQ(t.method, "sparse");
  const auto grid = sweep_settings({lr, t}, "sparse");
  ASSERT_EQ(grid.size(), 6u);
  EXPECT_THAT(grid[0], ::testing::ElementsAre("optim.bank_lr=1e-2", "sparse.top_t=100"));
  EXPECT_THAT(grid[5], ::testing::ElementsAre("optim.bank_lr=3e-2", "sparse.top_t=2000"));
  EXPECT_EQ(sweep_settings({lr, t}, "full").size(), 2u);  // top_t is sparse's only
  EXPECT_EQ(sweep_settings({}, "full").size(), 1u);
  EXPECT_TRUE(sweep_settings({}, "full")[0].empty());
  EXPECT_EQ(setting_name({"optim.lr=1e-3", "data.general=[wn]"}),
            "optim.lr=1e-3,data.general=_wn_");
}

TEST(EvalCompare, MalformedSweepsAreRefusedWithTheExpectedForm) {
  const std::pair<const char*, const char*> bad[] = {
      {"optim.lr", "has no '='"},          {"=1,2", "empty key"},
      {"optim.lr=", "empty value"},        {"optim.lr=1,,2", "empty value"},
      {"optim.lr=1,2,1", "twice"},         {"nosuch:optim.lr=1", "unknown method 'nosuch'"},
      {"method=memory,full", "--methods"}, {"optim lr=1", "space"}};
  for (const auto& [text, expected] : bad) {
    const char* sweep = text;  // C++17 lambdas cannot capture a structured binding
    const std::string msg = test::error_of([&] { parse_sweep(sweep); });
    EXPECT_THAT(msg, HasSubstr(expected)) << text;
  }
  EXPECT_THAT(test::error_of([&] { parse_sweep("optim.lr"); }),
              HasSubstr("expected [METHOD:]KEY=V1,V2"));
  const auto a = parse_sweep("optim.lr=1");
  const auto b = parse_sweep("full:optim.lr=2");
  EXPECT_THAT(test::error_of([&] { sweep_settings({a, b}, "full"); }), HasSubstr("swept twice"));
}

TEST(EvalCompare, WritesTheTablesThePlotsRead) {
  test::TempDir dir;
  std::vector<MethodRun> runs = {
      {"memory",
       "m",
       fake_report("memory", 0.30, 0.39, 0.45, 0.44, false),
       {{{"step", 10}, {"loss", 2.5}},
        {{"step", 10},
         {"eval",
          {{"domain", {{"token_accuracy", 0.35}}}, {"general", {{"token_accuracy", 0.44}}}}}}}}};
  write_comparison(dir.file("c"), runs, compare_runs(runs));
  for (const char* f : {"compare.json", "compare.md", "bars.tsv", "curve_memory.tsv",
                        "eval_memory.tsv", "frontier_memory.tsv"}) {
    EXPECT_TRUE(std::filesystem::exists(dir.file(std::string("c/") + f))) << f;
  }
  std::ifstream evals(dir.file("c/eval_memory.tsv"));
  std::string header, step0, step10;
  std::getline(evals, header);
  std::getline(evals, step0);
  std::getline(evals, step10);
  EXPECT_EQ(step0, "0\t30\t45");
  EXPECT_EQ(step10, "10\t35\t44");
}

TEST(EvalReport, MarkdownHasEveryMetricBeforeAfterAndChange) {
  nlohmann::json report = fake_report("memory", 0.10, 0.95, 0.45, 0.44, true);
  report["sets"] = {{"domain", "elements-facts"}, {"general", {"wn"}}};
  report["domain"]["after"]["answers"] = {
      {{"prompt", "Q|1?"}, {"expected", " A"}, {"predicted", " B"}, {"correct", false}}};
  const auto md = report_markdown(report);
  EXPECT_THAT(md,
              HasSubstr("| domain (elements-facts) | question answering, trained facts | 10.00% | "
                        "95.00% | +85.00 points |"));
  EXPECT_THAT(md, HasSubstr("| general (wn) | token accuracy | 45.00% | 44.00% | -1.00 points |"));
  EXPECT_THAT(md, HasSubstr("Q\\|1?"));  // a table cell cannot hold a bare '|'
}

}  // namespace
}  // namespace kvtune
