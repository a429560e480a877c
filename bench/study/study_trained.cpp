// Study part 3b: top-k mass on the banks trained runs produced, with the queries their model
// computes on held-out text, at the model's own scale; and how far the estimators' outputs are
// from dense there. Model folders are only read.
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "attention/knn_attention.h"
#include "common/check.h"
#include "data/text_data.h"
#include "model/memory_layer.h"
#include "study.h"
#include "train/run_model.h"

namespace kvtune::study {
namespace {

nlohmann::json mass_summary(const torch::Tensor& mass, const std::vector<int64_t>& ks) {
  nlohmann::json per_k = nlohmann::json::array();
  for (size_t i = 0; i < ks.size(); ++i) {
    const auto col = mass.select(1, static_cast<int64_t>(i));
    per_k.push_back({{"k", ks[i]},
                     {"mean", col.mean().item<double>()},
                     {"median", col.median().item<double>()},
                     {"p10", col.quantile(0.1).item<double>()},
                     {"p90", col.quantile(0.9).item<double>()}});
  }
  return per_k;
}

// load_run_model, except that a domain bank written before banks recorded their model's
// fingerprint is attached too (it comes from the run's own model folder); `notes` says so.
LoadedModel load_study_model(const std::string& dir, nlohmann::json& notes) {
  LoadedModel lm = load_model(dir);
  auto layers = lm.model->memory_layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto path = (std::filesystem::path(dir) / domain_bank_file(i)).string();
    if (!std::filesystem::exists(path)) continue;
    auto bank = IndexedBank::load(path, IndexConfig{});
    if (!bank->bank().meta.model_fingerprint.empty()) {
      attach_bank_file(lm.model, path);
      continue;
    }
    KVT_CHECK(bank->bank().meta.memory_layer == static_cast<int64_t>(i) ||
                  bank->bank().meta.memory_layer == -1,
              path, ": the bank names memory layer ", bank->bank().meta.memory_layer);
    bank->set_trainable(false);
    layers[i]->attach(bank);
    notes.push_back(path +
                    ": no model fingerprint recorded (an older run); attached from its "
                    "own model folder without the check");
  }
  return lm;
}

}  // namespace

