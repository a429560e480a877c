#include "train/trainer.h"

#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/check.h"
#include "common/communicator.h"
#include "common/resources.h"
#include "common/threads.h"
#include "data/text_data.h"
#include "model/model_io.h"
#include "model/tokenizer.h"
#include "train/background_counts.h"
#include "train/learned_scale.h"
#include "train/method.h"
#include "train/recipe_io.h"
#include "train/run_folder.h"

namespace kvtune {
namespace fs = std::filesystem;

namespace {

EvalPair evaluate_pair(TransformerLM& model, const LmDataset& domain, const LmDataset& general,
                       const TrainConfig& t, const TokenTable& tokens) {
  return {evaluate_held_out(model, domain, t, tokens),
          evaluate_held_out(model, general, t, tokens)};
}

}  // namespace

TrainOutcome pretrain(const Recipe& r, const std::string& out_dir, bool resume, bool overwrite) {
  KVT_CHECK(r.mode == "pretrain", "recipe '", r.name, "' has mode '", r.mode,
            "': use `kvtune finetune` for it");
  set_num_threads(r.train.threads);
  torch::manual_seed(r.train.seed);
  // Rank 0 alone owns the output folder (docs/distributed.md); the others write nothing.
  const bool writer = world().is_writer();
  const auto lock = writer ? open_run_folder(r, out_dir, resume, overwrite) : nullptr;
  // The tokenizer first (a learned one trains on the general corpus's training side only, so
  // that held-out text stays unseen), then the token streams.
  const Split split = split_corpora(r.data.general, r.data);
  const auto tokenizer_ptr =
      make_tokenizer(r.model_config.tokenizer, r.model_config.vocab_size, [&split] {
        std::vector<std::string> texts;
        texts.reserve(split.train.size());
        for (const auto& e : split.train) texts.push_back(document_text(e));
        return texts;
      });
  const Tokenizer& tokenizer = *tokenizer_ptr;
  KVT_CHECK(tokenizer.vocab_size() <= r.model_config.vocab_size, "the ", tokenizer.type(),
            " tokenizer has ", tokenizer.vocab_size(), " tokens but vocab_size is ",
            r.model_config.vocab_size);
  const auto data = tokenize_split(split, r.data, tokenizer);

  TrainState s;
  s.model = TransformerLM(r.model_config);
  s.model->attach_base_banks(r.train.seed);
  configure_attention(s.model, r);
  s.tokens = token_table(tokenizer);
  s.dense = s.model->parameters();
  for (auto& layer : s.model->memory_layers()) {
    auto bank = layer->banks().front();
    bank->mutable_bank().values.set_requires_grad(true);
    bank->mutable_bank().keys.set_requires_grad(r.model_config.memory.learned_keys);
    if (r.model_config.memory.learned_keys) s.bank_params.push_back(bank->bank().keys);
    s.bank_params.push_back(bank->bank().values);
    s.banks.push_back(bank);
  }
  attach_learned_scale(s, r);
  const double initial_scale = current_scale(s.model);
  auto outcome =
      train_loop(r, s, {data.train.get()}, out_dir, resume, {{"general", data.held_out.get()}});
  if (outcome.steps < r.train.steps || !writer) return outcome;
  for (auto& b : s.banks) b->set_trainable(false);
  ModelConfig config = r.model_config;
  const double scale = fold_learned_scale(s, config);
  if (r.attention.learn_scale)
    std::cerr << "attention scale: " << initial_scale << " learned -> " << scale << "\n";
  const std::string model_dir = (fs::path(out_dir) / "model").string();
  save_model(model_dir, s.model, config, tokenizer);
  if (r.train.background_batches > 0) {
    // Background counts for method sparse, from batches past the training stream's steps.
    set_attention_seed(s.model, 0);
    const auto counts = count_background(s.model, *data.train, r.train.background_batches,
                                         r.train.batch_size, r.train.seed + 0x5eed);
    write_background((fs::path(model_dir) / kBackgroundFile).string(), counts);
  }
  const auto general = evaluate_held_out(s.model, *data.held_out, r.train, s.tokens);
  append_metrics(out_dir, {{"step", outcome.steps}, {"eval", {{"general", to_json(general)}}}});
  std::cerr << "general held-out: loss " << general.loss << ", token accuracy "
            << general.token_accuracy << "\n";
  return outcome;
}

FinetuneOutcome finetune(const Recipe& r, const std::string& out_dir, bool resume,
                         const DomainMetricsFn& domain_metrics, bool overwrite) {
  KVT_CHECK(r.mode == "finetune", "recipe '", r.name, "' has mode '", r.mode,
            "': use `kvtune pretrain` for it");
  set_num_threads(r.train.threads);
  torch::manual_seed(r.train.seed);
  // The base first: a base that does not load must not cost an --overwrite its old run.
  // With train.shard_base_banks, each rank reads only its share of every base bank.
  auto loaded = load_model((fs::path(r.base) / "model").string(),
                           r.train.shard_base_banks ? &world() : nullptr);
  const auto layers = loaded.model->memory_layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    if (const auto* shard = layers[i]->sharding()) {
      // One write, so that the lines of the ranks do not interleave.
      std::cerr << "memory parallelism: rank " + std::to_string(world().rank()) + " of " +
                       std::to_string(world().size()) + " holds rows " +
                       std::to_string(shard->offset) + " to " +
                       std::to_string(shard->offset + layers[i]->banks().front()->size() - 1) +
                       " of the " + std::to_string(shard->total_rows) + " of base bank " +
                       std::to_string(i) + "\n";
    }
  }
  const bool writer = world().is_writer();
  const auto lock = writer ? open_run_folder(r, out_dir, resume, overwrite) : nullptr;
  const Tokenizer& tokenizer = *loaded.tokenizer;
  const auto domain = load_split({r.data.domain}, r.data, tokenizer);
  const auto general = load_split(r.data.general, r.data, tokenizer);

