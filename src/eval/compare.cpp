#include "eval/compare.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common/atomic_file.h"
#include "common/check.h"
#include "train/method.h"

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
  return method_names();
}

MethodRun read_method_run(const std::string& method, const std::string& dir,
                          std::vector<std::string> settings) {
  MethodRun run{method,
                dir,
                read_json_file((fs::path(dir) / "report.json").string()),
                {},
                std::move(settings)};
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
  const auto& after = report.at("domain").at("after");
  if (after.contains("wording_recall")) return "wording_recall";
  return after.contains("exact_match") ? "exact_match" : "token_accuracy";
}

namespace {

bool is_fact_metric(const std::string& metric) {
  return metric == "wording_recall" || metric == "exact_match";
}

}  // namespace

SweepAxis parse_sweep(const std::string& text) {
  const std::string form =
      ": expected [METHOD:]KEY=V1,V2,..., e.g. --sweep optim.bank_lr=1e-2,3e-2,1e-1 or "
      "--sweep sparse:sparse.top_t=100,500";
  const auto eq = text.find('=');
  KVT_CHECK(eq != std::string::npos, "--sweep '", text, "' has no '='", form);
  SweepAxis axis;
  std::string key = text.substr(0, eq);
  const auto colon = key.find(':');
  if (colon != std::string::npos) {
    axis.method = key.substr(0, colon);
    key = key.substr(colon + 1);
    const auto& names = compared_methods();
    KVT_CHECK(std::find(names.begin(), names.end(), axis.method) != names.end(), "--sweep '", text,
              "': unknown method '", axis.method, "'", form);
  }
  KVT_CHECK(!key.empty(), "--sweep '", text, "' has an empty key", form);
  KVT_CHECK(key.find_first_of(" \t") == std::string::npos, "--sweep '", text, "': the key '", key,
            "' holds a space", form);
  KVT_CHECK(key != "method", "--sweep '", text,
            "': the method is not a sweep key: list methods with --methods");
  axis.key = key;
  const std::string list = text.substr(eq + 1);
  size_t start = 0;
  while (true) {
    const auto comma = list.find(',', start);
    const std::string v =
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    KVT_CHECK(!v.empty(), "--sweep '", text, "' has an empty value", form);
    KVT_CHECK(std::find(axis.values.begin(), axis.values.end(), v) == axis.values.end(),
              "--sweep '", text, "' lists the value '", v, "' twice");
    axis.values.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return axis;
}

std::vector<std::vector<std::string>> sweep_settings(const std::vector<SweepAxis>& axes,
                                                     const std::string& method) {
  std::vector<std::vector<std::string>> settings = {{}};
  std::vector<std::string> keys;
  for (const auto& axis : axes) {
    if (!axis.method.empty() && axis.method != method) continue;
    KVT_CHECK(std::find(keys.begin(), keys.end(), axis.key) == keys.end(), "--sweep: key '",
              axis.key, "' is swept twice for method ", method,
              ": give all its values in one --sweep");
    keys.push_back(axis.key);
    std::vector<std::vector<std::string>> next;
    for (const auto& s : settings) {
      for (const auto& v : axis.values) {
        auto t = s;
        t.push_back(axis.key + "=" + v);
        next.push_back(t);
      }
    }
    settings = std::move(next);
  }
  return settings;
}

std::string setting_name(const std::vector<std::string>& setting) {
  std::string name;
  for (const auto& s : setting) name += (name.empty() ? "" : ",") + s;
  for (char& c : name) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                    c == '=' || c == ',' || c == '+' || c == '-';
    if (!ok) c = '_';
  }
  return name;
}

