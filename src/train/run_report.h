// The fine-tuning report (report.json, docs/eval.md) rendered as Markdown (report.md).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace kvtune {

// A table of every metric of both sets: before, after and change.
std::string report_markdown(const nlohmann::json& report);

}  // namespace kvtune
