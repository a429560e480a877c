#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "attention/lazy_gumbel.h"
#include "bank/bank_io.h"
#include "common/atomic_file.h"
#include "common/check.h"
#include "common/resources.h"
#include "common/threads.h"
#include "data/split.h"
#include "model/byte_tokenizer.h"
#include "model/lora.h"
#include "model/model_io.h"
#include "train/corpus.h"
#include "train/kmeans.h"
#include "train/lm_dataset.h"
#include "train/progress.h"
#include "train/recipe_io.h"
#include "train/run_model.h"
#include "train/sparse_row_adam.h"
#include "train/text_data.h"

namespace kvtune {
namespace fs = std::filesystem;

namespace {

int64_t g_stop_after = 0;

torch::Tensor lm_loss(TransformerLM& model, const torch::Tensor& batch) {
  const auto inputs = batch.narrow(1, 0, batch.size(1) - 1);
  const auto targets = batch.narrow(1, 1, batch.size(1) - 1);
  const auto logits = model->forward(inputs);
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                              targets.reshape({-1}));
}

// The recipe's attention settings on every memory layer (recipe.h AttentionConfig, `backward`).
void configure_attention(TransformerLM& model, const Recipe& r) {
  for (auto& layer : model->memory_layers()) {
    KnnAttentionOptions a = layer->options().attention;
    if (!r.attention.estimator.empty()) a.estimator = r.attention.estimator;
    if (r.attention.k > 0) a.k = r.attention.k;
    const int64_t base = layer->banks().empty() ? 0 : layer->banks().front()->size();
    KVT_CHECK(base == 0 || a.k <= base, "recipe '", r.name, "': attention.k ", a.k,
              " is larger than the model's base bank (", base, " slots): lower attention.k");
    a.samples = r.attention.samples;
    a.groups = r.attention.groups;
    a.tail_samples = r.attention.tail_samples;
    a.backward = r.backward;
    a.backward_samples = r.attention.backward_samples;
    layer->set_attention(a);
  }
}

// The seed of the sampled estimators and backward: a new one per training step
// (stream_seed(train.seed, step)), a fixed one (0) for every evaluation, so that evaluations
// of different runs and steps draw alike.
void set_attention_seed(TransformerLM& model, uint64_t seed) {
  for (auto& layer : model->memory_layers()) {
    KnnAttentionOptions a = layer->options().attention;
    a.seed = seed;
    layer->set_attention(a);
  }
}

// Held-out sets evaluated during and after training, by name ("domain", "general").
using EvalSets = std::vector<std::pair<std::string, const LmDataset*>>;

LmMetrics evaluate(TransformerLM& model, const LmDataset& data, const TrainConfig& t,
                   const torch::Tensor& token_bytes) {
  model->eval();
  set_attention_seed(model, 0);
  auto fn = [&](const torch::Tensor& x) { return model->forward(x); };
  const auto m = evaluate_lm(fn, data, t.eval_batches, t.batch_size, token_bytes);
  model->train();
  return m;
}

EvalPair evaluate(TransformerLM& model, const LmDataset& domain, const LmDataset& general,
                  const TrainConfig& t, const torch::Tensor& token_bytes) {
  return {evaluate(model, domain, t, token_bytes), evaluate(model, general, t, token_bytes)};
}

double lr_at(const OptimConfig& o, int64_t step, int64_t total, double base) {
  if (step < o.warmup_steps) return base * double(step + 1) / double(o.warmup_steps);
  const double progress =
      double(step - o.warmup_steps) / double(std::max<int64_t>(1, total - o.warmup_steps));
  return base * (0.1 + 0.9 * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress))));
}

// What one run trains: dense parameters (AdamW) and bank rows (sparse row Adam).
struct TrainState {
  TransformerLM model{nullptr};
  std::vector<torch::Tensor> dense;
  std::vector<std::shared_ptr<IndexedBank>> banks;  // banks whose tensors train
  std::vector<torch::Tensor> bank_params;           // keys/values that require grad, in order
  torch::Tensor token_bytes;                        // token_byte_lengths of the tokenizer
  torch::Tensor log_scale;  // attention.learn_scale: log c, shared by the memory layers
};