namespace {

// One run as a point of the comparison (points(): gain and forgetting in points).
nlohmann::json run_point(const MethodRun& run, const std::string& metric) {
  const auto& r = run.report;
  try {
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
        {"steps", r.at("steps")},
        {"settings", run.settings},
        {"run", run.dir}};
    if (is_fact_metric(metric)) {
      const auto& after = d.at("after");
      m["domain_token_accuracy_gain"] = points(after, d.at("before"), "token_accuracy");
      m["exact_match_control_after"] = after.at("exact_match_control");
      m["chance"] = after.at("chance");
      // The four fact measures (eval/facts.h), where the report has them (older ones: (b) only).
      for (const char* key : {"wording_recall", "wording_recall_control", "wording_chance",
                              "exact_match", "verbatim_recall"}) {
        if (after.contains(key)) m[std::string(key) + "_after"] = after.at(key);
      }
    }
    return m;
  } catch (const nlohmann::json::exception& e) {
    KVT_THROW(run.dir, "/report.json lacks a field (", e.what(),
              "): it was written by an older kvtune; run the method again");
  }
}

bool is_memory_kind(const std::string& method) {
  return method == "memory" || method == "sparse";
}

}  // namespace

nlohmann::json compare_runs(const std::vector<MethodRun>& runs, double budget) {
  KVT_CHECK(!runs.empty(), "compare: no runs");
  const auto& first = runs.front().report;
  const std::string metric = domain_metric(first);
  nlohmann::json methods = nlohmann::json::object();
  nlohmann::json all = nlohmann::json::array();
  for (const auto& run : runs) {
    KVT_CHECK(run.report.contains("recipe") && run.report.at("recipe") == first.at("recipe"),
              run.dir, ": run of recipe ", run.report.value("recipe", nlohmann::json()).dump(),
              " but ", runs.front().dir, " ran ", first.at("recipe").dump(),
              ": compare runs of one recipe");
    auto p = run_point(run, metric);
    // The shipped setting is the headline; a method swept everywhere shows its first point.
    if (run.settings.empty() || !methods.contains(run.method)) methods[run.method] = p;
    p["method"] = run.method;
    all.push_back(p);
  }
  for (const auto& [method, m] : methods.items()) {
    KVT_CHECK(m.at("steps") == methods.begin().value().at("steps"), "compare: method ", method,
              " ran ", m.at("steps").dump(), " steps at its shipped setting but ",
              methods.begin().key(), " ran ", methods.begin().value().at("steps").dump(),
              ": compare methods on one budget (sweep train.steps to vary it)");
  }
  nlohmann::json out = {{"recipe", first.at("recipe")},
                        {"steps", methods.begin().value().at("steps")},
                        {"domain_metric", metric},
                        {"methods", methods},
                        {"points", all}};
  if (budget < 0 && methods.contains("full"))
    budget = methods["full"]["general_forgetting"].get<double>() / 3.0;
  if (budget >= 0) {
    out["budget"] = budget;
    nlohmann::json best = nlohmann::json::object();
    for (const auto& [method, m] : methods.items()) {
      nlohmann::json pick;
      for (const auto& p : all) {
        if (p["method"] != method || p["general_forgetting"].get<double>() > budget) continue;
        if (pick.is_null() || p["domain_gain"].get<double>() > pick["domain_gain"].get<double>())
          pick = p;
      }
      best[method] = pick;
    }
    out["best_under_budget"] = best;
  }
  if (methods.contains("full")) {
    // Against full at its shipped setting: some memory/sparse point with >= 80% of its gain at
    // <= a third of its forgetting.
    const double full_gain = methods["full"]["domain_gain"].get<double>();
    const double cap = methods["full"]["general_forgetting"].get<double>() / 3.0;
    nlohmann::json winner;
    double best_fraction = -1e300;
    for (const auto& p : all) {
      if (!is_memory_kind(p["method"])) continue;
      const double f = full_gain != 0 ? p["domain_gain"].get<double>() / full_gain : 0.0;
      const bool ok = p["general_forgetting"].get<double>() <= cap;
      if (ok && f > best_fraction) {
        best_fraction = f;
        winner = p;
      }
    }
    out["targets"]["against_full"] =
        nlohmann::json{{"forgetting_cap", cap},
                       {"best_gain_fraction_under_cap",
                        winner.is_null() ? nlohmann::json() : nlohmann::json(best_fraction)},
                       {"point", winner},
                       {"met", !winner.is_null() && best_fraction >= 0.8}};
  }
  if (methods.contains("lora")) {
    // Against LoRA along the frontier: at every forgetting level a LoRA point reaches, some
    // memory/sparse point forgets no more and gains at least as much.
    nlohmann::json misses = nlohmann::json::array();
    bool any_memory = false;
    for (const auto& l : all) {
      if (l["method"] != "lora") continue;
      bool covered = false;
      for (const auto& p : all) {
        if (!is_memory_kind(p["method"])) continue;
        any_memory = true;
        covered = covered ||
                  (p["general_forgetting"].get<double>() <= l["general_forgetting"].get<double>() &&
                   p["domain_gain"].get<double>() >= l["domain_gain"].get<double>());
      }
      if (!covered)
        misses.push_back({{"forgetting", l["general_forgetting"]},
                          {"gain", l["domain_gain"]},
                          {"settings", l["settings"]}});
    }
    if (any_memory)
      out["targets"]["against_lora"] =
          nlohmann::json{{"uncovered_lora_points", misses}, {"met", misses.empty()}};
  }
  return out;
}