nlohmann::json run_trained_study(const TrainedStudyOptions& o) {
  torch::NoGradGuard no_grad;
  nlohmann::json runs = nlohmann::json::array(), notes = nlohmann::json::array();
  for (const auto& dir : o.model_dirs) {
    LoadedModel lm = load_study_model(dir, notes);
    lm.model->eval();
    auto layers = lm.model->memory_layers();
    for (auto& layer : layers) layer->set_capture_queries(true);
    const int64_t seq_len = lm.config.max_seq_len;
    for (const auto& text : o.texts) {
      DataConfig data;
      data.seq_len = seq_len;
      const auto held_out = load_held_out({text}, data, *lm.tokenizer);
      const int64_t windows = std::min(o.windows, held_out->num_eval_windows());
      const auto batch = held_out->eval_batch(0, windows);
      lm.model->forward(batch.narrow(1, 0, seq_len));
      for (size_t li = 0; li < layers.size(); ++li) {
        auto& layer = layers[li];
        const auto& opt = layer->options();
        const int64_t dk = opt.key_dim, heads = opt.heads;
        const double scale =
            opt.attention.scale > 0 ? opt.attention.scale : std::sqrt(static_cast<double>(dk));
        const auto q = layer->last_queries().reshape({-1, heads, dk});  // unit rows
        std::vector<BankView> views, views64;
        std::vector<torch::Tensor> keys;
        nlohmann::json banks = nlohmann::json::array();
        for (const auto& b : layer->banks()) {
          views.push_back(b->view());
          keys.push_back(b->bank().keys.to(torch::kFloat64));
          views64.push_back(
              {keys.back(), b->bank().values.to(torch::kFloat64), nullptr, b->bank().meta.name});
          banks.push_back({{"name", b->bank().meta.name}, {"size", b->size()}});
        }
        const auto all_keys = torch::cat(keys, 0);
        const int64_t n = all_keys.size(0);
        const auto ks = k_grid(o.fixed_ks, n);

        nlohmann::json per_head = nlohmann::json::array();
        std::vector<torch::Tensor> masses, bank_shares;
        std::vector<std::vector<torch::Tensor>> other(o.other_scales.size());
        for (int64_t h = 0; h < heads; ++h) {
          const auto dots = q.select(1, h).to(torch::kFloat64).matmul(all_keys.t());
          const auto s = scale * dots;
          for (size_t i = 0; i < o.other_scales.size(); ++i)
            other[i].push_back(topk_mass(o.other_scales[i] * dots, ks));
          const auto m = topk_mass(s, ks);
          masses.push_back(m);
          // Softmax mass of each bank (attach order: base bank first, then domain banks).
          const auto p = (s - s.logsumexp(1, true)).exp();
          std::vector<torch::Tensor> shares;
          int64_t off = 0;
          for (const auto& v : views) {
            shares.push_back(p.narrow(1, off, v.size()).sum(1));
            off += v.size();
          }
          bank_shares.push_back(torch::stack(shares, 1));
          per_head.push_back({{"head", h}, {"mass", mass_summary(m, ks)}});
        }
        const auto mass = torch::cat(masses, 0);
        nlohmann::json at_other_scales = nlohmann::json::array();
        for (size_t i = 0; i < o.other_scales.size(); ++i) {
          at_other_scales.push_back(
              {{"scale", o.other_scales[i]}, {"mass", mass_summary(torch::cat(other[i], 0), ks)}});
        }
        const auto share = torch::cat(bank_shares, 0).mean(0);
        for (size_t b = 0; b < banks.size(); ++b)
          banks[b]["softmax_share"] = share[static_cast<int64_t>(b)].item<double>();

        // Output error of each estimator at the model's options (k, defaults) against dense.
        const auto rows = q.reshape({-1, dk}).contiguous();
        KnnAttentionOptions a = opt.attention;
        a.scale = scale;
        a.estimator = "dense";
        const auto reference = knn_attention(rows.to(torch::kFloat64), views64, a).output;
        std::vector<torch::Tensor> vals;
        for (const auto& v : views64) vals.push_back(v.values);
        const double value_rms = std::sqrt(torch::cat(vals, 0).pow(2).sum(1).mean().item<double>());
        nlohmann::json errors = nlohmann::json::array();
        for (const std::string est : {"topk", "topk+tail", "gumbel"}) {
          a.estimator = est;
          const auto e = row_errors(knn_attention(rows, views, a).output, reference, value_rms);
          errors.push_back({{"estimator", est},
                            {"k", a.k},
                            {"samples", est == "gumbel"      ? a.samples
                                        : est == "topk+tail" ? a.tail_samples
                                                             : 0},
                            {"rel_error", e.relative},
                            {"rel_error_median", e.relative_median},
                            {"per_value_error", e.per_value}});
        }
        const auto summary = mass_summary(mass, ks);
        runs.push_back({{"model", dir},
                        {"text", text},
                        {"memory_layer", li},
                        {"n", n},
                        {"dk", dk},
                        {"scale", scale},
                        {"model_k", opt.attention.k},
                        {"query_rows", rows.size(0)},
                        {"banks", banks},
                        {"mass", summary},
                        {"per_head", per_head},
                        {"mass_at_other_scales", at_other_scales},
                        {"errors", errors}});
        std::printf("trained %s on %s, layer %zu: n=%lld scale %.2f rows %lld  top-k mass",
                    dir.c_str(), text.c_str(), li, static_cast<long long>(n), scale,
                    static_cast<long long>(rows.size(0)));
        for (const auto& e : summary)
          std::printf(" k=%lld:%.3f", static_cast<long long>(e["k"].get<int64_t>()),
                      e["mean"].get<double>());
        std::printf("  |");
        for (const auto& b : banks)
          std::printf(" %s share %.3f", b["name"].get<std::string>().c_str(),
                      b["softmax_share"].get<double>());
        std::printf("  | rel error");
        for (const auto& e : errors)
          std::printf(" %s %.4f", e["estimator"].get<std::string>().c_str(),
                      e["rel_error"].get<double>());
        std::printf("\n");
        std::fflush(stdout);
      }
    }
  }
  for (const auto& note : notes) std::printf("trained: %s\n", note.get<std::string>().c_str());
  return {{"params",
           {{"model_dirs", o.model_dirs},
            {"texts", o.texts},
            {"windows", o.windows},
            {"other_scales", o.other_scales}}},
          {"runs", runs},
          {"notes", notes}};
}

}  // namespace kvtune::study
