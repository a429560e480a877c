#include "model/sentencepiece_tokenizer.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/check.h"
#include "common/crc32.h"
#include "common/path_checks.h"
#include "model/impl/json_file.h"

#ifdef KVTUNE_WITH_SENTENCEPIECE
#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#endif

namespace kvtune {
namespace fs = std::filesystem;

namespace {

constexpr const char* kWithout =
    "this kvtune was built without SentencePiece (libsentencepiece-dev): install it and "
    "rebuild, or use tokenizer: byte";

#ifdef KVTUNE_WITH_SENTENCEPIECE
// Length of the valid UTF-8 sequence at text[i] (1..4), or 0 when the byte there does not start
// one (stray continuation byte, overlong form, surrogate, past U+10FFFF, truncated).
size_t utf8_length(const std::string& text, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(text[i + k]); };
  const size_t left = text.size() - i;
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  const auto cont = [&](size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

// U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's space marker.
bool is_space_marker(const std::string& text, size_t i) {
  return text.compare(i, 3, "\xE2\x96\x81") == 0;
}
#endif  // KVTUNE_WITH_SENTENCEPIECE

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(SentencePieceTokenizer&&) noexcept = default;
SentencePieceTokenizer& SentencePieceTokenizer::operator=(SentencePieceTokenizer&&) noexcept =
    default;
SentencePieceTokenizer::~SentencePieceTokenizer() = default;

#ifdef KVTUNE_WITH_SENTENCEPIECE

namespace {

// The C interface of kvtune_sentencepiece (model/impl/sentencepiece_shim.cpp).
struct ShimApi {
  void (*free)(void*) = nullptr;
  int (*train)(const char* const*, const size_t*, size_t, const char* const*, size_t, char**,
               size_t*, char**) = nullptr;
  void* (*load)(const char*, size_t, char**) = nullptr;
  void (*unload)(void*) = nullptr;
  int (*size)(const void*) = nullptr;
  int (*piece)(const void*, int, const char**, size_t*) = nullptr;
  int (*special)(const void*, int) = nullptr;
  int (*encode)(const void*, const char*, size_t, int**, size_t*, char**) = nullptr;
};

// Loads the module once: $KVTUNE_SENTENCEPIECE_MODULE, else the path this build put it at.
// RTLD_DEEPBIND makes the library and its bundled protobuf resolve their own symbols first;
// RTLD_LOCAL keeps them from everyone else (libtorch's libprotobuf).
const ShimApi& shim() {
  static ShimApi api;
  static std::string failure;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("KVTUNE_SENTENCEPIECE_MODULE");
    const std::string path = env != nullptr && *env != '\0' ? env : KVTUNE_SENTENCEPIECE_SHIM;
    void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (h == nullptr) {
      const char* e = ::dlerror();
      failure = "cannot load the SentencePiece module " + path + " (" + (e ? e : "?") +
                "): rebuild kvtune (tools/build), or set KVTUNE_SENTENCEPIECE_MODULE to its "
                "libkvtune_sentencepiece.so";
      return;
    }
    const auto sym = [&](const char* name) {
      void* f = ::dlsym(h, name);
      if (f == nullptr && failure.empty()) failure = path + " has no symbol " + name;
      return f;
    };
    api.free = reinterpret_cast<decltype(api.free)>(sym("kvt_sp_free"));
    api.train = reinterpret_cast<decltype(api.train)>(sym("kvt_sp_train"));
    api.load = reinterpret_cast<decltype(api.load)>(sym("kvt_sp_load"));
    api.unload = reinterpret_cast<decltype(api.unload)>(sym("kvt_sp_unload"));
    api.size = reinterpret_cast<decltype(api.size)>(sym("kvt_sp_size"));
    api.piece = reinterpret_cast<decltype(api.piece)>(sym("kvt_sp_piece"));
    api.special = reinterpret_cast<decltype(api.special)>(sym("kvt_sp_special"));
    api.encode = reinterpret_cast<decltype(api.encode)>(sym("kvt_sp_encode"));
  });
  KVT_CHECK(failure.empty(), "SentencePiece tokenizer: ", failure);
  return api;
}

// A message the module allocated, freed.
std::string take_error(const ShimApi& api, char* error) {
  std::string s = error != nullptr ? error : "unknown error";
  if (error != nullptr) api.free(error);
  return s;
}

// The non-empty lines of `texts`, at most `max_lines` of them, evenly spaced by position.
std::vector<std::string> training_lines(const std::vector<std::string>& texts, int64_t max_lines) {
  std::vector<std::string> all;
  for (const auto& text : texts) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) all.push_back(std::move(line));
    }
  }
  if (static_cast<int64_t>(all.size()) <= max_lines) return all;
  std::vector<std::string> picked;
  picked.reserve(static_cast<size_t>(max_lines));
  for (int64_t k = 0; k < max_lines; ++k) {
    picked.push_back(
        std::move(all[static_cast<size_t>(static_cast<double>(k) * static_cast<double>(all.size()) /
                                          static_cast<double>(max_lines))]));
  }
  return picked;
}

}  // namespace

