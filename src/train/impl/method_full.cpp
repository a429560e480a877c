// Method full: every transformer weight trains (AdamW); the banks stay frozen.
#include "train/impl/methods.h"

namespace kvtune::impl {

namespace {

class FullMethod : public Method {
 public:
  std::string name() const override { return "full"; }
  bool trains_bank_rows() const override { return false; }
  void prepare(MethodSetup& setup) override {
    auto& s = setup.state;
    for (auto& p : s.model->parameters()) p.set_requires_grad(true);
    s.dense = s.model->parameters();
  }
};

}  // namespace

std::unique_ptr<Method> make_full_method() {
  return std::make_unique<FullMethod>();
}

}  // namespace kvtune::impl
