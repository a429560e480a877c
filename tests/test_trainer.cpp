// Training runs end to end on a very small model: fine-tuning leaves the frozen base unchanged
// (checksums), --resume reaches the same weights as an uninterrupted run, and the memory
// method lowers the domain loss.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "attention/lazy_gumbel.h"
#include "bank/bank_io.h"
#include "bank/bank_merge.h"
#include "common/check.h"
#include "model/byte_tokenizer.h"
#include "model/model_io.h"
#include "model_test_util.h"
#include "test_util.h"
#include "train/learned_scale.h"
#include "train/run_model.h"
#include "train/train_loop.h"
#include "train/trainer.h"
#include "trainer_test_util.h"

namespace kvtune {
namespace {

namespace fs = std::filesystem;
using test::micro_recipe;

// Sum of every element as float64, plus a position-weighted sum: changes to any value show.
double checksum(const torch::Tensor& t) {
  const auto d = t.detach().to(torch::kFloat64).reshape({-1});
  return d.sum().item<double>() +
         (d * torch::arange(d.numel(), torch::kFloat64).div(double(d.numel())))
             .sum()
             .item<double>();
}

class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    auto r = micro_recipe("pretrain");
    r.train.eval_every = 3;
    pretrain(r, base(), /*resume=*/false);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string base() { return dir_->file("base"); }
  static test::TempDir* dir_;
};
test::TempDir* TrainerTest::dir_ = nullptr;

TEST_F(TrainerTest, PretrainWritesAModelFolder) {
  EXPECT_TRUE(fs::exists(base() + "/model/config.yaml"));
  EXPECT_TRUE(fs::exists(base() + "/model/model.pt"));
  EXPECT_TRUE(fs::exists(base() + "/metrics.jsonl"));
  EXPECT_TRUE(fs::exists(base() + "/recipe.yaml"));
  // Periodic and final evaluations are logged under the set they measure.
  std::ifstream in(base() + "/metrics.jsonl");
  int evals = 0;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("eval")) continue;
    ++evals;
    EXPECT_FALSE(j["eval"].contains("domain")) << line;
    EXPECT_GT(j["eval"]["general"]["tokens"].get<int64_t>(), 0) << line;
  }
  EXPECT_EQ(evals, 3);  // steps 3 and 6 (eval_every 3), then the final one
}