// The score scale the memory layers use now (options.scale, 0 meaning sqrt(key_dim)).
double current_scale(TransformerLM& model) {
  const auto layers = model->memory_layers();
  if (layers.empty()) return 0;
  const auto& o = layers.front()->options();
  if (layers.front()->learned_log_scale().defined())
    return std::exp(layers.front()->learned_log_scale().item<double>());
  return o.attention.scale > 0 ? o.attention.scale : std::sqrt(static_cast<double>(o.key_dim));
}

// attention.learn_scale: one trainable log c, from the current scale, on every memory layer.
void attach_learned_scale(TrainState& s, const Recipe& r) {
  if (!r.attention.learn_scale || s.model->memory_layers().empty()) return;
  const auto dtype = s.model->memory_layers().front()->query->weight.scalar_type();
  s.log_scale = torch::tensor(std::log(current_scale(s.model)), torch::TensorOptions(dtype))
                    .set_requires_grad(true);
  for (auto& layer : s.model->memory_layers()) layer->set_learned_log_scale(s.log_scale);
}

// After training: the learned scale becomes the layers' fixed scale, the saved model's
// memory.scale and its banks' score_scale. Returns it (the unchanged scale when not learned).
double fold_learned_scale(TrainState& s, ModelConfig& config) {
  const double c = current_scale(s.model);
  if (!s.log_scale.defined()) return c;
  s.model->set_memory_scale(c);
  // The scale is part of the model's config, hence of its fingerprint: domain banks made for
  // the model before now belong to the model with the learned scale.
  const std::string fingerprint = model_fingerprint(s.model);
  for (auto& layer : s.model->memory_layers()) {
    layer->set_learned_log_scale(torch::Tensor());
    for (auto& bank : layer->banks()) {
      auto& meta = bank->mutable_bank().meta;
      meta.score_scale = c;
      if (!meta.model_fingerprint.empty()) meta.model_fingerprint = fingerprint;
    }
  }
  config.memory.attention.scale = c;
  return c;
}

class JsonlLog {
 public:
  JsonlLog(const std::string& path, bool append)
      : out_(path, append ? std::ios::app : std::ios::trunc) {
    KVT_CHECK(out_.good(), "cannot write ", path);
  }
  void write(const nlohmann::json& j) {
    out_ << j.dump() << "\n";
    out_.flush();
  }

 private:
  std::ofstream out_;
};

void save_checkpoint(const std::string& path, int64_t step, TrainState& s,
                     torch::optim::AdamW& dense_opt, SparseRowAdam* sparse_opt) {
  torch::serialize::OutputArchive archive;
  archive.write("step", torch::tensor(step));
  for (const auto& p : s.model->named_parameters()) archive.write("model/" + p.key(), p.value());
  for (const auto& b : s.model->named_buffers()) archive.write("buffer/" + b.key(), b.value());
  for (size_t i = 0; i < s.banks.size(); ++i) {
    const auto& bank = s.banks[i]->bank();
    archive.write("bank" + std::to_string(i) + "/keys", bank.keys.detach());
    archive.write("bank" + std::to_string(i) + "/values", bank.values.detach());
    archive.write("bank" + std::to_string(i) + "/usage", bank.usage);
  }
  if (s.log_scale.defined()) archive.write("attention/log_scale", s.log_scale.detach());
  torch::serialize::OutputArchive opt;
  dense_opt.save(opt);
  archive.write("dense_optimizer", opt);
  if (sparse_opt != nullptr) {
    const auto state = sparse_opt->state();
    for (size_t i = 0; i < state.size(); ++i)
      archive.write("sparse/" + std::to_string(i), state[i]);
  }
  AtomicOutput out(path);
  archive.save_to(out.temp_path());
  out.commit();
}

