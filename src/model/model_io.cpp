#include "model/model_io.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "bank/bank_io.h"
#include "bank/indexed_bank.h"
#include "common/atomic_file.h"
#include "common/check.h"
#include "common/crc32.h"
#include "common/path_checks.h"
#include "common/yaml_reader.h"
#include "model/lora.h"
#include "model/model_config_yaml.h"
#include "model/module_state.h"

namespace kvtune {

namespace fs = std::filesystem;

namespace {

std::string in_dir(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

class Fnv1a64 {
 public:
  void add(const void* data, size_t n) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
      hash_ ^= bytes[i];
      hash_ *= 0x100000001b3ULL;
    }
  }
  uint64_t state() const { return hash_; }
  void set_state(uint64_t state) { hash_ = state; }
  std::string hex() const {
    char out[17];
    std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(hash_));
    return out;
  }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ULL;
};

// CRC-32 (zlib) and size of a file, read in 1 MiB pieces.
struct FileSum {
  uint64_t bytes = 0;
  std::string crc32;
};

FileSum file_sum(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  KVT_CHECK(in.good(), "cannot read ", path, " to check it");
  Crc32 crc;
  FileSum sum;
  std::string buf(1 << 20, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = static_cast<size_t>(in.gcount());
    if (got == 0) break;
    crc.update(buf.data(), got);
    sum.bytes += got;
  }
  sum.crc32 = crc.hex();
  return sum;
}

// The files of a model folder whose checksums are kept: the weights (the banks carry their own
// checks, and `remember` may rewrite them).
const char* const kSummedFiles[] = {kModelWeightsFile};

void write_checksums(const std::string& dir) {
  nlohmann::json files = nlohmann::json::object();
  for (const char* name : kSummedFiles) {
    const FileSum sum = file_sum(in_dir(dir, name));
    files[name] = {{"bytes", sum.bytes}, {"crc32", sum.crc32}};
  }
  const nlohmann::json j = {{"format_version", 1}, {"files", files}};
  write_file_atomic(in_dir(dir, kModelChecksumsFile), j.dump(2) + "\n");
}

// Folders written before checksums were kept have no checksums.json: they are read unchecked
// (load_module_state still refuses non-finite weights).
void verify_checksums(const std::string& dir) {
  const std::string path = in_dir(dir, kModelChecksumsFile);
  if (!path_exists(path)) return;
  nlohmann::json j;
  try {
    std::ifstream in(path);
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    KVT_THROW(path, " is not valid JSON (", e.what(), "): the model folder is damaged; save the ",
              "model again, or delete the file to load it unchecked");
  }
  KVT_CHECK(j.is_object() && j.value("format_version", 0) == 1 && j.contains("files") &&
                j["files"].is_object(),
            path, ": not a kvtune checksums file of format version 1");
  for (const auto& [name, entry] : j["files"].items()) {
    KVT_CHECK(name.find('/') == std::string::npos && name != ".." && entry.is_object() &&
                  entry.contains("bytes") && entry["bytes"].is_number_unsigned() &&
                  entry.contains("crc32") && entry["crc32"].is_string(),
              path, ": entry '", name, "' is malformed (expected {\"bytes\": N, \"crc32\": hex})");
    const std::string file = in_dir(dir, name);
    KVT_CHECK(is_file(file), dir, " has no ", name, " but ", kModelChecksumsFile,
              " lists it: the model folder is incomplete");
    const FileSum sum = file_sum(file);
    KVT_CHECK(sum.bytes == entry["bytes"].get<uint64_t>() &&
                  sum.crc32 == entry["crc32"].get<std::string>(),
              file, " does not match its checksum (", sum.bytes, " bytes, crc32 ", sum.crc32,
              "; saved: ", entry["bytes"].get<uint64_t>(), " bytes, crc32 ",
              entry["crc32"].get<std::string>(),
              "): the file was damaged or changed after it was saved; restore it or train the "
              "model again");
  }
}