SentencePieceTokenizer SentencePieceTokenizer::train(const std::vector<std::string>& texts,
                                                     const SentencePieceTrainOptions& options) {
  KVT_CHECK(options.vocab_size >= kMinVocabSize, "SentencePiece tokenizer: vocab_size ",
            options.vocab_size, " is below the minimum ", kMinVocabSize,
            " (4 specials + 256 byte pieces + room for subwords)");
  KVT_CHECK(options.max_lines > 0, "SentencePiece tokenizer: max_lines must be positive");
  const std::vector<std::string> lines = training_lines(texts, options.max_lines);
  KVT_CHECK(!lines.empty(), "SentencePiece tokenizer: no text to train on (the corpora are empty)");
  // Identity normalization and no whitespace rewriting keep every piece a substring of the text
  // (the round trip above); one thread keeps the result identical from run to run.
  const std::vector<std::string> args = {"model_type=unigram",
                                         "vocab_size=" + std::to_string(options.vocab_size),
                                         "byte_fallback=true",
                                         "normalization_rule_name=identity",
                                         "add_dummy_prefix=false",
                                         "remove_extra_whitespaces=false",
                                         "split_digits=true",
                                         "character_coverage=0.9995",
                                         "unk_id=" + std::to_string(kUnk),
                                         "bos_id=" + std::to_string(kBos),
                                         "eos_id=" + std::to_string(kEos),
                                         "pad_id=" + std::to_string(kPad),
                                         "num_threads=1",
                                         "shuffle_input_sentence=false",
                                         "input_sentence_size=" + std::to_string(options.max_lines),
                                         "max_sentence_length=65536",
                                         "hard_vocab_limit=false",
                                         "minloglevel=2"};
  std::vector<const char*> line_ptrs, arg_ptrs;
  std::vector<size_t> line_lens;
  for (const auto& l : lines) {
    line_ptrs.push_back(l.data());
    line_lens.push_back(l.size());
  }
  for (const auto& a : args) arg_ptrs.push_back(a.c_str());
  const ShimApi& api = shim();
  char* out = nullptr;
  size_t out_len = 0;
  char* error = nullptr;
  const int rc = api.train(line_ptrs.data(), line_lens.data(), line_ptrs.size(), arg_ptrs.data(),
                           arg_ptrs.size(), &out, &out_len, &error);
  KVT_CHECK(rc == 0, "SentencePiece tokenizer: training failed: ", take_error(api, error),
            " (more general text, or a smaller vocab_size, may fix it)");
  const std::string proto(out, out_len);
  api.free(out);
  return from_model_proto(proto, "the trained SentencePiece model");
}