int64_t load_checkpoint(const std::string& path, TrainState& s, torch::optim::AdamW& dense_opt,
                        SparseRowAdam* sparse_opt) {
  torch::NoGradGuard no_grad;
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    KVT_THROW("checkpoint ", path, " cannot be read (damaged?): delete it to start over");
  }
  auto read = [&](const std::string& key, const torch::Tensor& into) {
    torch::Tensor t;
    KVT_CHECK(archive.try_read(key, t), "checkpoint ", path, " has no '", key,
              "': it was written by another recipe (use another --out or delete it)");
    KVT_CHECK(t.sizes() == into.sizes(), "checkpoint ", path, ": '", key, "' has shape ", t.sizes(),
              ", expected ", into.sizes(), " (another recipe?)");
    into.copy_(t);
  };
  torch::Tensor step;
  archive.read("step", step);
  for (const auto& p : s.model->named_parameters()) read("model/" + p.key(), p.value());
  for (const auto& b : s.model->named_buffers()) read("buffer/" + b.key(), b.value());
  for (size_t i = 0; i < s.banks.size(); ++i) {
    auto& bank = s.banks[i]->mutable_bank();
    read("bank" + std::to_string(i) + "/keys", bank.keys);
    read("bank" + std::to_string(i) + "/values", bank.values);
    read("bank" + std::to_string(i) + "/usage", bank.usage);
    s.banks[i]->rebuild_index();
  }
  if (s.log_scale.defined()) read("attention/log_scale", s.log_scale);
  torch::serialize::InputArchive opt;
  archive.read("dense_optimizer", opt);
  dense_opt.load(opt);
  if (sparse_opt != nullptr) {
    auto state = sparse_opt->state();
    for (size_t i = 0; i < state.size(); ++i) {
      archive.read("sparse/" + std::to_string(i), state[i]);
    }
    sparse_opt->load_state(state);
  }
  return step.item<int64_t>();
}

