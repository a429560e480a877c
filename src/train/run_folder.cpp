#include "train/run_folder.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include <yaml-cpp/yaml.h>

#include "common/check.h"
#include "common/path_checks.h"
#include "common/yaml_reader.h"
#include "train/checkpoint.h"
#include "train/recipe_io.h"

namespace kvtune {
namespace {

namespace fs = std::filesystem;

constexpr const char* kRecipeFile = "recipe.yaml";

// What a run writes into its folder (trainer.h); --overwrite removes these, the ranks' own
// checkpoint.rank*.pt, and nothing else.
const char* const kRunFiles[] = {"model",       "checkpoint.pt", "metrics.jsonl",
                                 "report.json", "report.md",     kRecipeFile};

// True when `inner` is `outer` or lies inside it (both made absolute and normalized).
bool within(const fs::path& inner, const fs::path& outer) {
  const auto i = fs::weakly_canonical(fs::absolute(inner));
  const auto o = fs::weakly_canonical(fs::absolute(outer));
  auto oi = o.begin(), ii = i.begin();
  for (; oi != o.end(); ++oi, ++ii) {
    if (oi->empty()) continue;  // a trailing separator
    if (ii == i.end() || *ii != *oi) return false;
  }
  return true;
}

// Every scalar (and sequence, as flow YAML) of a map by its dotted key.
void flatten(const YAML::Node& node, const std::string& prefix,
             std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : YAML::Dump(kv.first);
      flatten(kv.second, prefix.empty() ? key : prefix + "." + key, out);
    }
    return;
  }
  YAML::Emitter e;
  e << YAML::Flow << node;
  out[prefix] = e.c_str();
}

std::map<std::string, std::string> flat(const YAML::Node& node) {
  std::map<std::string, std::string> out;
  flatten(node, "", out);
  return out;
}

// The recipe as recipe.yaml would hold it, read back (so numbers compare as written).
std::map<std::string, std::string> flat_recipe(const Recipe& r) {
  YAML::Emitter e;
  e << recipe_to_yaml(r);
  return flat(YAML::Load(e.c_str()));
}

void check_resume_settings(const Recipe& r, const std::string& out_dir) {
  const std::string stored_path = (fs::path(out_dir) / kRecipeFile).string();
  const auto stored = flat(load_yaml_file(stored_path));
  const auto now = flat_recipe(r);
  const auto& allowed = resume_changeable_keys();
  std::vector<std::string> changed;
  auto value = [](const std::map<std::string, std::string>& m, const std::string& k) {
    const auto it = m.find(k);
    return it == m.end() ? std::string("(absent)") : it->second;
  };
  std::map<std::string, std::string> keys;
  for (const auto& kv : stored) keys[kv.first];
  for (const auto& kv : now) keys[kv.first];
  for (const auto& kv : keys) {
    const std::string& k = kv.first;
    if (value(stored, k) == value(now, k)) continue;
    if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
    changed.push_back(k + ": " + value(stored, k) + " -> " + value(now, k));
  }
  if (changed.empty()) return;
  std::string list;
  for (size_t i = 0; i < changed.size() && i < 8; ++i) list += "\n  " + changed[i];
  if (changed.size() > 8) list += "\n  ... and " + std::to_string(changed.size() - 8) + " more";
  KVT_THROW("--resume: the recipe differs from the one ", out_dir, " was started with (",
            stored_path, "):", list,
            "\nA resumed run must compute what it started to; only these may change: "
            "train.log_every, train.checkpoint_every, train.eval_every, train.threads. Resume "
            "with the run's own recipe (",
            stored_path, "), or start a new run with another --out (or --overwrite)");
}

}  // namespace

const std::vector<std::string>& resume_changeable_keys() {
  static const std::vector<std::string> keys = {"train.log_every", "train.checkpoint_every",
                                                "train.eval_every", "train.threads"};
  return keys;
}

std::unique_ptr<FileLock> open_run_folder(const Recipe& r, const std::string& out_dir, bool resume,
                                          bool overwrite) {
  KVT_CHECK(!out_dir.empty(), "the run's output folder is empty: give --out DIR");
  if (r.mode == "finetune" && !r.base.empty()) {
    KVT_CHECK(!within(out_dir, r.base) && !within(r.base, out_dir), "--out ", out_dir,
              " is the base model's folder ", r.base,
              " (or lies inside it, or holds it): the fine-tune would rewrite its own base. Give "
              "another --out (default runs/<recipe name>)");
  }
  std::error_code ec;
  if (fs::exists(out_dir, ec)) {
    KVT_CHECK(fs::is_directory(out_dir, ec), "--out ", out_dir,
              " is a file, not a folder: give a folder for the run");
  } else {
    fs::create_directories(out_dir, ec);
    KVT_CHECK(!ec && is_folder(out_dir), "cannot create the run folder ", out_dir, ": ",
              ec.message(), ": check the parent folder is writable");
  }
  auto lock = std::make_unique<FileLock>((fs::path(out_dir) / "run").string());

  const bool is_run = fs::exists(fs::path(out_dir) / kRecipeFile, ec);
  if (overwrite) {
    for (const char* name : kRunFiles) fs::remove_all(fs::path(out_dir) / name, ec);
    remove_rank_checkpoints(out_dir);  // a run with split banks (checkpoint.h)
  } else if (is_run) {
    if (!resume) {
      const bool finished = fs::exists(fs::path(out_dir) / "model", ec);
      KVT_THROW(out_dir, " already holds ", finished ? "a finished run" : "an unfinished run", " (",
                kRecipeFile,
                "): continue it with --resume, give another --out, or "
                "replace it with --overwrite");
    }
    check_resume_settings(r, out_dir);
  } else {
    bool empty = true;
    for (const auto& e : fs::directory_iterator(out_dir, ec)) {
      if (e.path().filename() != "run.lock") empty = false;
    }
    KVT_CHECK(empty, out_dir, " is not empty and holds no kvtune run (no ", kRecipeFile,
              "): give an empty or new --out, or --overwrite to write the run's files into it");
  }
  save_resolved_recipe(r, (fs::path(out_dir) / kRecipeFile).string());
  return lock;
}

}  // namespace kvtune
