// The built-in fine-tuning methods, one file each (method.h); make_method is their only caller.
#pragma once

#include <memory>

#include "train/method.h"

namespace kvtune::impl {

std::unique_ptr<Method> make_memory_method();
std::unique_ptr<Method> make_sparse_method();
std::unique_ptr<Method> make_full_method();
std::unique_ptr<Method> make_lora_method();

}  // namespace kvtune::impl
