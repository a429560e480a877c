#include "eval/compare.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common/atomic_file.h"
#include "common/check.h"

namespace kvtune {
namespace fs = std::filesystem;

namespace {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  KVT_CHECK(in.good(), path, " cannot be read: the run did not finish (run it again)");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    KVT_THROW(path, " is not valid JSON (", e.what(), "): run the method again");
  }
}

double points(const nlohmann::json& after, const nlohmann::json& before, const std::string& key) {
  return 100.0 * (after.at(key).get<double>() - before.at(key).get<double>());
}

}  // namespace

const std::vector<std::string>& compared_methods() {
  static const std::vector<std::string> methods = {"memory", "full", "lora"};
  return methods;
}

MethodRun read_method_run(const std::string& method, const std::string& dir) {
  MethodRun run{method, dir, read_json_file((fs::path(dir) / "report.json").string()), {}};
  const auto metrics_path = (fs::path(dir) / "metrics.jsonl").string();
  std::ifstream in(metrics_path);
  KVT_CHECK(in.good(), metrics_path, " cannot be read: run the method again");
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    try {
      run.metrics.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      KVT_THROW(metrics_path, ":", line_no, ": not valid JSON (", e.what(), ")");
    }
  }
  return run;
}

std::string domain_metric(const nlohmann::json& report) {
  return report.at("domain").at("after").contains("exact_match") ? "exact_match" : "token_accuracy";
}

nlohmann::json compare_runs(const std::vector<MethodRun>& runs) {
  KVT_CHECK(!runs.empty(), "compare: no runs");
  const auto& first = runs.front().report;
  const std::string metric = domain_metric(first);
  nlohmann::json methods = nlohmann::json::object();
  for (const auto& run : runs) {
    const auto& r = run.report;
    try {
      KVT_CHECK(r.at("recipe") == first.at("recipe") && r.at("steps") == first.at("steps"), run.dir,
                ": run of recipe ", r.at("recipe").dump(), " for ", r.at("steps").dump(),
                " steps, but ", runs.front().dir, " ran ", first.at("recipe").dump(), " for ",
                first.at("steps").dump(), ": compare runs of one recipe and budget");
      KVT_CHECK(domain_metric(r) == metric, run.dir, ": its domain set has no '", metric, "'");
      const auto& d = r.at("domain");
      const auto& g = r.at("general");
      nlohmann::json m = {
          {"domain_gain", points(d.at("after"), d.at("before"), metric)},
          {"general_forgetting", -points(g.at("after"), g.at("before"), "token_accuracy")},
          {"trainable_parameters", r.at("trainable_parameters")},
          {"wall_seconds", r.at("wall_seconds")},
          {"peak_memory_bytes", r.at("peak_memory_bytes")},
          {"domain_before", d.at("before").at(metric)},
          {"domain_after", d.at("after").at(metric)},
          {"general_before", g.at("before").at("token_accuracy")},
          {"general_after", g.at("after").at("token_accuracy")},
          {"run", run.dir}};
      if (metric == "exact_match") {
        m["domain_token_accuracy_gain"] = points(d.at("after"), d.at("before"), "token_accuracy");
        m["exact_match_control_after"] = d.at("after").at("exact_match_control");
        m["chance"] = d.at("after").at("chance");
      }
      methods[run.method] = m;
    } catch (const nlohmann::json::exception& e) {
      KVT_THROW(run.dir, "/report.json lacks a field (", e.what(),
                "): it was written by an older kvtune; run the method again");
    }
  }
  nlohmann::json out = {{"recipe", first.at("recipe")},
                        {"steps", first.at("steps")},
                        {"domain_metric", metric},
                        {"methods", methods}};
  if (methods.contains("memory") && methods.contains("full") && methods.contains("lora")) {
    const auto& mem = methods["memory"];
    const double full_gain = methods["full"]["domain_gain"].get<double>();
    const double mem_gain = mem["domain_gain"].get<double>();
    const double mem_forget = mem["general_forgetting"].get<double>();
    const double cap = std::min(methods["full"]["general_forgetting"].get<double>(),
                                methods["lora"]["general_forgetting"].get<double>()) /
                       3.0;
    out["targets"] = {{"memory_gain_fraction_of_full", full_gain != 0 ? mem_gain / full_gain : 0.0},
                      {"gain_met", mem_gain >= 0.8 * full_gain},
                      {"forgetting_cap", cap},
                      {"forgetting_met", mem_forget <= cap}};
  }
  return out;
}

