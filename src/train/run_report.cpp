#include "train/run_report.h"

#include <sstream>

#include <fmt/format.h>

namespace kvtune {

namespace {

// Text safe inside a Markdown table cell.
std::string cell(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n' || c == '\r') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string report_markdown(const nlohmann::json& report) {
  struct Row {
    const char* key;
    const char* label;
    bool is_fraction;  // shown as a percentage, change in points
  };
  const Row rows[] = {{"token_accuracy", "token accuracy", true},
                      {"loss", "loss (nats/token)", false},
                      {"bits_per_byte", "bits per byte", false},
                      {"word_accuracy", "whole-word accuracy", true},
                      {"wording_recall", "recall in held-out wordings, trained facts", true},
                      {"wording_recall_control", "recall in held-out wordings, control", true},
                      {"wording_chance", "recall in held-out wordings, chance", true},
                      {"exact_match", "question answering, trained facts", true},
                      {"exact_match_control", "question answering, control", true},
                      {"chance", "question answering, chance", true},
                      {"verbatim_recall", "recall in trained wordings, trained facts", true}};
  std::ostringstream md;
  md << "# Fine-tuning report: " << report.value("recipe", std::string("?")) << " (method "
     << report.value("method", std::string("?")) << ")\n\n";
  md << fmt::format(
      "{} steps, {} trainable parameters, {:.1f} s of training, peak memory {:.0f} "
      "MiB.\n\n",
      report.value("steps", 0), report.value("trainable_parameters", 0),
      report.value("wall_seconds", 0.0),
      double(report.value("peak_memory_bytes", int64_t{0})) / (1 << 20));
  md << "| set | metric | before | after | change |\n|---|---|---|---|---|\n";
  for (const char* set : {"domain", "general"}) {
    if (!report.contains(set)) continue;
    std::string name = set;
    if (report.contains("sets")) {
      std::string corpora;
      const auto& named = report["sets"][set];
      for (const auto& c : named.is_array() ? named : nlohmann::json::array({named})) {
        corpora += (corpora.empty() ? "" : ", ") + c.get<std::string>();
      }
      name += " (" + corpora + ")";
    }
    const auto& before = report[set]["before"];
    const auto& after = report[set]["after"];
    for (const auto& row : rows) {
      if (!before.contains(row.key) || !after.contains(row.key)) continue;
      const double b = before[row.key].get<double>(), a = after[row.key].get<double>();
      md << (row.is_fraction ? fmt::format("| {} | {} | {:.2f}% | {:.2f}% | {:+.2f} points |\n",
                                           name, row.label, 100 * b, 100 * a, 100 * (a - b))
                             : fmt::format("| {} | {} | {:.3f} | {:.3f} | {:+.3f} |\n", name,
                                           row.label, b, a, a - b));
    }
  }
  if (report.contains("domain") && report["domain"]["after"].contains("answers")) {
    md << "\nSample answers after training (trained facts, asked in new words):\n\n";
    md << "| question | expected | answered |\n|---|---|---|\n";
    for (const auto& a : report["domain"]["after"]["answers"]) {
      md << "| " << cell(a["prompt"].get<std::string>()) << " | "
         << cell(a["expected"].get<std::string>()) << " | "
         << cell(a["predicted"].get<std::string>()) << (a["correct"].get<bool>() ? "" : " (wrong)")
         << " |\n";
    }
  }
  return md.str();
}

}  // namespace kvtune