TEST_F(TrainerTest, MemoryFinetuneLeavesTheFrozenBaseUnchanged) {
  auto r = micro_recipe("finetune");
  r.base = base();
  const auto before = load_model(base() + "/model");
  const auto out = dir_->file("ft-memory");
  const auto o = finetune(r, out, false);
  EXPECT_EQ(o.train.steps, 6);
  const auto after = load_run_model(out + "/model");

  // Every transformer parameter except the memory layers' query projections is unchanged.
  auto params_before = before.model->named_parameters();
  int checked = 0, changed_queries = 0;
  for (const auto& p : after.model->named_parameters()) {
    const auto& b = params_before[p.key()];
    const bool is_query = p.key().find("memory.query") != std::string::npos;
    if (is_query) {
      changed_queries += !torch::equal(p.value(), b);
    } else {
      EXPECT_EQ(checksum(p.value()), checksum(b)) << p.key();
      EXPECT_TRUE(torch::equal(p.value(), b)) << p.key();
      ++checked;
    }
  }
  EXPECT_GT(checked, 5);
  EXPECT_EQ(changed_queries, 1);
  // The base bank is unchanged; a trained domain bank sits beside it.
  auto layers_before = before.model->memory_layers();
  auto layers_after = after.model->memory_layers();
  ASSERT_EQ(layers_after[0]->banks().size(), 2u);
  EXPECT_TRUE(torch::equal(layers_after[0]->banks()[0]->bank().keys,
                           layers_before[0]->banks()[0]->bank().keys));
  EXPECT_TRUE(torch::equal(layers_after[0]->banks()[0]->bank().values,
                           layers_before[0]->banks()[0]->bank().values));
  EXPECT_GT(layers_after[0]->banks()[1]->bank().values.abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(fs::exists(out + "/report.json"));
  EXPECT_TRUE(fs::exists(out + "/report.md"));
}

// The sampled backward trains the domain bank through rows the top-k never retrieved: its
// gradients, hence its trained values, differ from the exact backward's, and the frozen base
// stays as it was.
TEST_F(TrainerTest, SampledBackwardTrainsTheDomainBank) {
  auto trained_values = [&](const std::string& backward, const std::string& estimator) {
    auto r = micro_recipe("finetune");
    r.base = base();
    r.backward = backward;
    r.attention.estimator = estimator;
    r.attention.backward_samples = 8;
    r.attention.samples = 16;
    const auto out = dir_->file("ft-" + backward + "-" + estimator);
    const auto o = finetune(r, out, false);
    EXPECT_EQ(o.train.steps, 6);
    EXPECT_TRUE(std::isfinite(o.train.final_loss));
    const auto after = load_run_model(out + "/model");
    const auto base_model = load_model(base() + "/model");
    EXPECT_TRUE(torch::equal(after.model->memory_layers()[0]->banks()[0]->bank().values,
                             base_model.model->memory_layers()[0]->banks()[0]->bank().values));
    return after.model->memory_layers()[0]->banks()[1]->bank().values.clone();
  };
  const auto exact = trained_values("exact", "");
  const auto sampled = trained_values("sampled", "");
  const auto sampled_gumbel = trained_values("sampled", "gumbel");
  EXPECT_GT(sampled.abs().sum().item<double>(), 0.0);
  EXPECT_GT(sampled_gumbel.abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(torch::equal(exact, sampled));
}

// attention.learn_scale trains one log c; the learned value is reported, saved as the model's
// memory.scale and used by the reloaded model.
TEST_F(TrainerTest, LearnedScaleIsTrainedReportedAndSaved) {
  auto r = micro_recipe("finetune");
  r.base = base();
  r.attention.learn_scale = true;
  r.optim.bank_lr = 5e-2;
  const auto out = dir_->file("ft-learn-scale");
  const auto o = finetune(r, out, false);
  const double before = o.report["attention"]["scale"]["before"].get<double>();
  const double after = o.report["attention"]["scale"]["after"].get<double>();
  EXPECT_NEAR(before, std::sqrt(static_cast<double>(test::micro_config().memory.key_dim)), 1e-6);
  EXPECT_NE(after, before);
  // 6 Adam steps of at most ~lr each in log c.
  EXPECT_LT(std::abs(std::log(after / before)), 6 * 5e-2 * 1.5);
  const auto reloaded = load_run_model(out + "/model");
  EXPECT_NEAR(reloaded.config.memory.attention.scale, after, 1e-6 * after);
  EXPECT_NEAR(reloaded.model->memory_layers()[0]->options().attention.scale, after, 1e-6 * after);
  EXPECT_NEAR(reloaded.model->memory_layers()[0]->banks()[1]->bank().meta.score_scale, after,
              1e-6 * after);
  const auto& m = test::micro_config();
  const int64_t query = m.d_model * m.memory.heads * m.memory.key_dim;
  const int64_t bank = r.domain_bank.size * (m.memory.key_dim + m.memory.value_dim);
  EXPECT_EQ(o.train.trainable_parameters, query + bank + 1);  // + log c
}

// The learned scale's optimizer group has no weight decay: the first Adam step moves log c by
// exactly -lr * sign(g), where g is the gradient autograd gives on the same batch. AdamW's
// default weight decay (1e-2) would add -lr * 1e-2 * log c, about 5e-4 here.
TEST(TrainLoop, LearnedScaleStepsAgainstItsGradientWithoutWeightDecay) {
  test::TempDir dir;
  auto r = micro_recipe("finetune");
  r.attention.learn_scale = true;
  r.optim.bank_lr = 0.05;
  r.optim.warmup_steps = 1;
  r.train.steps = 1;
  TrainState s;
  s.model = test::make_model(test::micro_config(), 11);
  for (auto& p : s.model->parameters()) p.set_requires_grad(false);
  {
    // Larger values than the init's 0.02, so that the scale has a clear gradient.
    torch::NoGradGuard no_grad;
    s.model->memory_layers()[0]->banks()[0]->mutable_bank().values.mul_(50);
  }
  s.tokens = token_table(ByteTokenizer());
  configure_attention(s.model, r);
  attach_learned_scale(s, r);
  std::vector<std::vector<int64_t>> docs;
  torch::manual_seed(3);
  for (int d = 0; d < 20; ++d) {
    const auto t = torch::randint(3, 259, {40}, torch::kLong);
    docs.emplace_back(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  }
  const LmDataset data(docs, r.data.seq_len);
  const auto batch = data.train_batch(r.train.batch_size, r.train.seed, 0);
  set_attention_seed(s.model, stream_seed(r.train.seed, 0));
  const auto g = torch::autograd::grad({lm_loss(s.model, batch)}, {s.log_scale})[0].item<double>();
  ASSERT_GT(std::abs(g), 1e-4);
  const double before = s.log_scale.item<double>();
  train_loop(r, s, {&data}, dir.file(""), /*resume=*/false, {});
  const double step = s.log_scale.item<double>() - before;
  // Adam's first step: -lr * m_hat / (sqrt(v_hat) + eps) with m_hat = g, v_hat = g^2.
  EXPECT_NEAR(step, -0.05 * g / (std::abs(g) + 1e-8), 1e-6) << "gradient " << g;
}

TEST_F(TrainerTest, AttentionKAboveTheBaseBankIsRefused) {
  auto r = micro_recipe("finetune");
  r.base = base();
  r.attention.k = 100000;
  try {
    finetune(r, dir_->file("ft-big-k"), false);
    FAIL() << "attention.k larger than the base bank was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr("attention.k 100000"));
  }
}

TEST_F(TrainerTest, ReportHoldsEverySetBeforeAndAfterWithTheDomainHookMerged) {
  auto r = micro_recipe("finetune");
  r.base = base();
  const auto out = dir_->file("ft-report");
  int calls = 0;
  const auto o = finetune(r, out, false, [&](TransformerLM& model, const Tokenizer&) {
    EXPECT_FALSE(model->is_training());
    return nlohmann::json{{"exact_match", 0.25 * ++calls}};
  });
  EXPECT_EQ(calls, 2);  // before and after
  std::ifstream in(out + "/report.json");
  const auto report = nlohmann::json::parse(in);
  EXPECT_EQ(report, o.report);
  for (const char* set : {"domain", "general"}) {
    for (const char* when : {"before", "after"}) {
      const auto& m = report[set][when];
      for (const char* key : {"token_accuracy", "loss", "bits_per_byte", "examples"}) {
        EXPECT_TRUE(m.contains(key)) << set << " " << when << " " << key;
      }
      EXPECT_GT(m["bits_per_byte"].get<double>(), 0.0);
    }
  }
  EXPECT_EQ(report["domain"]["before"]["exact_match"].get<double>(), 0.25);
  EXPECT_EQ(report["domain"]["after"]["exact_match"].get<double>(), 0.5);
  EXPECT_FALSE(report["general"]["after"].contains("exact_match"));
  EXPECT_GT(report["peak_memory_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(report["trainable_parameters"].get<int64_t>(), o.train.trainable_parameters);
}

TEST_F(TrainerTest, ABankFromAnotherModelIsRefused) {
  auto r = micro_recipe("finetune");
  r.base = base();
  const auto out = dir_->file("ft-fingerprint");
  finetune(r, out, false);
  const std::string bank = out + "/model/" + domain_bank_file(0);
  EXPECT_EQ(read_bank(bank).meta.memory_layer, 0);

  // The run's own base takes it (the fingerprint covers config and base bank keys).
  auto same = load_model(base() + "/model");
  attach_bank_file(same.model, bank);
  EXPECT_EQ(same.model->memory_layers()[0]->banks().size(), 2u);

  // The same config with other base keys: refused, and nothing attached.
  TransformerLM other(micro_recipe("pretrain").model_config);
  other->attach_base_banks(/*seed=*/999);
  const std::string message = [&] {
    try {
      attach_bank_file(other, bank);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  }();
  EXPECT_THAT(message, ::testing::HasSubstr("was trained for model"));
  EXPECT_THAT(message, ::testing::HasSubstr(model_fingerprint(other)));
  EXPECT_EQ(other->memory_layers()[0]->banks().size(), 1u);

  // A bank made without a model, and one naming a layer the model lacks.
  auto b = read_bank(bank);
  b.meta.model_fingerprint.clear();
  write_bank(dir_->file("no-fingerprint.h5"), b);
  EXPECT_THROW(attach_bank_file(same.model, dir_->file("no-fingerprint.h5")), Error);
  b = read_bank(bank);
  b.meta.memory_layer = 5;
  write_bank(dir_->file("layer5.h5"), b);
  try {
    attach_bank_file(same.model, dir_->file("layer5.h5"));
    ADD_FAILURE() << "a bank for memory layer 5 was attached";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("memory layer 5"));
  }
}

// domain_bank.train_query: false trains the bank rows alone: the run's model equals its base in
// every parameter (query projections included), so its bank serves the base model itself.
TEST_F(TrainerTest, BankOnlyTrainingLeavesEveryModelParameterUnchanged) {
  auto r = micro_recipe("finetune");
  r.base = base();
  r.domain_bank.train_query = false;
  const auto out = dir_->file("ft-bank-only");
  const auto o = finetune(r, out, false);
  EXPECT_EQ(o.train.steps, 6);
  const int64_t bank_rows =
      r.domain_bank.size * (r.model_config.memory.key_dim + r.model_config.memory.value_dim);
  EXPECT_EQ(o.train.trainable_parameters, bank_rows);
  const auto before = load_model(base() + "/model");
  const auto after = load_run_model(out + "/model");
  auto params_before = before.model->named_parameters();
  int checked = 0;
  for (const auto& p : after.model->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), params_before[p.key()])) << p.key();
    ++checked;
  }
  EXPECT_GT(checked, 5);
  EXPECT_EQ(model_fingerprint(after.model), model_fingerprint(before.model));
  EXPECT_GT(after.model->memory_layers()[0]->banks()[1]->bank().values.abs().sum().item<double>(),
            0.0);
  EXPECT_LT(o.after.domain.loss, o.before.domain.loss);
}

// domain_bank.attach: an earlier run's bank is attached frozen while a new domain bank trains,
// is part of the before/after measurements, is left byte-for-byte unchanged, and is not saved
// into the new run's model folder (only the new bank is).
TEST_F(TrainerTest, AttachedBanksStayFrozenAndAreNotSavedWithTheRun) {
  auto first = micro_recipe("finetune");
  first.base = base();
  const auto first_out = dir_->file("ft-attach-first");
  const auto o1 = finetune(first, first_out, false);
  const std::string earlier = dir_->file("earlier.h5");
  fs::copy_file(first_out + "/model/" + domain_bank_file(0), earlier);
  fs::copy_file(first_out + "/model/domain_0.faiss", dir_->file("earlier.faiss"));
  const auto file_bytes = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string earlier_bytes = file_bytes(earlier);
  const auto earlier_bank = read_bank(earlier);

  auto second = first;  // same seed, data and initial keys: only the attached bank differs
  second.domain_bank.attach = {earlier};
  const auto second_out = dir_->file("ft-attach-second");
  const auto o2 = finetune(second, second_out, false);
  EXPECT_EQ(o2.train.steps, 6);
  EXPECT_EQ(file_bytes(earlier), earlier_bytes);
  EXPECT_EQ(o2.report["attached_banks"], nlohmann::json::array({earlier}));
  // Trainable: the query projection and the new bank's keys and values, not the attached bank.
  EXPECT_EQ(o2.train.trainable_parameters, o1.train.trainable_parameters);
  // Measured with the attached bank in place: the "before" differs from a run without it.
  EXPECT_NE(o2.before.domain.loss, o1.before.domain.loss);

  auto run = load_run_model(second_out + "/model");
  const auto banks = run.model->memory_layers()[0]->banks();
  ASSERT_EQ(banks.size(), 2u);  // base + the new domain bank; the attached one is not the run's
  const auto& saved = banks[1]->bank();
  EXPECT_EQ(saved.keys.size(0), second.domain_bank.size);
  EXPECT_FALSE(torch::equal(saved.values, earlier_bank.values));  // trained with it present
  EXPECT_GT(saved.values.abs().sum().item<double>(), 0.0);
  // The two banks serve one model side by side.
  attach_bank_file(run.model, earlier);
  EXPECT_EQ(run.model->memory_layers()[0]->banks().size(), 3u);
}

// domain_bank.init starts the new bank from a file's rows (its size, not domain_bank.size);
// data.domain_mix takes training batches from another corpus in turn.
TEST_F(TrainerTest, BankInitFromAFileAndAMixOfDomains) {
  auto first = micro_recipe("finetune");
  first.base = base();
  first.domain_bank.train_query = false;
  const auto first_out = dir_->file("ft-init-first");
  finetune(first, first_out, false);
  // The start is a merged bank (the run's bank with a copy of itself under another name), so
  // that it has slot origins for the tuned bank to keep.
  const std::string single = first_out + "/model/" + domain_bank_file(0);
  auto copy = read_bank(single);
  copy.meta.name = "copy";
  copy.values.mul_(0.5);
  const std::string start = dir_->file("init-merged.h5");
  auto merged = merge_banks({{single, read_bank(single)}, {"copy.h5", copy}}, MergeOptions{});
  merged.meta.model_fingerprint = copy.meta.model_fingerprint;
  merged.meta.memory_layer = 0;
  write_bank(start, merged);
  const auto start_bank = read_bank(start);
  ASSERT_TRUE(start_bank.origin.defined());

  auto tuned = [&](const std::string& name, std::vector<std::string> mix) {
    auto r = first;
    r.domain_bank.size = 2 * first.domain_bank.size;  // ignored: the file gives the size
    r.domain_bank.init = start;
    r.data.domain_mix = std::move(mix);
    const auto out = dir_->file(name);
    const auto o = finetune(r, out, false);
    EXPECT_EQ(o.report["bank_init"], start);
    const auto saved = read_bank(out + "/model/" + domain_bank_file(0));
    // Started from the file's keys: 6 steps move unit keys a little (a fresh k-means start
    // would put them elsewhere).
    const double cosine = (saved.keys * start_bank.keys).sum(1).min().item<double>();
    EXPECT_GT(cosine, 0.9) << name;
    EXPECT_TRUE(torch::equal(saved.slot_ids, start_bank.slot_ids));
    EXPECT_TRUE(torch::equal(saved.usage, start_bank.usage));
    EXPECT_EQ(saved.origin.sources, start_bank.origin.sources);
    EXPECT_TRUE(torch::equal(saved.origin.source_slot_id, start_bank.origin.source_slot_id));
    return saved.values;
  };
  const auto alone = tuned("ft-init-alone", {});
  const auto mixed = tuned("ft-init-mixed", {"jargon"});
  ASSERT_EQ(alone.size(0), start_bank.values.size(0));
  EXPECT_FALSE(torch::equal(alone, start_bank.values));  // and trained on
  // Half the steps saw Jargon text instead: another bank.
  EXPECT_FALSE(torch::equal(alone, mixed));
}

TEST_F(TrainerTest, ResumeReachesTheSameWeightsAsAnUninterruptedRun) {
  for (const std::string method : {"memory", "lora"}) {
    auto r = micro_recipe("finetune");
    r.base = base();
    r.method = method;
    r.train.checkpoint_every = 2;
    const auto whole = dir_->file("whole-" + method);
    const auto parts = dir_->file("parts-" + method);
    finetune(r, whole, false);
    set_stop_after_for_testing(3);
    const auto first = finetune(r, parts, false);
    set_stop_after_for_testing(0);
    EXPECT_EQ(first.train.steps, 3);
    EXPECT_FALSE(fs::exists(parts + "/model/model.pt"));
    const auto second = finetune(r, parts, /*resume=*/true);
    EXPECT_EQ(second.train.first_step, 3);
    EXPECT_EQ(second.train.steps, 6);
    // Resuming the finished run trains nothing, and reports the wall time the run spent
    // (metrics.jsonl's last elapsed_seconds, counted across the resume), not this call's.
    const auto third = finetune(r, parts, /*resume=*/true);
    EXPECT_EQ(third.train.first_step, 6);
    double logged = -1;
    std::ifstream metrics(parts + "/metrics.jsonl");
    for (std::string line; std::getline(metrics, line);) {
      const auto j = nlohmann::json::parse(line);
      if (j.contains("elapsed_seconds")) logged = j["elapsed_seconds"].get<double>();
    }
    EXPECT_GT(logged, 0);
    EXPECT_GE(third.train.seconds, logged);

    const auto a = load_run_model(whole + "/model");
    const auto b = load_run_model(parts + "/model");
    auto pb = b.model->named_parameters();
    for (const auto& p : a.model->named_parameters()) {
      EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << method << " " << p.key();
    }
    auto la = a.model->memory_layers(), lb = b.model->memory_layers();
    ASSERT_EQ(la[0]->banks().size(), lb[0]->banks().size());
    for (size_t i = 0; i < la[0]->banks().size(); ++i) {
      EXPECT_TRUE(torch::equal(la[0]->banks()[i]->bank().keys, lb[0]->banks()[i]->bank().keys));
      EXPECT_TRUE(torch::equal(la[0]->banks()[i]->bank().values, lb[0]->banks()[i]->bank().values));
    }
  }
}

}  // namespace
}  // namespace kvtune
