#include "eval/evaluate.h"

#include <memory>

#include "common/check.h"
#include "data/corpus.h"
#include "data/text_data.h"
#include "eval/facts.h"
#include "model/batch_memory.h"

namespace kvtune {

void validate_eval_request(const EvalRequest& request, const TransformerLM& model) {
  KVT_CHECK(!request.sets.empty(),
            "no evaluation set: give --data NAME|PATH (a corpus name such as foldoc, or a .txt or "
            ".jsonl file)");
  KVT_CHECK(request.sets.size() <= 1000, "--data names ", request.sets.size(),
            " sets; the limit is 1000: concatenate the texts into a few .txt or .jsonl files");
  for (const auto& set : request.sets) check_corpus_available(set, "--data");
  const auto& d = request.data;
  KVT_CHECK(d.held_out_fraction > 0 && d.held_out_fraction < 1,
            "held-out fraction must be in (0, 1), got ", d.held_out_fraction);
  KVT_CHECK(d.seq_len >= 2 && d.seq_len <= model->config().max_seq_len, "sequence length ",
            d.seq_len, " must be in [2, ", model->config().max_seq_len,
            "] (the model's max_seq_len)");
  KVT_CHECK(d.max_entries >= 0, "max entries must be >= 0 (0 = all), got ", d.max_entries);
  for (const auto& set : request.sets) {
    if (is_fact_set(set))
      check_train_templates(fact_set_templates(set), d.train_templates, "--train-templates");
  }
  KVT_CHECK(request.batches >= 0, "batches must be >= 0 (0 = the whole set), got ",
            request.batches);
  KVT_CHECK(request.batch_size >= 1, "batch size must be >= 1, got ", request.batch_size);
  // Without gradients one layer's activations are alive at a time.
  ModelConfig one_layer = model->config();
  one_layer.n_layers = 1;
  check_batch_fits(one_layer, request.batch_size, d.seq_len,
                   "evaluation batch size " + std::to_string(request.batch_size),
                   "lower --batch-size");
}

nlohmann::json evaluate_sets(TransformerLM& model, const Tokenizer& tokenizer,
                             const EvalRequest& request) {
  validate_eval_request(request, model);
  const auto tokens = token_table(tokenizer);
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  nlohmann::json out = nlohmann::json::object();
  for (const auto& set : request.sets) {
    const auto held_out = load_held_out({set}, request.data, tokenizer);
    KVT_CHECK(held_out->num_eval_windows() > 0, "set '", set, "' has no held-out text under ",
              "held-out fraction ", request.data.held_out_fraction,
              ": raise the fraction or use a larger corpus");
    auto fn = [&](const torch::Tensor& x) { return model->forward(x); };
    nlohmann::json j =
        to_json(evaluate_lm(fn, *held_out, request.batches, request.batch_size, tokens));
    if (is_fact_set(set)) {
      const auto prompts = limit_prompts(fact_prompts_for(set, request.data), kFactPromptLimit);
      j.update(evaluate_facts(model, tokenizer, prompts));
    }
    out[set] = j;
  }
  if (was_training) model->train();
  return out;
}

DomainMetricsFn domain_metrics_for(const Recipe& recipe) {
  if (!is_fact_set(recipe.data.domain)) return {};
  // Built once, asked before and after training.
  auto prompts = std::make_shared<const FactPrompts>(
      limit_prompts(fact_prompts_for(recipe.data.domain, recipe.data), kFactPromptLimit));
  return [prompts](TransformerLM& model, const Tokenizer& tokenizer) {
    return evaluate_facts(model, tokenizer, *prompts);
  };
}

}  // namespace kvtune
