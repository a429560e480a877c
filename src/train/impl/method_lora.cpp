// Method lora: low-rank adapters on the attention and feed-forward linears (model/lora.h),
// merged into the weights before the model is saved, so the saved model is a plain one.
#include "common/check.h"
#include "model/lora.h"
#include "train/impl/methods.h"

namespace kvtune::impl {

namespace {

class LoraMethod : public Method {
 public:
  std::string name() const override { return "lora"; }
  bool trains_bank_rows() const override { return false; }
  void validate(const Recipe& r, const std::string& where) const override {
    KVT_CHECK(r.lora.rank >= 1, where, ": key 'lora.rank' must be >= 1, got ", r.lora.rank);
    KVT_CHECK(r.lora.alpha > 0, where, ": key 'lora.alpha' must be > 0, got ", r.lora.alpha);
  }
  void prepare(MethodSetup& setup) override {
    setup.state.dense =
        apply_lora(setup.state.model, setup.recipe.lora.rank, setup.recipe.lora.alpha);
  }
  void finish(TrainState& s) override { merge_lora(s.model); }
};

}  // namespace

std::unique_ptr<Method> make_lora_method() {
  return std::make_unique<LoraMethod>();
}

}  // namespace kvtune::impl
