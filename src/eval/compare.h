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

// One finished run: its report.json and the lines of its metrics.jsonl; `settings` are the
// sweep's --set overrides it ran with ("key=value"; empty: the recipe as shipped).
struct MethodRun {
  std::string method;
  std::string dir;
  nlohmann::json report;
  std::vector<nlohmann::json> metrics;
  std::vector<std::string> settings;
};

// Reads dir/report.json and dir/metrics.jsonl; a kvtune::Error names a missing or unreadable file.
MethodRun read_method_run(const std::string& method, const std::string& dir,
                          std::vector<std::string> settings = {});

// One axis of `kvtune compare --sweep [METHOD:]KEY=V1,V2,...`: the recipe key, its values and
// the method it applies to ("" = every method).
struct SweepAxis {
  std::string method;
  std::string key;
  std::vector<std::string> values;
};

// Parses one --sweep; a kvtune::Error names what is malformed (no '=', an empty key or value,
// a repeated value, an unknown method, the key `method`) and shows the expected form.
SweepAxis parse_sweep(const std::string& text);

// The settings a method runs at: the cartesian product of the axes that apply to it, each
// setting a list of "key=value" (one empty setting when no axis applies). Two axes on one key
// for the same method are refused.
std::vector<std::vector<std::string>> sweep_settings(const std::vector<SweepAxis>& axes,
                                                     const std::string& method);

// A folder name for a setting: "optim.bank_lr=0.1,sparse.top_t=500" (characters other than
// [A-Za-z0-9._=,+-] become '_'); "" for the empty setting.
std::string setting_name(const std::vector<std::string>& setting);

// The headline metric of a report's domain set: "wording_recall" (a fact set: recall in
// held-out wordings), else "exact_match" (a fact set, report of an older kvtune), else
// "token_accuracy".
std::string domain_metric(const nlohmann::json& report);

// {"recipe", "steps", "domain_metric", "methods": {"<method>": {"domain_gain",
// "general_forgetting", "trainable_parameters", "wall_seconds", "peak_memory_bytes",
// "domain_before", "domain_after", "general_before", "general_after", "settings", ...}},
// "points": [every run, as in "methods", with "method"], "budget", "best_under_budget":
// {"<method>": the point of largest gain with forgetting <= budget, or null}, "targets": {...}}.
// "methods" holds each method's run at the recipe as shipped (its first run when the sweep
// gave it none). `budget` < 0: a third of full's forgetting at its shipped setting (when full
// ran). Gains and forgetting in points (100 x the fraction); forgetting = general before -
// after, so positive means accuracy lost. Steps may differ between points (a sweep of
// train.steps); the recipe may not.
nlohmann::json compare_runs(const std::vector<MethodRun>& runs, double budget = -1);

// compare.json as Markdown: the shipped settings' table, every sweep point, the best point of
// each method under the forgetting budget, and the targets.
std::string compare_markdown(const nlohmann::json& comparison);

// Writes compare.json, compare.md, bars.tsv (before/after per method) and, per method,
// curve_<method>.tsv (step, training loss), eval_<method>.tsv (step, domain and general
// held-out token accuracy) and frontier_<method>.tsv (every point: forgetting, gain, setting;
// by forgetting) into out_dir, each atomically.
void write_comparison(const std::string& out_dir, const std::vector<MethodRun>& runs,
                      const nlohmann::json& comparison);

}  // namespace kvtune
