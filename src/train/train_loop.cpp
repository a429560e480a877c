#include "train/train_loop.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "attention/lazy_gumbel.h"
#include "common/check.h"
#include "common/communicator.h"
#include "common/path_checks.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"
#include "train/lr_schedule.h"
#include "train/progress.h"
#include "train/recipe_io.h"
#include "train/row_optimizer.h"

namespace kvtune {
namespace fs = std::filesystem;

namespace {

// The training wall time a resumed run had spent before `step`: the elapsed_seconds of the last
// metrics.jsonl line at or before it (0 when there is none). Lines that do not parse are skipped:
// a run killed mid-write leaves a partial last line.
double elapsed_before(const std::string& metrics, int64_t step) {
  std::ifstream in(metrics);
  double elapsed = 0;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("elapsed_seconds") || !j.contains("step")) continue;
    if (!j["step"].is_number_integer() || !j["elapsed_seconds"].is_number()) continue;
    if (j["step"].get<int64_t>() <= step) elapsed = j["elapsed_seconds"].get<double>();
  }
  return elapsed;
}

int64_t g_stop_after = 0;

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

}  // namespace

void set_stop_after_for_testing(int64_t steps) {
  g_stop_after = steps;
}

void append_metrics(const std::string& out_dir, const nlohmann::json& line) {
  if (!world().is_writer()) return;
  JsonlLog((fs::path(out_dir) / "metrics.jsonl").string(), true).write(line);
}

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
    int64_t base = layer->banks().empty() ? 0 : layer->banks().front()->size();
    // A sharded base bank counts whole: the merged top-k may take more rows than one shard has.
    if (const auto* shard = layer->sharding()) base = shard->total_rows;
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

LmMetrics evaluate_held_out(TransformerLM& model, const LmDataset& data, const TrainConfig& t,
                            const TokenTable& tokens) {
  model->eval();
  set_attention_seed(model, 0);
  auto fn = [&](const torch::Tensor& x) { return model->forward(x); };
  const auto m = evaluate_lm(fn, data, t.eval_batches, t.batch_size, tokens);
  model->train();
  return m;
}

