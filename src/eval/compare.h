// Method comparison: the same recipe fine-tuned with `memory`, `full` and `lora` under one budget
// of steps, summarized as compare.json, compare.md and the tables the plots are drawn from
// (docs/eval.md; `kvtune compare` runs the methods, tools/plot-compare draws the PNGs).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvtune {

// The methods compared, in table order.
const std::vector<std::string>& compared_methods();

// One finished run: its report.json and the lines of its metrics.jsonl.
struct MethodRun {
  std::string method;
  std::string dir;
  nlohmann::json report;
  std::vector<nlohmann::json> metrics;
};

// Reads dir/report.json and dir/metrics.jsonl; a kvtune::Error names a missing or unreadable file.
MethodRun read_method_run(const std::string& method, const std::string& dir);

// The headline metric of a report's domain set: "exact_match" when the set has it (facts),
// else "token_accuracy".
std::string domain_metric(const nlohmann::json& report);

// {"recipe", "steps", "domain_metric", "methods": {"<method>": {"domain_gain",
// "general_forgetting", "trainable_parameters", "wall_seconds", "peak_memory_bytes",
// "domain_before", "domain_after", "general_before", "general_after", ...}}, "targets": {...}}.
// Gains and forgetting in points (100 x the fraction); forgetting = general before - after, so
// positive means accuracy lost. Throws when the runs disagree on recipe or steps.
nlohmann::json compare_runs(const std::vector<MethodRun>& runs);

// compare.json as a Markdown table, with the targets checked when all three methods ran.
std::string compare_markdown(const nlohmann::json& comparison);

// Writes compare.json, compare.md, bars.tsv (before/after per method) and, per method,
// curve_<method>.tsv (step, training loss) and eval_<method>.tsv (step, domain and general
// held-out token accuracy) into out_dir, each atomically.
void write_comparison(const std::string& out_dir, const std::vector<MethodRun>& runs,
                      const nlohmann::json& comparison);

}  // namespace kvtune