  TrainState s;
  s.model = loaded.model;
  const std::string fingerprint = model_fingerprint(s.model);
  auto method = make_method(r.method);
  // Files the method needs, read and checked (and attached banks in place) before any work.
  method->load_inputs(r, s.model, r.base);
  configure_attention(s.model, r);
  s.tokens = token_table(tokenizer);
  for (auto& p : s.model->parameters()) p.set_requires_grad(false);
  // Language-model metrics of both sets, plus the domain's extra metrics (exact match).
  auto measure = [&](EvalPair& pair) {
    pair = evaluate_pair(s.model, *domain.held_out, *general.held_out, r.train, s.tokens);
    nlohmann::json j = {{"domain", to_json(pair.domain)}, {"general", to_json(pair.general)}};
    if (domain_metrics) {
      torch::NoGradGuard no_grad;
      s.model->eval();
      set_attention_seed(s.model, 0);
      j["domain"].update(domain_metrics(s.model, tokenizer));
      s.model->train();
    }
    return j;
  };
  FinetuneOutcome out;
  const nlohmann::json before = measure(out.before);

  MethodSetup setup{r, s, *domain.train, fingerprint};
  method->prepare(setup);
  attach_learned_scale(s, r);
  const double initial_scale = current_scale(s.model);
  std::vector<SplitData> mixed;  // data.domain_mix: training sides taken in turn
  std::vector<const LmDataset*> train_sets = {domain.train.get()};
  for (const auto& name : r.data.domain_mix) {
    mixed.push_back(load_split({name}, r.data, tokenizer));
    KVT_CHECK(mixed.back().train->num_tokens() > r.data.seq_len, "data.domain_mix: corpus '", name,
              "' has too little training text for data.seq_len ", r.data.seq_len);
    train_sets.push_back(mixed.back().train.get());
  }
  out.train = train_loop(r, s, train_sets, out_dir, resume,
                         {{"domain", domain.held_out.get()}, {"general", general.held_out.get()}});
  if (out.train.steps < r.train.steps) return out;
  const nlohmann::json after = measure(out.after);
  method->finish(s);        // every rank: it may gather what the ranks hold (method sparse)
  if (!writer) return out;  // rank 0 saves the model and writes the report

  for (auto& b : s.banks) b->set_trainable(false);
  const double scale = fold_learned_scale(s, loaded.config);
  method->save(s, loaded.config, tokenizer, (fs::path(out_dir) / "model").string());
  out.report = {
      {"recipe", r.name},
      {"method", r.method},
      {"steps", out.train.steps},
      {"trainable_parameters", out.train.trainable_parameters},
      {"wall_seconds", out.train.seconds},
      {"peak_memory_bytes", peak_rss_bytes()},
      {"sets", {{"domain", r.data.domain}, {"general", r.data.general}}},
      {"attached_banks", r.domain_bank.attach},
      {"domain_mix", r.data.domain_mix},
      {"bank_init", r.domain_bank.init},
      {"attention",
       {{"estimator", s.model->memory_layers().empty()
                          ? std::string()
                          : s.model->memory_layers().front()->options().attention.estimator},
        {"backward", r.backward},
        {"learn_scale", r.attention.learn_scale},
        {"scale", {{"before", initial_scale}, {"after", scale}}}}},
      {"domain", {{"before", before["domain"]}, {"after", after["domain"]}}},
      {"general", {{"before", before["general"]}, {"after", after["general"]}}}};
  out.report.update(method->report());
  write_file_atomic((fs::path(out_dir) / "report.json").string(), out.report.dump(2) + "\n");
  write_file_atomic((fs::path(out_dir) / "report.md").string(), report_markdown(out.report));
  return out;
}

}  // namespace kvtune