std::string compare_markdown(const nlohmann::json& c) {
  const std::string metric = c.at("domain_metric");
  const std::string unit = metric == "wording_recall" ? "recall in held-out wordings"
                           : metric == "exact_match"  ? "exact match"
                                                      : "token accuracy";
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
  if (metric == "wording_recall") {
    md << "\nFacts after training, exact match (%): (a) recall in held-out wordings, (b) question "
          "answering, (c) their untrained-facts controls, beside chance; (d) is the general "
          "forgetting above.\n\n"
       << "| method | (a) trained facts | (a) control | (b) trained facts | (b) control | "
          "trained wordings |\n|---|---|---|---|---|---|\n";
    for (const auto& method : compared_methods()) {
      if (!c["methods"].contains(method)) continue;
      const auto& m = c["methods"][method];
      md << fmt::format("| {} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} |\n", method,
                        100 * m.value("wording_recall_after", 0.0),
                        100 * m.value("wording_recall_control_after", 0.0),
                        100 * m.value("exact_match_after", 0.0),
                        100 * m.value("exact_match_control_after", 0.0),
                        100 * m.value("verbatim_recall_after", 0.0));
    }
    const auto any = c["methods"].begin();
    md << fmt::format("\nChance: (a) {:.2f}%, (b) {:.2f}%.\n",
                      100 * any->value("wording_chance_after", 0.0),
                      100 * (*any)["chance"].get<double>());
  } else if (metric == "exact_match") {
    md << "\nUntrained facts (control) after training:";
    for (const auto& method : compared_methods()) {
      if (!c["methods"].contains(method)) continue;
      md << fmt::format(" {} {:.2f}%;", method,
                        100 * c["methods"][method]["exact_match_control_after"].get<double>());
    }
    const auto any = c["methods"].begin();
    md << fmt::format(" chance {:.2f}%.\n", 100 * (*any)["chance"].get<double>());
  }
  const auto& pts = c.value("points", nlohmann::json::array());
  bool swept = false;
  for (const auto& p : pts) swept = swept || !p["settings"].empty();
  if (swept) {
    md << "\n## Every point\n\n| method | settings | steps | domain gain | general forgetting |\n"
       << "|---|---|---|---|---|\n";
    for (const auto& method : compared_methods()) {
      for (const auto& p : pts) {
        if (p["method"] != method) continue;
        std::string set;
        for (const auto& s : p["settings"]) set += (set.empty() ? "" : ", ") + s.get<std::string>();
        md << fmt::format("| {} | {} | {} | {:+.2f} | {:.2f} |\n", method,
                          set.empty() ? "(as shipped)" : set, p["steps"].get<int64_t>(),
                          p["domain_gain"].get<double>(), p["general_forgetting"].get<double>());
      }
    }
  }
  if (c.contains("best_under_budget")) {
    md << fmt::format("\nBest point of each method with forgetting <= {:.2f} points:",
                      c["budget"].get<double>());
    for (const auto& method : compared_methods()) {
      if (!c["best_under_budget"].contains(method)) continue;
      const auto& b = c["best_under_budget"][method];
      if (b.is_null()) {
        md << " " << method << " none;";
      } else {
        md << fmt::format(" {} {:+.2f} (forgetting {:.2f});", method,
                          b["domain_gain"].get<double>(), b["general_forgetting"].get<double>());
      }
    }
    md << "\n";
  }
  if (c.contains("targets") && c["targets"].contains("against_full")) {
    const auto& t = c["targets"]["against_full"];
    md << fmt::format(
        "\nTarget against full: a memory or sparse point with >= 80% of full's gain at "
        "<= {:.2f} points of forgetting (a third of full's): ",
        t["forgetting_cap"].get<double>());
    if (t["point"].is_null()) {
      md << "no memory or sparse point is under the cap: not met.\n";
    } else {
      md << fmt::format("best {:.0f}% of full's gain ({}): {}.\n",
                        100 * t["best_gain_fraction_under_cap"].get<double>(),
                        t["point"]["method"].get<std::string>(),
                        t["met"].get<bool>() ? "met" : "not met");
    }
  }
  if (c.contains("targets") && c["targets"].contains("against_lora")) {
    const auto& t = c["targets"]["against_lora"];
    md << fmt::format(
        "\nTarget against LoRA: every LoRA point dominated by a memory or sparse "
        "point (no more forgetting, at least its gain): {} ({} LoRA point(s) not "
        "covered).\n",
        t["met"].get<bool>() ? "met" : "not met", t["uncovered_lora_points"].size());
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
  std::vector<const MethodRun*> headline;
  for (const auto& run : runs) {
    if (c["methods"][run.method]["run"] == run.dir) headline.push_back(&run);
  }
  for (const auto* h : headline) {
    const auto& run = *h;
    const auto& m = c["methods"][run.method];
    const auto& d = run.report.at("domain");
    bars << run.method << "\t" << 100 * m["domain_before"].get<double>() << "\t"
         << 100 * m["domain_after"].get<double>() << "\t" << 100 * m["general_before"].get<double>()
         << "\t" << 100 * m["general_after"].get<double>() << "\t"
         << 100 * d.at("before").at("token_accuracy").get<double>() << "\t"
         << 100 * d.at("after").at("token_accuracy").get<double>() << "\n";
  }
  write_file_atomic(path("bars.tsv"), bars.str());
  for (const auto& method : compared_methods()) {
    std::vector<nlohmann::json> pts;
    for (const auto& p : c.value("points", nlohmann::json::array()))
      if (p["method"] == method) pts.push_back(p);
    if (pts.empty()) continue;
    std::sort(pts.begin(), pts.end(), [](const nlohmann::json& a, const nlohmann::json& b) {
      return a["general_forgetting"].get<double>() < b["general_forgetting"].get<double>();
    });
    std::ostringstream f;
    f << "# general_forgetting\tdomain_gain\tsettings\n";
    for (const auto& p : pts) {
      std::string set;
      for (const auto& s : p["settings"]) set += (set.empty() ? "" : ",") + s.get<std::string>();
      f << p["general_forgetting"].get<double>() << "\t" << p["domain_gain"].get<double>() << "\t"
        << (set.empty() ? "shipped" : set) << "\n";
    }
    write_file_atomic(path("frontier_" + method + ".tsv"), f.str());
  }
  for (const auto* h : headline) {
    const auto& run = *h;
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
