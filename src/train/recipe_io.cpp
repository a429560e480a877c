#include "train/recipe_io.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "attention/knn_attention.h"
#include "common/atomic_file.h"
#include "common/check.h"
#include "common/named_config.h"
#include "common/yaml_reader.h"
#include "index/index_config_yaml.h"
#include "model/model_config_yaml.h"
#include "train/method.h"

namespace kvtune {
namespace fs = std::filesystem;

namespace {

// The shortest decimal that reads back as exactly `v` (0.1, not 0.10000000000000001).
YAML::Node yaml_double(double v) {
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return YAML::Node(std::string(buf));
}

YAML::Node flow_list(const std::vector<std::string>& items) {
  YAML::Node n(YAML::NodeType::Sequence);
  for (const auto& s : items) n.push_back(s);
  n.SetStyle(YAML::EmitterStyle::Flow);
  return n;
}

// A list of strings; a single string is a list of one (`general: wn`).
std::vector<std::string> read_string_list(YamlReader& reader, const std::string& key,
                                          std::vector<std::string> value) {
  YAML::Node node;
  reader.get(key, node);
  if (!node.IsDefined() || node.IsNull()) return value;
  if (node.IsScalar()) return {node.Scalar()};
  KVT_CHECK(node.IsSequence(), reader.where(), ": key '", reader.path(key),
            "' must be a list of names, e.g. [wn, foldoc]");
  value.clear();
  for (const auto& item : node) {
    KVT_CHECK(item.IsScalar(), reader.where(), ": key '", reader.path(key),
              "' must be a list of names, got an item '", YAML::Dump(item), "'");
    value.push_back(item.Scalar());
  }
  return value;
}

// One strict pass over the whole tree, over the struct's defaults.
Recipe recipe_from_tree(const YAML::Node& tree, const std::string& where,
                        const std::string& default_name, const std::string& configs_dir) {
  Recipe r;
  r.name = default_name;
  YamlReader top(tree, where);
  YAML::Node model_overrides;
  top.get("name", r.name)
      .get("mode", r.mode)
      .get("method", r.method)
      .get("base", r.base)
      .get("model", r.model)
      .get("model_overrides", model_overrides)
      .get("backward", r.backward);

  YamlReader attention = top.child("attention");
  attention.get("estimator", r.attention.estimator)
      .get("k", r.attention.k)
      .get("samples", r.attention.samples)
      .get("groups", r.attention.groups)
      .get("tail_samples", r.attention.tail_samples)
      .get("backward_samples", r.attention.backward_samples)
      .get("learn_scale", r.attention.learn_scale);
  attention.finish();

  YamlReader data = top.child("data");
  r.data.general = read_string_list(data, "general", r.data.general);
  r.data.domain_mix = read_string_list(data, "domain_mix", r.data.domain_mix);
  data.get("domain", r.data.domain)
      .get("held_out_fraction", r.data.held_out_fraction)
      .get("split_salt", r.data.split_salt)
      .get("seq_len", r.data.seq_len)
      .get("max_entries", r.data.max_entries)
      .get("train_templates", r.data.train_templates);
  data.finish();

  YamlReader bank = top.child("domain_bank");
  YAML::Node index;
  r.domain_bank.attach = read_string_list(bank, "attach", r.domain_bank.attach);
  bank.get("size", r.domain_bank.size)
      .get("key_dim", r.domain_bank.key_dim)
      .get("value_dim", r.domain_bank.value_dim)
      .get("key_init", r.domain_bank.key_init)
      .get("value_init", r.domain_bank.value_init)
      .get("train_query", r.domain_bank.train_query)
      .get("init", r.domain_bank.init)
      .get("index", index);
  bank.finish();
  r.domain_bank.index = resolve_index_config(index, configs_dir, where, bank.path("index"));

  YamlReader lora = top.child("lora");
  lora.get("rank", r.lora.rank).get("alpha", r.lora.alpha);
  lora.finish();

  YamlReader sparse = top.child("sparse");
  sparse.get("top_t", r.sparse.top_t)
      .get("train", r.sparse.train)
      .get("optimizer", r.sparse.optimizer);
  sparse.finish();

  YamlReader optim = top.child("optim");
  optim.get("lr", r.optim.lr)
      .get("bank_lr", r.optim.bank_lr)
      .get("weight_decay", r.optim.weight_decay)
      .get("grad_clip", r.optim.grad_clip)
      .get("warmup_steps", r.optim.warmup_steps);
  optim.finish();

  YamlReader train = top.child("train");
  train.get("steps", r.train.steps)
      .get("batch_size", r.train.batch_size)
      .get("seed", r.train.seed)
      .get("checkpoint_every", r.train.checkpoint_every)
      .get("eval_every", r.train.eval_every)
      .get("log_every", r.train.log_every)
      .get("eval_batches", r.train.eval_batches)
      .get("threads", r.train.threads)
      .get("device", r.train.device)
      .get("background_batches", r.train.background_batches)
      .get("shard_base_banks", r.train.shard_base_banks);
  train.finish();
  top.finish();

  r.model_config = resolve_model_config(r.model, model_overrides, configs_dir, where);
  return r;
}

// The node at `keys[i]` under `node`, made a map when absent, so that a --set can go deeper.
YAML::Node descend_for_set(YAML::Node node, const SetOverride& set, size_t i,
                           const std::string& configs_dir, const std::string& where) {
  const std::string& key = set.keys[i];
  std::string dotted;
  for (size_t j = 0; j <= i; ++j) dotted += (j ? "." : "") + set.keys[j];
  YAML::Node child = node[key];
  if (!child.IsDefined() || child.IsNull()) {
    node[key] = YAML::Node(YAML::NodeType::Map);
  } else if (child.IsScalar() && dotted == "domain_bank.index") {
    // `index: ivf` names a file: inline its map so one of its keys can be overridden.
    node[key] = to_yaml(resolve_index_config(child, configs_dir, where, dotted));
  } else if (child.IsSequence()) {
    KVT_THROW("--set ", set.text, ": key '", dotted, "' is a list: set it whole, e.g. --set ",
              dotted, "=[a,b]");
  } else if (!child.IsMap()) {
    KVT_THROW("--set ", set.text, ": key '", dotted, "' is a value, not a map of keys");
  }
  return node[key];
}

void apply_set(YAML::Node tree, const SetOverride& set, const std::string& configs_dir,
               const std::string& where) {
  YAML::Node node = tree;
  for (size_t i = 0; i + 1 < set.keys.size(); ++i) {
    YAML::Node next = descend_for_set(node, set, i, configs_dir, where);
    node.reset(next);  // rebind the handle (operator= would overwrite the node's contents)
  }
  node[set.keys.back()] = set.value;
}

}  // namespace

SetOverride parse_set_override(const std::string& text) {
  const auto eq = text.find('=');
  KVT_CHECK(eq != std::string::npos && eq > 0, "--set ", text,
            ": expected KEY.PATH=VALUE, e.g. --set train.steps=500 or --set "
            "data.general=[wn,foldoc]");
  SetOverride set;
  set.text = text;
  const std::string key = text.substr(0, eq);
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    set.keys.push_back(
        key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    KVT_CHECK(!set.keys.back().empty() && set.keys.back().find(' ') == std::string::npos, "--set ",
              text, ": key '", key, "' is not a dotted path such as train.steps");
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  const std::string value = text.substr(eq + 1);
  if (value.empty()) {
    set.value = YAML::Node(std::string());
    return set;
  }
  const bool flow = value[0] == '[' || value[0] == '{';
  try {
    YAML::Node parsed = YAML::Load(value);
    // "a: b" would parse as a map: only an explicit {...} means one; otherwise it is a string.
    set.value = (parsed.IsMap() && !flow) ? YAML::Node(value) : parsed;
  } catch (const YAML::Exception& e) {
    KVT_CHECK(!flow, "--set ", text, ": value '", value,
              "' is not a valid YAML flow list: ", e.msg);
    set.value = YAML::Node(value);
  }
  return set;
}

void merge_yaml(YAML::Node base, const YAML::Node& overrides) {
  for (const auto& kv : overrides) {
    if (!kv.first.IsScalar()) {
      // Not a key of ours ([1, 2]: x): carried over, so that the model reader names it as an
      // unknown key (as<std::string>() would throw a yaml-cpp exception here).
      base[kv.first] = YAML::Clone(kv.second);
      continue;
    }
    const std::string key = kv.first.Scalar();
    YAML::Node current = base[key];
    if (current.IsDefined() && current.IsMap() && kv.second.IsMap()) {
      merge_yaml(current, kv.second);
    } else {
      base[key] = YAML::Clone(kv.second);
    }
  }
}

YAML::Node model_config_yaml(const ModelConfig& config) {
  return to_yaml(config);
}

ModelConfig resolve_model_config(const std::string& model, const YAML::Node& overrides,
                                 const std::string& configs_dir, const std::string& where) {
  const std::string dir = (fs::path(configs_dir) / "models").string();
  const std::string path = find_named_config(model, dir, "model", where, "model");
  YAML::Node node = YAML::Clone(load_yaml_file(path));
  if (node.IsNull()) node = YAML::Node(YAML::NodeType::Map);
  KVT_CHECK(node.IsMap(), path, ": the top level must be a map of key: value");
  std::string model_where = path;
  if (overrides.IsDefined() && !overrides.IsNull()) {
    KVT_CHECK(overrides.IsMap(), where,
              ": key 'model_overrides' must be a map of model keys, e.g. {max_seq_len: 256}");
    merge_yaml(node, overrides);
    model_where += " with model_overrides from " + where;
  }
  return model_config_from_yaml(node, model_where);
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& set_overrides,
                   const std::string& configs_dir) {
  YAML::Node tree = load_yaml_file(path);
  if (tree.IsNull()) tree = YAML::Node(YAML::NodeType::Map);
  const std::string stem = fs::path(path).stem().string();
  // The file alone first, so that its errors name the file; then each --set in turn, so that
  // an error names the --set that caused it.
  Recipe recipe = recipe_from_tree(tree, path, stem, configs_dir);
  for (const auto& text : set_overrides) {
    const SetOverride set = parse_set_override(text);
    const std::string where = "--set " + text + " (over " + path + ")";
    apply_set(tree, set, configs_dir, where);
    recipe = recipe_from_tree(tree, where, stem, configs_dir);
  }
  return recipe;
}

YAML::Node recipe_to_yaml(const Recipe& r) {
  YAML::Node n(YAML::NodeType::Map);
  n["name"] = r.name;
  n["mode"] = r.mode;
  n["method"] = r.method;
  n["base"] = r.base;
  n["model"] = r.model;
  // The whole resolved model: the run does not depend on later edits of configs/models/.
  n["model_overrides"] = model_config_yaml(r.model_config);
  n["backward"] = r.backward;
  YAML::Node attention;
  attention["estimator"] = r.attention.estimator;
  attention["k"] = r.attention.k;
  attention["samples"] = r.attention.samples;
  attention["groups"] = r.attention.groups;
  attention["tail_samples"] = r.attention.tail_samples;
  attention["backward_samples"] = r.attention.backward_samples;
  attention["learn_scale"] = r.attention.learn_scale;
  n["attention"] = attention;

  YAML::Node data = n["data"];
  data["general"] = flow_list(r.data.general);
  data["domain"] = r.data.domain;
  data["domain_mix"] = flow_list(r.data.domain_mix);
  data["held_out_fraction"] = yaml_double(r.data.held_out_fraction);
  data["split_salt"] = r.data.split_salt;
  data["seq_len"] = r.data.seq_len;
  data["max_entries"] = r.data.max_entries;
  data["train_templates"] = r.data.train_templates;

  YAML::Node bank = n["domain_bank"];
  bank["size"] = r.domain_bank.size;
  bank["key_dim"] = r.domain_bank.key_dim;
  bank["value_dim"] = r.domain_bank.value_dim;
  bank["key_init"] = r.domain_bank.key_init;
  bank["value_init"] = r.domain_bank.value_init;
  bank["train_query"] = r.domain_bank.train_query;
  bank["init"] = r.domain_bank.init;
  bank["index"] = to_yaml(r.domain_bank.index);
  bank["attach"] = flow_list(r.domain_bank.attach);

  n["lora"]["rank"] = r.lora.rank;
  n["lora"]["alpha"] = yaml_double(r.lora.alpha);

  n["sparse"]["top_t"] = r.sparse.top_t;
  n["sparse"]["train"] = r.sparse.train;
  n["sparse"]["optimizer"] = r.sparse.optimizer;

  YAML::Node optim = n["optim"];
  optim["lr"] = yaml_double(r.optim.lr);
  optim["bank_lr"] = yaml_double(r.optim.bank_lr);
  optim["weight_decay"] = yaml_double(r.optim.weight_decay);
  optim["grad_clip"] = yaml_double(r.optim.grad_clip);
  optim["warmup_steps"] = r.optim.warmup_steps;

  YAML::Node train = n["train"];
  train["steps"] = r.train.steps;
  train["batch_size"] = r.train.batch_size;
  train["seed"] = r.train.seed;
  train["checkpoint_every"] = r.train.checkpoint_every;
  train["eval_every"] = r.train.eval_every;
  train["log_every"] = r.train.log_every;
  train["eval_batches"] = r.train.eval_batches;
  train["threads"] = r.train.threads;
  train["device"] = r.train.device;
  train["background_batches"] = r.train.background_batches;
  train["shard_base_banks"] = r.train.shard_base_banks;
  return n;
}

void save_resolved_recipe(const Recipe& recipe, const std::string& path) {
  YAML::Emitter out;
  out << recipe_to_yaml(recipe);
  KVT_CHECK(out.good(), "cannot write recipe ", recipe.name, " as YAML: ", out.GetLastError());
  write_file_atomic(path, std::string("# Resolved recipe '") + recipe.name +
                              "' (defaults, recipe file, --set overrides), written by kvtune.\n"
                              "# Reproduce the run with it as the recipe.\n" +
                              out.c_str() + "\n");
}

const std::vector<std::string>& recipe_modes() {
  static const std::vector<std::string> names = {"pretrain", "finetune"};
  return names;
}

const std::vector<std::string>& recipe_methods() {
  return method_names();
}

const std::vector<std::string>& backward_modes() {
  return attention_backward_names();
}

}  // namespace kvtune