// The training loop shared by pretraining and fine-tuning.
// Training batches: step i from train_sets[i mod size] (data.domain_mix).
TrainOutcome train_loop(const Recipe& r, TrainState& s,
                        const std::vector<const LmDataset*>& train_sets, const std::string& out_dir,
                        bool resume, const EvalSets& evals) {
  const auto& o = r.optim;
  const auto& t = r.train;
  torch::optim::AdamW dense_opt(s.dense,
                                torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  if (s.log_scale.defined()) {
    // The learned scale: a memory parameter, at the bank rows' rate, no weight decay.
    dense_opt.add_param_group(torch::optim::OptimizerParamGroup(
        {s.log_scale}, std::make_unique<torch::optim::AdamWOptions>(o.bank_lr)));
  }
  std::unique_ptr<SparseRowAdam> sparse_opt;
  if (!s.bank_params.empty()) {
    SparseRowAdamOptions so;
    so.lr = o.bank_lr;
    sparse_opt = std::make_unique<SparseRowAdam>(s.bank_params, so);
  }
  const std::string checkpoint = (fs::path(out_dir) / "checkpoint.pt").string();
  TrainOutcome outcome;
  for (const auto& p : s.dense) outcome.trainable_parameters += p.numel();
  for (const auto& p : s.bank_params) outcome.trainable_parameters += p.numel();
  if (s.log_scale.defined()) outcome.trainable_parameters += 1;
  if (resume && fs::exists(checkpoint)) {
    outcome.first_step = load_checkpoint(checkpoint, s, dense_opt, sparse_opt.get());
    std::cerr << "resumed from " << checkpoint << " at step " << outcome.first_step << "\n";
  }
  JsonlLog log((fs::path(out_dir) / "metrics.jsonl").string(), resume && outcome.first_step > 0);
  Progress progress(r.name, outcome.first_step, t.steps, t.log_every);
  s.model->train();
  double loss_value = 0;
  int64_t step = outcome.first_step;
  for (; step < t.steps; ++step) {
    if (g_stop_after > 0 && step - outcome.first_step >= g_stop_after) break;
    const LmDataset& data = *train_sets[static_cast<size_t>(step) % train_sets.size()];
    const auto batch = data.train_batch(t.batch_size, t.seed, step);
    set_attention_seed(s.model, stream_seed(t.seed, static_cast<uint64_t>(step)));
    dense_opt.zero_grad();
    if (sparse_opt) sparse_opt->zero_grad();
    auto loss = lm_loss(s.model, batch);
    loss.backward();
    if (o.grad_clip > 0) torch::nn::utils::clip_grad_norm_(s.dense, o.grad_clip);
    const double lr_scale = lr_at(o, step, t.steps, 1.0);
    for (size_t g = 0; g < dense_opt.param_groups().size(); ++g) {
      static_cast<torch::optim::AdamWOptions&>(dense_opt.param_groups()[g].options())
          .lr((g == 0 ? o.lr : o.bank_lr) * lr_scale);
    }
    dense_opt.step();
    if (sparse_opt) {
      sparse_opt->set_lr(o.bank_lr * lr_scale);
      const auto touched = sparse_opt->step();
      // bank_params holds keys (when they train) then values of each bank: renormalize keys.
      size_t i = 0;
      for (const auto& bank : s.banks) {
        torch::Tensor key_rows;
        if (bank->bank().keys.requires_grad()) key_rows = touched[i++];
        if (bank->bank().values.requires_grad()) ++i;
        bank->after_update(key_rows);
      }
    }
    loss_value = loss.item<double>();
    progress.update(step, loss_value, batch.size(0) * (batch.size(1) - 1));
    if ((step + 1) % std::max<int64_t>(1, t.log_every) == 0 || step + 1 == t.steps) {
      log.write({{"step", step + 1},
                 {"loss", loss_value},
                 {"lr", o.lr * lr_scale},
                 {"tokens_per_second", progress.tokens_per_second()},
                 {"elapsed_seconds", progress.elapsed_seconds()}});
    }
    if (t.eval_every > 0 && (step + 1) % t.eval_every == 0 && !evals.empty()) {
      nlohmann::json e;
      for (const auto& [name, set] : evals)
        e[name] = to_json(evaluate(s.model, *set, t, s.token_bytes));
      log.write({{"step", step + 1}, {"eval", e}});
    }
    if (t.checkpoint_every > 0 && (step + 1) % t.checkpoint_every == 0) {
      save_checkpoint(checkpoint, step + 1, s, dense_opt, sparse_opt.get());
    }
  }
  progress.finish();
  outcome.steps = step;
  outcome.seconds = progress.elapsed_seconds();
  outcome.tokens_per_second = progress.tokens_per_second();
  outcome.final_loss = loss_value;
  if (step < t.steps) {
    // Interrupted (tests): leave a checkpoint at the step reached.
    save_checkpoint(checkpoint, step, s, dense_opt, sparse_opt.get());
  }
  return outcome;
}

void prepare_out_dir(const Recipe& r, const std::string& out_dir) {
  fs::create_directories(out_dir);
  save_resolved_recipe(r, (fs::path(out_dir) / "recipe.yaml").string());
}

// Domain bank keys: spherical k-means of the queries the frozen model makes on domain text.
torch::Tensor domain_keys(const Recipe& r, TransformerLM& model, MemoryLayer& layer,
                          const LmDataset& data, uint64_t seed) {
  const auto& db = r.domain_bank;
  const int64_t dk = layer->options().key_dim;
  if (db.key_init == "random") {
    return make_random_bank("init", db.size, dk, 1, seed, false).keys;
  }
  // Collect queries from a few domain batches.
  std::vector<torch::Tensor> chunks;
  int64_t have = 0;
  const int64_t want = db.size * 40;  // faiss asks for >= 39 points per centroid
  layer->set_capture_queries(true);
  {
    torch::NoGradGuard no_grad;
    model->eval();
    for (int64_t b = 0; have < want && b < 200; ++b) {
      const auto batch = data.train_batch(r.train.batch_size, seed + 7, b);
      model->forward(batch.narrow(1, 0, batch.size(1) - 1));
      chunks.push_back(layer->last_queries().reshape({-1, dk}).contiguous());
      have += chunks.back().size(0);
    }
    model->train();
  }
  layer->set_capture_queries(false);
  auto q = torch::cat(chunks).contiguous();
  KVT_CHECK(q.size(0) >= db.size, "domain corpus gives only ", q.size(0),
            " query vectors for a domain bank of ", db.size,
            " slots: lower domain_bank.size or use a larger corpus");
  if (db.key_init == "sample") {
    const auto pick = torch::randperm(q.size(0), torch::kInt64).narrow(0, 0, db.size);
    return q.index_select(0, pick).contiguous();
  }
  return spherical_kmeans(q, db.size, seed);
}

// Text safe inside a Markdown table cell.
std::string cell(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n' || c == '\r') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string report_markdown(const nlohmann::json& report) {
  struct Row {
    const char* key;
    const char* label;
    bool is_fraction;  // shown as a percentage, change in points
  };
  const Row rows[] = {{"token_accuracy", "token accuracy", true},
                      {"loss", "loss (nats/token)", false},
                      {"bits_per_byte", "bits per byte", false},
                      {"exact_match", "exact match, trained facts", true},
                      {"exact_match_control", "exact match, untrained facts (control)", true}};
  std::ostringstream md;
  md << "# Fine-tuning report: " << report.value("recipe", std::string("?")) << " (method "
     << report.value("method", std::string("?")) << ")\n\n";
  md << fmt::format(
      "{} steps, {} trainable parameters, {:.1f} s of training, peak memory {:.0f} "
      "MiB.\n\n",
      report.value("steps", 0), report.value("trainable_parameters", 0),
      report.value("wall_seconds", 0.0),
      double(report.value("peak_memory_bytes", int64_t{0})) / (1 << 20));
  md << "| set | metric | before | after | change |\n|---|---|---|---|---|\n";
  for (const char* set : {"domain", "general"}) {
    if (!report.contains(set)) continue;
    std::string name = set;
    if (report.contains("sets")) {
      std::string corpora;
      const auto& named = report["sets"][set];
      for (const auto& c : named.is_array() ? named : nlohmann::json::array({named})) {
        corpora += (corpora.empty() ? "" : ", ") + c.get<std::string>();
      }
      name += " (" + corpora + ")";
    }
    const auto& before = report[set]["before"];
    const auto& after = report[set]["after"];
    for (const auto& row : rows) {
      if (!before.contains(row.key) || !after.contains(row.key)) continue;
      const double b = before[row.key].get<double>(), a = after[row.key].get<double>();
      md << (row.is_fraction ? fmt::format("| {} | {} | {:.2f}% | {:.2f}% | {:+.2f} points |\n",
                                           name, row.label, 100 * b, 100 * a, 100 * (a - b))
                             : fmt::format("| {} | {} | {:.3f} | {:.3f} | {:+.3f} |\n", name,
                                           row.label, b, a, a - b));
    }
  }
  if (report.contains("domain") && report["domain"]["after"].contains("answers")) {
    md << "\nSample answers after training (trained facts, asked in new words):\n\n";
    md << "| question | expected | answered |\n|---|---|---|\n";
    for (const auto& a : report["domain"]["after"]["answers"]) {
      md << "| " << cell(a["prompt"].get<std::string>()) << " | "
         << cell(a["expected"].get<std::string>()) << " | "
         << cell(a["predicted"].get<std::string>()) << (a["correct"].get<bool>() ? "" : " (wrong)")
         << " |\n";
    }
  }
  return md.str();
}

void set_stop_after_for_testing(int64_t steps) {
  g_stop_after = steps;
}

TrainOutcome pretrain(const Recipe& r, const std::string& out_dir, bool resume) {
  KVT_CHECK(r.mode == "pretrain", "recipe '", r.name, "' has mode '", r.mode,
            "': use `kvtune finetune` for it");
  set_num_threads(r.train.threads);
  torch::manual_seed(r.train.seed);
  prepare_out_dir(r, out_dir);
  ByteTokenizer tokenizer;
  const auto data = load_split(r.data.general, r.data, tokenizer);

  TrainState s;
  s.model = TransformerLM(r.model_config);
  s.model->attach_base_banks(r.train.seed);
  configure_attention(s.model, r);
  s.token_bytes = token_byte_lengths(tokenizer);
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
  if (outcome.steps < r.train.steps) return outcome;
  for (auto& b : s.banks) b->set_trainable(false);
  ModelConfig config = r.model_config;
  const double scale = fold_learned_scale(s, config);
  if (r.attention.learn_scale)
    std::cerr << "attention scale: " << initial_scale << " learned -> " << scale << "\n";
  save_model((fs::path(out_dir) / "model").string(), s.model, config, tokenizer);
  const auto general = evaluate(s.model, *data.held_out, r.train, s.token_bytes);
  JsonlLog((fs::path(out_dir) / "metrics.jsonl").string(), true)
      .write({{"step", outcome.steps}, {"eval", {{"general", to_json(general)}}}});
  std::cerr << "general held-out: loss " << general.loss << ", token accuracy "
            << general.token_accuracy << "\n";
  return outcome;
}

FinetuneOutcome finetune(const Recipe& r, const std::string& out_dir, bool resume,
                         const DomainMetricsFn& domain_metrics) {
  KVT_CHECK(r.mode == "finetune", "recipe '", r.name, "' has mode '", r.mode,
            "': use `kvtune pretrain` for it");
  set_num_threads(r.train.threads);
  torch::manual_seed(r.train.seed);
  prepare_out_dir(r, out_dir);
  auto loaded = load_model((fs::path(r.base) / "model").string());
  const Tokenizer& tokenizer = *loaded.tokenizer;
  const auto domain = load_split({r.data.domain}, r.data, tokenizer);
  const auto general = load_split(r.data.general, r.data, tokenizer);

  TrainState s;
  s.model = loaded.model;
  const std::string fingerprint = model_fingerprint(s.model);
  // Banks of earlier domains, frozen, in place before anything is measured (recipe.h).
  std::vector<std::shared_ptr<IndexedBank>> attached;
  for (const auto& path : r.domain_bank.attach) attached.push_back(attach_bank_file(s.model, path));
  // domain_bank.init: the bank the new domain bank starts from, checked before any work.
  std::optional<Bank> init_bank;
  if (!r.domain_bank.init.empty()) {
    const std::string& init = r.domain_bank.init;
    const auto layers = s.model->memory_layers();
    KVT_CHECK(layers.size() == 1, "domain_bank.init: the model has ", layers.size(),
              " memory layers; a bank file starts one: remove domain_bank.init");
    init_bank = read_bank(init);
    check_bank_fits_model(s.model, init_bank->meta, init);
    KVT_CHECK(init_bank->meta.memory_layer == 0, "domain_bank.init: '", init,
              "' is a bank of memory layer ", init_bank->meta.memory_layer, ", not of layer 0");
  }
  configure_attention(s.model, r);
  s.token_bytes = token_byte_lengths(tokenizer);
  for (auto& p : s.model->parameters()) p.set_requires_grad(false);
  // Language-model metrics of both sets, plus the domain's extra metrics (exact match).
  auto measure = [&](EvalPair& pair) {
    pair = evaluate(s.model, *domain.held_out, *general.held_out, r.train, s.token_bytes);
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

  if (r.method == "memory") {
    auto layers = s.model->memory_layers();
    const std::string& init = r.domain_bank.init;
    for (size_t i = 0; i < layers.size(); ++i) {
      auto& layer = layers[i];
      const std::string name = "domain_" + std::to_string(i);
      Bank bank;
      if (init_bank) {
        // The file's rows train on; slot ids, usage and (merged banks) origins are kept, so a
        // tuned merged bank still says where each slot came from.
        bank = std::move(*init_bank);
        bank.meta.name = name;
        bank.meta.trainable = true;
      } else {
        bank = make_random_bank(name, r.domain_bank.size, layer->options().key_dim,
                                layer->options().value_dim, r.train.seed + 101 + i,
                                /*trainable=*/true);
        bank.keys = domain_keys(r, s.model, layer, *domain.train, r.train.seed + i);
        if (r.domain_bank.value_init == "zero") bank.values.zero_();
      }
      bank.meta.score_scale = layer->banks().front()->bank().meta.score_scale;
      bank.meta.model_fingerprint = fingerprint;
      bank.meta.memory_layer = static_cast<int64_t>(i);
      bank.meta.provenance =
          nlohmann::json{{"recipe", r.name},
                         {"domain", r.data.domain},
                         {"domain_mix", r.data.domain_mix},
                         {"key_init", init.empty() ? r.domain_bank.key_init : "init: " + init}}
              .dump();
      auto indexed = std::make_shared<IndexedBank>(std::move(bank), r.domain_bank.index);
      indexed->set_trainable(true);
      layer->attach(indexed);
      if (r.domain_bank.train_query) {
        layer->query->weight.set_requires_grad(true);
        s.dense.push_back(layer->query->weight);
      }
      s.banks.push_back(indexed);
      s.bank_params.push_back(indexed->bank().keys);
      s.bank_params.push_back(indexed->bank().values);
    }
  } else if (r.method == "full") {
    for (auto& p : s.model->parameters()) p.set_requires_grad(true);
    s.dense = s.model->parameters();
  } else if (r.method == "lora") {
    s.dense = apply_lora(s.model, r.lora.rank, r.lora.alpha);
  } else {
    KVT_THROW("unknown method '", r.method, "': choose memory, full or lora");
  }

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

  const std::string model_dir = (fs::path(out_dir) / "model").string();
  if (r.method == "lora") merge_lora(s.model);
  for (auto& b : s.banks) b->set_trainable(false);
  const double scale = fold_learned_scale(s, loaded.config);
  // The domain banks are saved beside the model folder's base banks, not inside model.pt; banks
  // attached from files (domain_bank.attach) are not the run's and are not saved with it.
  auto is_attached = [&](const std::shared_ptr<IndexedBank>& b) {
    return std::find(attached.begin(), attached.end(), b) != attached.end();
  };
  std::vector<std::vector<std::shared_ptr<IndexedBank>>> domain_banks;
  for (auto& layer : s.model->memory_layers()) {
    std::vector<std::shared_ptr<IndexedBank>> extra;
    for (auto it = layer->banks().begin() + 1; it != layer->banks().end(); ++it)
      if (!is_attached(*it)) extra.push_back(*it);
    KVT_CHECK(extra.size() <= 1, "internal: ", extra.size(),
              " trained domain banks on one memory layer; one file per layer is saved");
    domain_banks.push_back(extra);
    const auto base = layer->banks().front();
    layer->detach_all();
    layer->attach(base);
  }
  save_model(model_dir, s.model, loaded.config, tokenizer);
  auto layers = s.model->memory_layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    for (const auto& b : domain_banks[i]) {
      b->save((fs::path(model_dir) / domain_bank_file(i)).string());
      layers[i]->attach(b);
    }
  }
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
  write_file_atomic((fs::path(out_dir) / "report.json").string(), out.report.dump(2) + "\n");
  write_file_atomic((fs::path(out_dir) / "report.md").string(), report_markdown(out.report));
  return out;
}

}  // namespace kvtune
