// Constructors of the built-in estimators; the public entry point is make_estimator().
#pragma once

#include <memory>

#include "attention/estimator.h"

namespace kvtune::impl {

std::unique_ptr<Estimator> make_topk_estimator();
std::unique_ptr<Estimator> make_dense_estimator();
std::unique_ptr<Estimator> make_gumbel_estimator();
std::unique_ptr<Estimator> make_topk_tail_estimator();

}  // namespace kvtune::impl