// `source` copied to `path` atomically: the frozen base bank that a rank holds one shard of.
void copy_file_atomic(const std::string& source, const std::string& path) {
  AtomicOutput out(path);
  std::error_code ec;
  fs::copy_file(source, out.temp_path(), fs::copy_options::overwrite_existing, ec);
  KVT_CHECK(!ec, "cannot copy ", source, " to ", path, ": ", ec.message());
  out.commit();
}

// FNV-1a over the config's YAML text and, in order, each base bank's key shape and bytes
// (model_fingerprint). A bank split across the ranks of its sharding's communicator (`shards[i]`
// not null) is hashed as the whole bank: its whole shape, then each rank's rows in rank order,
// each rank handing the hash state on (one broadcast of 8 bytes per rank). A collective then.
std::string fingerprint_of(const ModelConfig& config, const std::vector<torch::Tensor>& keys,
                           const std::vector<const BankSharding*>& shards) {
  Fnv1a64 hash;
  const std::string yaml = to_yaml_string(config);
  hash.add(yaml.data(), yaml.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    KVT_CHECK(keys[i].defined(), "model_fingerprint: a base bank has no keys");
    const auto cpu = keys[i].detach().to(torch::kCPU).contiguous();
    const BankSharding* shard = i < shards.size() ? shards[i] : nullptr;
    std::vector<int64_t> shape = cpu.sizes().vec();
    if (shard) shape[0] = shard->total_rows;
    for (const int64_t s : shape) hash.add(&s, sizeof(s));
    if (!shard) {
      hash.add(cpu.data_ptr(), cpu.nbytes());
      continue;
    }
    Communicator& comm = *shard->comm;
    for (int r = 0; r < comm.size(); ++r) {
      if (r == comm.rank()) hash.add(cpu.data_ptr(), cpu.nbytes());
      auto state = torch::tensor({static_cast<int64_t>(hash.state())}, torch::kInt64);
      comm.broadcast(state, r, "setup");
      hash.set_state(static_cast<uint64_t>(state.item<int64_t>()));
    }
  }
  return hash.hex();
}

// The first bank of each memory layer: its keys, and its sharding (null: whole).
std::vector<torch::Tensor> base_bank_keys(const TransformerLM& model,
                                          std::vector<const BankSharding*>* shards) {
  std::vector<torch::Tensor> keys;
  const auto layers = model->memory_layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    KVT_CHECK(!layers[i]->banks().empty(), "model_fingerprint: memory layer ", i,
              " has no base bank attached");
    keys.push_back(layers[i]->banks().front()->bank().keys);
    if (shards) shards->push_back(layers[i]->sharding());
  }
  return keys;
}

}  // namespace

std::string base_bank_file(int64_t memory_layer) {
  return "bank_" + std::to_string(memory_layer) + ".h5";
}

void save_model(const std::string& dir, const TransformerLM& model, const ModelConfig& config,
                const Tokenizer& tokenizer) {
  KVT_CHECK(!model.is_empty(), "save_model: the model is empty");
  KVT_CHECK(to_yaml_string(model->config()) == to_yaml_string(config),
            "save_model: the config "
            "given for ",
            dir, " differs from the model's own config: pass model->config()");
  KVT_CHECK(!has_lora(model), "save_model: the model has LoRA adapters: call merge_lora() first");
  KVT_CHECK(tokenizer.vocab_size() <= config.vocab_size, "save_model: the tokenizer has ",
            tokenizer.vocab_size(), " tokens but the model's vocab_size is ", config.vocab_size);
  const auto layers = model->memory_layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    KVT_CHECK(!layers[i]->banks().empty(), "save_model: memory layer ", i,
              " has no bank: attach its base bank (attach_base_banks) before saving");
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  KVT_CHECK(is_folder(dir), "save_model: cannot create folder ", dir, ": ", ec.message());

  write_file_atomic(in_dir(dir, kModelConfigFile),
                    "# kvtune model config (written by save_model)\n" + to_yaml_string(config));
  tokenizer.save(in_dir(dir, kTokenizerFile));
  save_module_state(*model, in_dir(dir, kModelWeightsFile));
  write_checksums(dir);
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string path = in_dir(dir, base_bank_file(static_cast<int64_t>(i)));
    if (const auto* sharding = layers[i]->sharding()) {
      // This process holds one shard of a frozen bank: the bank is the file it came from, copied
      // with its index (the index first: the bank file names it).
      const std::string index = index_path_for(sharding->source);
      if (is_file(index)) copy_file_atomic(index, index_path_for(path));
      copy_file_atomic(sharding->source, path);
      continue;
    }
    layers[i]->banks().front()->save(path);
  }
}