std::string compare_markdown(const nlohmann::json& c) {
  const std::string metric = c.at("domain_metric");
  const std::string unit = metric == "exact_match" ? "exact match" : "token accuracy";
  std::ostringstream md;
  md << "# Method comparison: " << c.at("recipe").get<std::string>() << ", "
     << c.at("steps").get<int64_t>() << " steps each\n\n"
     << "Domain: " << unit << " on the domain's held-out set; general: token accuracy on the "
     << "general held-out set. Gain and forgetting in points; forgetting is accuracy lost.\n\n"
     << "| method | domain before → after | domain gain | general before → after | general "
        "forgetting | trainable parameters | wall time (s) | peak memory (MiB) |\n"
     << "|---|---|---|---|---|---|---|---|\n";
  for (const auto& method : compared_methods()) {
    if (!c.at("methods").contains(method)) continue;
    const auto& m = c["methods"][method];
    md << fmt::format(
        "| {} | {:.2f}% → {:.2f}% | {:+.2f} | {:.2f}% → {:.2f}% | {:.2f} | {} | {:.1f} | {:.0f} "
        "|\n",
        method, 100 * m["domain_before"].get<double>(), 100 * m["domain_after"].get<double>(),
        m["domain_gain"].get<double>(), 100 * m["general_before"].get<double>(),
        100 * m["general_after"].get<double>(), m["general_forgetting"].get<double>(),
        m["trainable_parameters"].get<int64_t>(), m["wall_seconds"].get<double>(),
        m["peak_memory_bytes"].get<double>() / (1 << 20));
  }
  if (metric == "exact_match") {
    md << "\nUntrained facts (control) after training:";
    for (const auto& method : compared_methods()) {
      if (!c["methods"].contains(method)) continue;
      md << fmt::format(" {} {:.2f}%;", method,
                        100 * c["methods"][method]["exact_match_control_after"].get<double>());
    }
    const auto any = c["methods"].begin();
    md << fmt::format(" chance {:.2f}%.\n", 100 * (*any)["chance"].get<double>());
  }
  if (c.contains("targets")) {
    const auto& t = c["targets"];
    md << fmt::format(
        "\nTargets: memory's domain gain is {:.0f}% of full's (target 80%: {}); its forgetting "
        "{:.2f} points against a cap of a third of full's and LoRA's, {:.2f} ({}).\n",
        100 * t["memory_gain_fraction_of_full"].get<double>(),
        t["gain_met"].get<bool>() ? "met" : "not met",
        c["methods"]["memory"]["general_forgetting"].get<double>(),
        t["forgetting_cap"].get<double>(), t["forgetting_met"].get<bool>() ? "met" : "not met");
  }
  return md.str();
}

void write_comparison(const std::string& out_dir, const std::vector<MethodRun>& runs,
                      const nlohmann::json& c) {
  fs::create_directories(out_dir);
  const auto path = [&](const std::string& name) { return (fs::path(out_dir) / name).string(); };
  write_file_atomic(path("compare.json"), c.dump(2) + "\n");
  write_file_atomic(path("compare.md"), compare_markdown(c));
  std::ostringstream bars;
  bars << "# method\tdomain_before\tdomain_after\tgeneral_before\tgeneral_after"
          "\tdomain_token_accuracy_before\tdomain_token_accuracy_after\n";
  for (const auto& run : runs) {
    const auto& m = c["methods"][run.method];
    const auto& d = run.report.at("domain");
    bars << run.method << "\t" << 100 * m["domain_before"].get<double>() << "\t"
         << 100 * m["domain_after"].get<double>() << "\t" << 100 * m["general_before"].get<double>()
         << "\t" << 100 * m["general_after"].get<double>() << "\t"
         << 100 * d.at("before").at("token_accuracy").get<double>() << "\t"
         << 100 * d.at("after").at("token_accuracy").get<double>() << "\n";
  }
  write_file_atomic(path("bars.tsv"), bars.str());
  for (const auto& run : runs) {
    std::ostringstream curve, evals;
    curve << "step\tloss\n";
    evals << "step\tdomain_token_accuracy\tgeneral_token_accuracy\n";
    const auto& before = run.report.at("domain").at("before");
    evals << 0 << "\t" << 100 * before.at("token_accuracy").get<double>() << "\t"
          << 100 * run.report.at("general").at("before").at("token_accuracy").get<double>() << "\n";
    for (const auto& line : run.metrics) {
      if (line.contains("loss") && line.contains("step")) {
        curve << line["step"].get<int64_t>() << "\t" << line["loss"].get<double>() << "\n";
      }
      if (line.contains("eval") && line["eval"].contains("domain") &&
          line["eval"].contains("general")) {
        evals << line["step"].get<int64_t>() << "\t"
              << 100 * line["eval"]["domain"]["token_accuracy"].get<double>() << "\t"
              << 100 * line["eval"]["general"]["token_accuracy"].get<double>() << "\n";
      }
    }
    write_file_atomic(path("curve_" + run.method + ".tsv"), curve.str());
    write_file_atomic(path("eval_" + run.method + ".tsv"), evals.str());
  }
}

}  // namespace kvtune
