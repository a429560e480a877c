// kvtune generate --model DIR [--banks A.h5,B.h5] --prompt TEXT [--max-new-tokens N]
//                 [--temperature T --top-k K --seed S]
// kvtune remember --model DIR --bank BANK.h5 --text FILE [--steps N] [--lr X] [--capacity C]
//                 [--no-evict] [--out NEW.h5] [--slots N] [--memory-layer I]
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "common/check.h"
#include "common/file_lock.h"
#include "model/generate.h"
#include "train/remember.h"
#include "train/run_model.h"

namespace kvtune::cli {
namespace {

struct GenerateArgs {
  std::string model, prompt;
  std::vector<std::string> banks;
  int64_t max_new_tokens = 64;
  SamplingOptions sampling;
};

struct RememberArgs {
  std::string model, bank, text, out;
  RememberOptions options;
  bool no_evict = false;
};

void run_generate(const GenerateArgs& a) {
  KVT_CHECK(!a.prompt.empty(), "--prompt is empty: give the text to continue");
  auto loaded = load_run_model(a.model);
  for (const auto& bank : a.banks) attach_bank_file(loaded.model, bank);
  const auto& tok = *loaded.tokenizer;
  GenerateOptions options;
  options.max_new_tokens = a.max_new_tokens;
  options.eos_id = tok.eos_id();
  options.pad_id = tok.pad_id();
  const auto out = sample_continue(loaded.model, {tok.encode(a.prompt, /*add_bos=*/true, false)},
                                   options, a.sampling);
  std::cout << a.prompt << tok.decode(out[0]) << "\n";
}

void run_remember(const RememberArgs& a) {
  auto loaded = load_run_model(a.model);
  RememberOptions options = a.options;
  options.evict = !a.no_evict;
  // Read, update, write: one writer at a time on the bank (and on --out), or an update is lost.
  std::vector<std::string> targets{a.bank};
  if (!a.out.empty()) {
    refuse_output_equal_to_input(a.out, {a.text}, "--out");
    targets.push_back(a.out);
  }
  const auto locks = lock_all(targets);
  const auto s = remember_file(loaded.model, *loaded.tokenizer, a.bank, a.text, options, a.out);
  const std::string out = a.out.empty() ? a.bank : a.out;
  std::printf(
      "remembered %lld tokens (%lld documents) into %s: %lld new slots, %lld evicted, "
      "%lld slots in the bank (capacity %lld)\n",
      static_cast<long long>(s.tokens), static_cast<long long>(s.documents), out.c_str(),
      static_cast<long long>(s.slots_written), static_cast<long long>(s.slots_evicted),
      static_cast<long long>(s.bank_size), static_cast<long long>(options.capacity));
  std::printf("loss on the text %.4f -> %.4f nats/token, next-token accuracy %.2f%% -> %.2f%%\n",
              s.loss_before, s.loss_after, 100 * s.accuracy_before, 100 * s.accuracy_after);
  if (s.own_slot_weight >= 0) {
    std::printf("a new slot gets %.1f%% of the attention of the query it was made from\n",
                100 * s.own_slot_weight);
  }
  std::printf("%.2f s (%.2f s of CPU), %.3f s per 1000 tokens remembered (%.3f s of CPU)\n",
              s.seconds, s.cpu_seconds, s.seconds_per_1k_tokens(), s.cpu_seconds_per_1k_tokens());
}

}  // namespace

void add_memory_commands(CLI::App& app) {
  {
    auto a = std::make_shared<GenerateArgs>();
    auto* c = app.add_subcommand(
        "generate", "Continue a prompt with a model and its banks: greedy, or sampled");
    c->add_option("--model", a->model, "Model folder (runs/NAME/model)")->required();
    c->add_option("--banks", a->banks, "Bank files to attach, comma-separated (A.h5,B.h5)")
        ->delimiter(',');
    c->add_option("--prompt", a->prompt, "Text to continue (the model sees <bos> first)")
        ->required();
    c->add_option("--max-new-tokens", a->max_new_tokens,
                  "Most tokens to add (stops early at end of text)")
        ->check(CLI::NonNegativeNumber);
    c->add_option("--temperature", a->sampling.temperature,
                  "0 (default): greedy; > 0: sample from softmax(logits / T)")
        ->check(CLI::NonNegativeNumber);
    c->add_option("--top-k", a->sampling.top_k, "Sample among the K most likely tokens (0: all)")
        ->check(CLI::NonNegativeNumber);
    c->add_option("--seed", a->sampling.seed, "Sampling seed: the same seed, the same text");
    c->callback([a] { run_generate(*a); });
  }
  {
    auto a = std::make_shared<RememberArgs>();
    auto* c = app.add_subcommand(
        "remember",
        "Write new slots into a writable bank from new text (short-term memory); the model and "
        "every other slot stay as they are");
    c->add_option("--model", a->model, "Model folder (runs/NAME/model)")->required();
    c->add_option("--bank", a->bank,
                  "Writable bank file (.h5, index beside it); created for the model if missing")
        ->required();
    c->add_option("--text", a->text,
                  "Plain text file; paragraphs (blank-line separated) are "
                  "documents")
        ->required();
    c->add_option("--steps", a->options.steps, "Value-fitting steps over the whole text")
        ->check(CLI::NonNegativeNumber);
    c->add_option("--lr", a->options.lr, "Learning rate of the new values (sparse row Adam)")
        ->check(CLI::PositiveNumber);
    c->add_option("--capacity", a->options.capacity, "Most slots the bank may hold")
        ->check(CLI::PositiveNumber);
    c->add_flag("--no-evict", a->no_evict,
                "Refuse (and write nothing) instead of evicting least-used slots when full");
    c->add_option("--out", a->out, "Write the result here instead of over --bank");
    c->add_option("--slots", a->options.slots,
                  "New slots: 0 (default) one per token and head; N > 0: k-means of the queries "
                  "to N")
        ->check(CLI::NonNegativeNumber);
    c->add_option("--min-loss", a->options.min_loss,
                  "Keys only from positions whose token costs the model at least this many nats "
                  "now (0: every position)")
        ->check(CLI::NonNegativeNumber);
    c->add_option("--value-init", a->options.value_init,
                  "neutral (default): what the layer reads at the key now; zero")
        ->check(CLI::IsMember({"neutral", "zero"}));
    c->add_option("--memory-layer", a->options.memory_layer,
                  "Memory layer of a new bank (default 0); an existing bank names its own")
        ->check(CLI::NonNegativeNumber);
    c->add_option("--seed", a->options.seed, "k-means seed");
    c->callback([a] { run_remember(*a); });
  }
}

}  // namespace kvtune::cli