LoadedModel load_model(const std::string& dir) {
  return load_model(dir, nullptr);
}

LoadedModel load_model(const std::string& dir, Communicator* shard_over) {
  KVT_CHECK(is_folder(dir), "model folder ", dir,
            " does not exist (a model folder is written by save_model)");
  for (const char* name : {kModelConfigFile, kTokenizerFile, kModelWeightsFile}) {
    KVT_CHECK(is_file(in_dir(dir, name)), "model folder ", dir, " has no ", name,
              ": it is incomplete or not a model folder");
  }
  LoadedModel loaded;
  const std::string config_path = in_dir(dir, kModelConfigFile);
  loaded.config = model_config_from_yaml(load_yaml_file(config_path), config_path);
  loaded.tokenizer = load_tokenizer(in_dir(dir, kTokenizerFile));
  KVT_CHECK(loaded.tokenizer->vocab_size() <= loaded.config.vocab_size, dir, ": the tokenizer has ",
            loaded.tokenizer->vocab_size(), " tokens but config.yaml has vocab_size ",
            loaded.config.vocab_size);
  verify_checksums(dir);
  loaded.model = TransformerLM(loaded.config);
  load_module_state(*loaded.model, in_dir(dir, kModelWeightsFile));

  auto layers = loaded.model->memory_layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string path = in_dir(dir, base_bank_file(static_cast<int64_t>(i)));
    KVT_CHECK(is_file(path), "model folder ", dir, " has no ",
              base_bank_file(static_cast<int64_t>(i)), ": memory layer ", i,
              " needs its base bank");
    std::shared_ptr<IndexedBank> bank;
    BankShare share;
    if (shard_over) {
      // This rank's rows, and an index over them built here (the saved one covers every row).
      share = read_bank_share(path, shard_over->rank(), shard_over->size());
      bank = std::make_shared<IndexedBank>(std::move(share.bank), loaded.config.memory.index);
      bank->set_trainable(false);
    } else {
      bank = IndexedBank::load(path, loaded.config.memory.index);
    }
    const auto& meta = bank->bank().meta;
    const auto& opts = layers[i]->options();
    KVT_CHECK(meta.key_dim == opts.key_dim && meta.value_dim == opts.value_dim, path,
              ": bank has key_dim ", meta.key_dim, " and value_dim ", meta.value_dim,
              " but memory layer ", i, " expects key_dim ", opts.key_dim, " and value_dim ",
              opts.value_dim, " (config.yaml memory.key_dim / memory.value_dim)");
    layers[i]->attach(std::move(bank));
    if (shard_over) {
      layers[i]->set_sharding(
          BankSharding{shard_over, share.begin, share.total_rows, fs::absolute(path).string(), ""});
    }
  }
  if (shard_over) {
    // Worked out once, by every rank together: later calls may come from rank 0 alone.
    std::vector<const BankSharding*> shards;
    const auto keys = base_bank_keys(loaded.model, &shards);
    const std::string fingerprint = fingerprint_of(loaded.model->config(), keys, shards);
    for (auto& layer : layers) layer->mutable_sharding()->fingerprint = fingerprint;
  }
  return loaded;
}

std::string model_fingerprint(const ModelConfig& config,
                              const std::vector<torch::Tensor>& base_bank_keys) {
  return fingerprint_of(config, base_bank_keys, {});
}

std::string model_fingerprint(const TransformerLM& model) {
  const auto layers = model->memory_layers();
  // A sharded base bank is saved as the file it was read from (method sparse ships its changes
  // as patches): its fingerprint is the one load_model worked out.
  if (!layers.empty() && layers.front()->sharding()) return layers.front()->sharding()->fingerprint;
  return fingerprint_of(model->config(), base_bank_keys(model, nullptr), {});
}

}  // namespace kvtune
