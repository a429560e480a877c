// Short-term memory: `kvtune remember` writes new slots into a writable bank from new text, with
// nothing else in the model changing (docs/short-term-memory.md).
//
//  keys    the memory layer's unit queries on the text: one slot per (token position, head), or
//          spherical k-means of them to a requested number of slots, optionally only at the
//          positions the model does not already predict (min_loss);
//  values  start "neutral" (what the layer reads at that key now) and are fitted by a few
//          full-batch SparseRowAdam steps on the language-model loss of that text alone; only
//          the new rows move;
//  usage   a slot is used each time it is among the k slots retrieved for one (position, head)
//          query while remember runs text through the model: old slots count the retrievals of
//          the new text before it is written, new slots those of their own text after fitting;
//  capacity  when old + new slots exceed it, the least-used old slots are evicted (ties: the
//          oldest, i.e. the smallest slot id), or, with eviction off, nothing is written.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bank/bank.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

namespace kvtune {

struct RememberOptions {
  int64_t slots = 0;  // 0: one slot per (token position, head); > 0: k-means to this many
  // > 0: keys only from positions whose next token costs the model at least this many nats
  // before remembering (what it does not predict already); 0: every position.
  double min_loss = 0;
  int64_t steps = 20;        // optimizer steps, each over the whole text
  double lr = 0.05;          // SparseRowAdam learning rate of the new values
  int64_t capacity = 65536;  // most slots the bank may hold after remembering
  bool evict = true;         // false: a bank that would overflow is an error
  // New values start "neutral" (what the layer's head reads at the key before the slot exists:
  // were it the only slot added, the model would not change at that query) or "zero".
  std::string value_init = "neutral";
  int64_t memory_layer = -1;  // a new bank's memory layer (-1: 0); an existing bank names its own
  int64_t batch_size = 16;    // windows per forward pass (gradients are accumulated over all)
  uint64_t seed = 0;          // k-means
};

struct RememberStats {
  int64_t documents = 0;  // paragraphs remembered
  int64_t tokens = 0;     // predicted token positions of the text (each gives `heads` queries)
  int64_t queries = 0;    // tokens * heads (of the positions min_loss keeps)
  int64_t slots_written = 0;
  int64_t slots_evicted = 0;
  int64_t bank_size = 0;  // slots after remembering
  std::vector<int64_t> evicted_slot_ids;
  // Language-model loss (nats/token) and next-token accuracy on the text, with the bank as it was
  // (before eviction) and with the new slots fitted (after eviction).
  double loss_before = 0, loss_after = 0;
  double accuracy_before = 0, accuracy_after = 0;
  // With one slot per query of every position: the mean attention weight a new slot gets from the
  // query it was made from (how sharply the memory is read back); -1 otherwise.
  double own_slot_weight = -1;
  // Wall and process CPU time (all threads): remember_file, from reading the text to the saved
  // bank; remember, its own work.
  double seconds = 0, cpu_seconds = 0;
  double seconds_per_1k_tokens() const { return tokens > 0 ? 1000.0 * seconds / tokens : 0.0; }
  double cpu_seconds_per_1k_tokens() const {
    return tokens > 0 ? 1000.0 * cpu_seconds / tokens : 0.0;
  }
};

// The documents of a text file: one per paragraph (data/text_reader.h), each
// <bos> paragraph <eos>. A missing file, or one with no text, is a kvtune::Error.
std::vector<std::vector<int64_t>> remember_documents(const std::string& text_path,
                                                     const Tokenizer& tokenizer);

// Writes slots for `docs` (token ids) into `bank` (its current contents, possibly no slots; its
// meta names the memory layer) and returns what happened; `bank` is replaced by the result.
// The model, its attached banks and every old slot's key and value are left bit for bit as they
// were (old slots' usage counts grow by their retrievals). Errors (kvtune::Error) leave `bank`
// unchanged: a text with no token to predict, more new slots than `capacity`, a full bank with
// eviction off, a bank whose dims or memory layer do not fit the model.
RememberStats remember(TransformerLM& model, Bank& bank,
                       const std::vector<std::vector<int64_t>>& docs,
                       const RememberOptions& options);

// The rows to evict: the `n` rows of least usage, ties to the smaller slot id (older), in
// increasing row order.
std::vector<int64_t> least_used_rows(const torch::Tensor& usage, const torch::Tensor& slot_ids,
                                     int64_t n);

// A bank with no slots for `model`'s memory layer `memory_layer`: its dims, score scale, the
// model fingerprint and layer (so attach_bank_file accepts what remember writes into it),
// trainable (writable), a Flat index.
Bank empty_memory_bank(const TransformerLM& model, int64_t memory_layer, const std::string& name);

// remember() on files: reads `bank_path` (which must fit the model and be writable) or, when it
// does not exist, starts from empty_memory_bank; reads the text; writes the result and its
// index to `out_path` (default: bank_path) atomically: on any error no file changes.
RememberStats remember_file(TransformerLM& model, const Tokenizer& tokenizer,
                            const std::string& bank_path, const std::string& text_path,
                            const RememberOptions& options, const std::string& out_path = "");

}  // namespace kvtune