void SentencePieceTokenizer::init(const std::string& where) {
  const ShimApi& api = shim();
  char* error = nullptr;
  void* model = api.load(proto_.data(), proto_.size(), &error);
  KVT_CHECK(model != nullptr, where, ": not a SentencePiece model the library can read (",
            take_error(api, error), ")");
  model_ = std::shared_ptr<void>(model, api.unload);
  vocab_size_ = api.size(model);
  KVT_CHECK(vocab_size_ >= kMinVocabSize, where, ": the SentencePiece model has ", vocab_size_,
            " pieces, fewer than the ", kMinVocabSize, " kvtune needs");
  const auto kind = [&](int64_t id) {
    const char* p = nullptr;
    size_t n = 0;
    return api.piece(model, static_cast<int>(id), &p, &n);
  };
  KVT_CHECK(kind(kUnk) == 1 && kind(kBos) == 2 && kind(kEos) == 2 && kind(kPad) == 2 &&
                api.special(model, 1) == kBos && api.special(model, 2) == kEos &&
                api.special(model, 3) == kPad,
            where, ": the SentencePiece model's special ids are not unk 0, bos 1, eos 2, pad 3 ",
            "(train it with kvtune)");
  pieces_.assign(static_cast<size_t>(vocab_size_), std::string());
  std::vector<bool> have_byte(256, false);
  for (int64_t id = 0; id < vocab_size_; ++id) {
    const char* p = nullptr;
    size_t n = 0;
    const int k = api.piece(model, static_cast<int>(id), &p, &n);
    if (k == 1 || k == 2) continue;  // unk and control pieces decode to nothing
    const std::string piece(p, n);
    if (k == 3) {
      unsigned value = 0;
      KVT_CHECK(
          piece.size() == 6 && std::sscanf(piece.c_str(), "<0x%2X>", &value) == 1 && value < 256,
          where, ": byte piece '", piece, "' (id ", id, ") is not of the form <0xNN>");
      byte_ids_[value] = id;
      have_byte[value] = true;
      pieces_[id] = std::string(1, static_cast<char>(value));
      continue;
    }
    std::string text;
    for (size_t j = 0; j < piece.size();) {
      if (is_space_marker(piece, j)) {
        text.push_back(' ');
        j += 3;
      } else {
        text.push_back(piece[j++]);
      }
    }
    pieces_[id] = std::move(text);
  }
  for (int b = 0; b < 256; ++b) {
    KVT_CHECK(have_byte[b], where, ": the SentencePiece model has no byte piece for byte ", b,
              " (it must be trained with byte_fallback, as kvtune does)");
  }
}

std::vector<int64_t> SentencePieceTokenizer::encode(const std::string& text, bool add_bos,
                                                    bool add_eos) const {
  const ShimApi& api = shim();
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 2 + 2);
  if (add_bos) ids.push_back(kBos);
  size_t run_start = 0;
  const auto flush = [&](size_t end) {
    if (end <= run_start) return;
    int* out = nullptr;
    size_t n = 0;
    char* error = nullptr;
    const int rc =
        api.encode(model_.get(), text.data() + run_start, end - run_start, &out, &n, &error);
    KVT_CHECK(rc == 0, "SentencePiece tokenizer: encoding failed: ", take_error(api, error));
    ids.insert(ids.end(), out, out + n);
    api.free(out);
  };
  size_t i = 0;
  while (i < text.size()) {
    const size_t n = utf8_length(text, i);
    if (n > 0 && !(n == 3 && is_space_marker(text, i))) {
      i += n;
      continue;
    }
    // Not for the library: these bytes go in as byte pieces.
    flush(i);
    const size_t bytes = n == 0 ? 1 : n;
    for (size_t k = 0; k < bytes; ++k) {
      ids.push_back(byte_ids_[static_cast<unsigned char>(text[i + k])]);
    }
    i += bytes;
    run_start = i;
  }
  flush(text.size());
  if (add_eos) ids.push_back(kEos);
  return ids;
}

SentencePieceTokenizer SentencePieceTokenizer::from_model_proto(const std::string& proto,
                                                                const std::string& where) {
  SentencePieceTokenizer t;
  t.proto_ = proto;
  t.init(where);
  return t;
}

#else  // !KVTUNE_WITH_SENTENCEPIECE