TrainOutcome train_loop(const Recipe& r, TrainState& s,
                        const std::vector<const LmDataset*>& train_sets, const std::string& out_dir,
                        bool resume, const EvalSets& evals) {
  const auto& o = r.optim;
  const auto& t = r.train;
  torch::optim::AdamW dense_opt(s.dense,
                                torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  if (s.log_scale.defined()) {
    // The learned scale: a memory parameter, at the bank rows' rate, no weight decay (AdamW's
    // default of 1e-2 would pull log c towards 0 whatever the loss says).
    dense_opt.add_param_group(torch::optim::OptimizerParamGroup(
        {s.log_scale}, std::make_unique<torch::optim::AdamWOptions>(
                           torch::optim::AdamWOptions(o.bank_lr).weight_decay(0.0))));
  }
  std::unique_ptr<RowOptimizer> row_opt;
  if (!s.bank_params.empty())
    row_opt = make_row_optimizer(s.row_optimizer, s.bank_params, o.bank_lr);
  TrainOutcome outcome;
  for (const auto& p : s.dense) outcome.trainable_parameters += p.numel();
  for (const auto& p : s.bank_params) outcome.trainable_parameters += p.numel();
  if (s.log_scale.defined()) outcome.trainable_parameters += 1;
  // Several processes (docs/distributed.md): every rank reads the checkpoint and runs the same
  // steps on its share of each batch; rank 0 alone writes metrics and checkpoints (with split
  // banks each rank also writes its own shard's: checkpoint.h).
  Communicator& comm = world();
  const bool writer = comm.is_writer();
  KVT_CHECK(comm.size() == 1 || t.device == "cpu", "train.device: ", t.device, " with ",
            comm.size(), " processes: several processes run on the CPU only (Gloo; NCCL is not ",
            "wired in yet, docs/distributed.md). Set train.device: cpu, or run one process");
  if (resume && path_exists(checkpoint_path(out_dir))) {
    outcome.first_step = load_run_checkpoint(comm, out_dir, s, dense_opt, row_opt.get());
    if (writer)
      std::cerr << "resumed from " << checkpoint_path(out_dir) << " at step " << outcome.first_step
                << "\n";
  }
  check_ranks_agree(comm, s, outcome.first_step, YAML::Dump(recipe_to_yaml(r)));
  const std::string metrics = (fs::path(out_dir) / "metrics.jsonl").string();
  // Wall time is counted across resumes: what the earlier runs spent, then this one's.
  const double earlier_seconds =
      outcome.first_step > 0 ? elapsed_before(metrics, outcome.first_step) : 0.0;
  std::unique_ptr<JsonlLog> log;
  if (writer) log = std::make_unique<JsonlLog>(metrics, resume && outcome.first_step > 0);
  Progress progress(r.name, outcome.first_step, t.steps, t.log_every, writer);
  const auto bytes_at_start = comm.bytes_sent();
  s.model->train();
  double loss_value = 0;
  int64_t step = outcome.first_step;
  for (; step < t.steps; ++step) {
    if (g_stop_after > 0 && step - outcome.first_step >= g_stop_after) break;
    const LmDataset& data = *train_sets[static_cast<size_t>(step) % train_sets.size()];
    const auto batch = data.train_batch(t.batch_size, t.seed, step);
    const RowShare share = batch_share(batch.size(0), comm.rank(), comm.size());
    const auto mine = batch.narrow(0, share.begin, share.count);
    set_attention_seed(s.model, stream_seed(t.seed, static_cast<uint64_t>(step)));
    dense_opt.zero_grad();
    if (row_opt) row_opt->zero_grad();
    // This rank's share of the global batch's mean loss: the sum over ranks is that mean.
    auto loss = lm_loss(s.model, mine) *
                (static_cast<double>(share.count) / static_cast<double>(batch.size(0)));
    auto global_loss = loss.detach().to(torch::kFloat64).reshape({1}).contiguous();
    comm.allreduce_sum(global_loss, "loss");
    // A diverged run stops here, before its non-finite state reaches a checkpoint or the model
    // folder: what was saved before (checkpoints of earlier steps) stays as it was. Every rank
    // sees the same global loss, so all stop together.
    const double step_loss = global_loss.item<double>();
    KVT_CHECK(std::isfinite(step_loss), "training diverged: the loss at step ", step + 1, " is ",
              step_loss, "; nothing of this run was saved past its last checkpoint. Lower optim.lr",
              " (", o.lr, ") or optim.bank_lr (", o.bank_lr, "), or set optim.grad_clip");
    loss.backward();
    sum_gradients(comm, s);
    if (s.after_backward) s.after_backward(step);
    if (o.grad_clip > 0) torch::nn::utils::clip_grad_norm_(s.dense, o.grad_clip);
    const double lr_scale = lr_at(o, step, t.steps, 1.0);
    for (size_t g = 0; g < dense_opt.param_groups().size(); ++g) {
      static_cast<torch::optim::AdamWOptions&>(dense_opt.param_groups()[g].options())
          .lr((g == 0 ? o.lr : o.bank_lr) * lr_scale);
    }
    dense_opt.step();
    if (row_opt) {
      row_opt->set_lr(o.bank_lr * lr_scale);
      const auto touched = row_opt->step();
      // bank_params holds keys (when they train) then values of each bank: renormalize keys.
      size_t i = 0;
      for (const auto& bank : s.banks) {
        torch::Tensor key_rows;
        if (bank->bank().keys.requires_grad()) key_rows = touched[i++];
        if (bank->bank().values.requires_grad()) ++i;
        bank->after_update(key_rows);
      }
    }
    loss_value = step_loss;
    progress.update(step, loss_value, batch.size(0) * (batch.size(1) - 1));
    if (log && ((step + 1) % std::max<int64_t>(1, t.log_every) == 0 || step + 1 == t.steps)) {
      nlohmann::json line = {{"step", step + 1},
                             {"loss", loss_value},
                             {"lr", o.lr * lr_scale},
                             {"tokens_per_second", progress.tokens_per_second()},
                             {"elapsed_seconds", earlier_seconds + progress.elapsed_seconds()}};
      if (comm.size() > 1) {
        // Payload bytes rank 0 handed to collectives per step, by kind, over this process's
        // steps so far (docs/distributed.md, "Bytes per step").
        nlohmann::json bytes;
        const double steps_here = static_cast<double>(step + 1 - outcome.first_step);
        for (const auto& [tag, n] : comm.bytes_sent()) {
          const auto before = bytes_at_start.find(tag);
          const int64_t earlier = before == bytes_at_start.end() ? 0 : before->second;
          bytes[tag] = static_cast<double>(n - earlier) / steps_here;
        }
        line["world_size"] = comm.size();
        line["bytes_per_step"] = bytes;
      }
      log->write(line);
    }
    if (t.eval_every > 0 && (step + 1) % t.eval_every == 0 && !evals.empty()) {
      nlohmann::json e;
      for (const auto& [name, set] : evals)
        e[name] = to_json(evaluate_held_out(s.model, *set, t, s.tokens));
      if (log) log->write({{"step", step + 1}, {"eval", e}});
    }
    if (t.checkpoint_every > 0 && (step + 1) % t.checkpoint_every == 0)
      save_run_checkpoint(comm, out_dir, step + 1, s, dense_opt, row_opt.get());
  }
  progress.finish();
  check_ranks_identical(comm, s, step);
  outcome.steps = step;
  outcome.seconds = earlier_seconds + progress.elapsed_seconds();
  outcome.tokens_per_second = progress.tokens_per_second();
  outcome.final_loss = loss_value;
  if (step < t.steps) {
    // Interrupted (tests): leave a checkpoint at the step reached.
    save_run_checkpoint(comm, out_dir, step, s, dense_opt, row_opt.get());
  }
  return outcome;
}

}  // namespace kvtune
