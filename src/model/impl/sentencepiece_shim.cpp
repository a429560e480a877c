// The SentencePiece library behind a C interface, built as its own shared module
// (kvtune_sentencepiece) that kvtune loads with dlopen(RTLD_LOCAL | RTLD_DEEPBIND)
// (model/sentencepiece_tokenizer.cpp). Debian's libsentencepiece carries its own copy of
// protobuf-lite 3.14 with exported symbols; linked into a process that also has libtorch's
// libprotobuf 3.21, the two copies' symbols interpose and the process crashes at load time.
// Loaded this way, the library and its protobuf resolve their own symbols first and nothing else
// sees them. Only plain C types cross this boundary.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

char* copy_out(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.data(), s.size());
    out[s.size()] = '\0';
  }
  return out;
}

class Lines : public sentencepiece::SentenceIterator {
 public:
  explicit Lines(std::vector<std::string> lines) : lines_(std::move(lines)) {}
  bool done() const override { return i_ >= lines_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return lines_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  std::vector<std::string> lines_;
  size_t i_ = 0;
};

}  // namespace

extern "C" {

// Frees what the functions below hand out (model bytes, id arrays, error messages).
void kvt_sp_free(void* p) {
  std::free(p);
}

// Trains on `n_lines` lines with `n_args` "key=value" trainer options; on success the serialized
// model is in *proto (kvt_sp_free it). Returns 0, or 1 with *error set.
int kvt_sp_train(const char* const* lines, const size_t* lens, size_t n_lines,
                 const char* const* args, size_t n_args, char** proto, size_t* proto_len,
                 char** error) {
  try {
    std::vector<std::string> text;
    text.reserve(n_lines);
    for (size_t i = 0; i < n_lines; ++i) text.emplace_back(lines[i], lens[i]);
    std::unordered_map<std::string, std::string> kwargs;
    for (size_t i = 0; i < n_args; ++i) {
      const std::string a = args[i];
      const auto eq = a.find('=');
      kwargs[a.substr(0, eq)] = eq == std::string::npos ? "" : a.substr(eq + 1);
    }
    Lines it(std::move(text));
    std::string out;
    const auto status = sentencepiece::SentencePieceTrainer::Train(kwargs, &it, &out);
    if (!status.ok()) {
      *error = copy_out(status.ToString());
      return 1;
    }
    *proto = copy_out(out);
    *proto_len = out.size();
    return 0;
  } catch (const std::exception& e) {
    *error = copy_out(e.what());
    return 1;
  }
}

// A model from its serialized bytes, or null with *error set. kvt_sp_unload frees it.
void* kvt_sp_load(const char* proto, size_t len, char** error) {
  try {
    auto* sp = new sentencepiece::SentencePieceProcessor();
    const auto status = sp->LoadFromSerializedProto(absl::string_view(proto, len));
    if (!status.ok()) {
      delete sp;
      *error = copy_out(status.ToString());
      return nullptr;
    }
    return sp;
  } catch (const std::exception& e) {
    *error = copy_out(e.what());
    return nullptr;
  }
}

void kvt_sp_unload(void* model) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(model);
}

int kvt_sp_size(const void* model) {
  return static_cast<const sentencepiece::SentencePieceProcessor*>(model)->GetPieceSize();
}

// Piece `id`'s text (valid until the model is unloaded) and its kind: 0 a normal piece,
// 1 unknown, 2 control, 3 byte, 4 another (unused or user-defined).
int kvt_sp_piece(const void* model, int id, const char** piece, size_t* len) {
  const auto* sp = static_cast<const sentencepiece::SentencePieceProcessor*>(model);
  const std::string& p = sp->IdToPiece(id);
  *piece = p.data();
  *len = p.size();
  if (sp->IsUnknown(id)) return 1;
  if (sp->IsControl(id)) return 2;
  if (sp->IsByte(id)) return 3;
  if (sp->IsUnused(id)) return 4;
  return 0;
}

// 0 unk, 1 bos, 2 eos, 3 pad: the model's id for it (-1 if none).
int kvt_sp_special(const void* model, int which) {
  const auto* sp = static_cast<const sentencepiece::SentencePieceProcessor*>(model);
  switch (which) {
    case 0:
      return sp->unk_id();
    case 1:
      return sp->bos_id();
    case 2:
      return sp->eos_id();
    case 3:
      return sp->pad_id();
    default:
      return -1;
  }
}

// The ids of `text` (valid UTF-8) in *ids (kvt_sp_free it). Returns 0, or 1 with *error set.
int kvt_sp_encode(const void* model, const char* text, size_t len, int** ids, size_t* n,
                  char** error) {
  try {
    std::vector<int> out;
    const auto status = static_cast<const sentencepiece::SentencePieceProcessor*>(model)->Encode(
        absl::string_view(text, len), &out);
    if (!status.ok()) {
      *error = copy_out(status.ToString());
      return 1;
    }
    *ids = static_cast<int*>(std::malloc(sizeof(int) * (out.size() + 1)));
    if (!out.empty()) std::memcpy(*ids, out.data(), sizeof(int) * out.size());
    *n = out.size();
    return 0;
  } catch (const std::exception& e) {
    *error = copy_out(e.what());
    return 1;
  }
}

}  // extern "C"