SentencePieceTokenizer SentencePieceTokenizer::train(const std::vector<std::string>&,
                                                     const SentencePieceTrainOptions&) {
  KVT_THROW("SentencePiece tokenizer: ", kWithout);
}
SentencePieceTokenizer SentencePieceTokenizer::from_model_proto(const std::string&,
                                                                const std::string& where) {
  KVT_THROW(where, ": ", kWithout);
}
std::vector<int64_t> SentencePieceTokenizer::encode(const std::string&, bool, bool) const {
  KVT_THROW("SentencePiece tokenizer: ", kWithout);
}

#endif  // KVTUNE_WITH_SENTENCEPIECE

std::string SentencePieceTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string text;
  text.reserve(ids.size() * 3);
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    KVT_CHECK(id >= 0 && id < vocab_size_, "SentencePiece tokenizer: id ", id, " at position ", i,
              " is outside the vocabulary [0, ", vocab_size_, ")");
    text += pieces_[static_cast<size_t>(id)];
  }
  return text;
}

void SentencePieceTokenizer::save(const std::string& path) const {
  const std::string model_path = (fs::path(path).parent_path() / kModelFile).string();
  // The model file first: a tokenizer.json never names a model file that is not complete.
  write_file_atomic(model_path, proto_);
  const nlohmann::ordered_json json = {{"type", type()},
                                       {"version", kFormatVersion},
                                       {"vocab_size", vocab_size_},
                                       {"model_file", kModelFile},
                                       {"model_bytes", proto_.size()},
                                       {"model_crc32", crc32_hex(proto_)}};
  write_file_atomic(path, json.dump(2) + "\n");
}

SentencePieceTokenizer SentencePieceTokenizer::load(const std::string& path) {
  const auto json = detail::read_json_object(path, "tokenizer file");
  detail::check_json_keys(
      json, {"type", "version", "vocab_size", "model_file", "model_bytes", "model_crc32"}, path);
  const int64_t version = detail::json_int(json, "version", path);
  KVT_CHECK(version == kFormatVersion, path, ": SentencePiece tokenizer version ", version,
            " is not supported (this build reads version ", kFormatVersion,
            "): use the kvtune version that wrote it");
  const int64_t vocab = detail::json_int(json, "vocab_size", path);
  const int64_t bytes = detail::json_int(json, "model_bytes", path);
  KVT_CHECK(json.contains("model_file") && json.at("model_file").is_string() &&
                json.contains("model_crc32") && json.at("model_crc32").is_string(),
            path, ": keys 'model_file' and 'model_crc32' must be strings");
  const std::string name = json.at("model_file").get<std::string>();
  KVT_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
            path, ": model_file '", name, "' must be a file name in the same folder");
  const std::string model_path = (fs::path(path).parent_path() / name).string();
  KVT_CHECK(is_file(model_path), path, " names the SentencePiece model ", model_path,
            ", which does not exist: the model folder is incomplete (copy it whole)");
  std::error_code ec;
  const auto size = fs::file_size(model_path, ec);
  KVT_CHECK(!ec && static_cast<int64_t>(size) == bytes, model_path, " is ",
            ec ? std::string("unreadable") : std::to_string(size) + " bytes", " but ", path,
            " records ", bytes, ": the file was damaged or replaced; restore the model folder");
  std::ifstream in(model_path, std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  const std::string proto = buf.str();
  const std::string crc = crc32_hex(proto);
  KVT_CHECK(in.good() || in.eof(), "cannot read ", model_path);
  KVT_CHECK(crc == json.at("model_crc32").get<std::string>(), model_path, " has CRC-32 ", crc,
            " but ", path, " records ", json.at("model_crc32").get<std::string>(),
            ": the file was damaged or replaced; restore the model folder");
  SentencePieceTokenizer t = from_model_proto(proto, model_path);
  KVT_CHECK(t.vocab_size() == vocab, model_path, " has ", t.vocab_size(), " pieces but ", path,
            " records vocab_size ", vocab);
  return t;
}

}  // namespace kvtune
