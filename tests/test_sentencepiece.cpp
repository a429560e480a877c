// The SentencePiece tokenizer (model/sentencepiece_tokenizer.h): exact round trips of every
// corpus and of arbitrary bytes, determinism, its files in a model folder (a missing or damaged
// tokenizer.model is refused naming the file), the model-config key, and a pretraining run that
// trains and saves it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <yaml-cpp/yaml.h>
#include <zlib.h>

#include <nlohmann/json.hpp>

#include "bank_test_util.h"
#include "common/check.h"
#include "data/corpus.h"
#include "data/text_data.h"
#include "model/model_config_yaml.h"
#include "model/model_io.h"
#include "model/sentencepiece_tokenizer.h"
#include "model/tokenizer.h"
#include "test_util.h"
#include "train/trainer.h"
#include "trainer_test_util.h"

#ifdef KVTUNE_WITH_SENTENCEPIECE

namespace kvtune {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::vector<std::string> corpus_texts(const std::string& name, int64_t max_entries) {
  std::vector<std::string> texts;
  for (const auto& e : load_corpus(name, max_entries)) texts.push_back(document_text(e));
  return texts;
}

class SentencePieceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::missing_dictd({"wn"}).empty()) return;
    SentencePieceTrainOptions options;
    options.vocab_size = 1024;
    tok_ = new SentencePieceTokenizer(
        SentencePieceTokenizer::train(corpus_texts("wn", 3000), options));
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    KVTUNE_REQUIRE_DICTD("wn");
    ASSERT_NE(tok_, nullptr);
  }
  static SentencePieceTokenizer* tok_;
};
SentencePieceTokenizer* SentencePieceTest::tok_ = nullptr;

TEST_F(SentencePieceTest, SpecialsAndSizes) {
  EXPECT_EQ(tok_->type(), "sentencepiece");
  EXPECT_EQ(tok_->vocab_size(), 1024);
  const auto ids = tok_->encode("a house", /*add_bos=*/true, /*add_eos=*/true);
  EXPECT_EQ(ids.front(), SentencePieceTokenizer::kBos);
  EXPECT_EQ(ids.back(), SentencePieceTokenizer::kEos);
  EXPECT_EQ(tok_->decode(ids), "a house");
  // Specials decode to nothing, wherever they are.
  EXPECT_EQ(tok_->decode({SentencePieceTokenizer::kPad, SentencePieceTokenizer::kUnk}), "");
  EXPECT_THAT(error_of([&] { tok_->decode({1024}); }), HasSubstr("outside the vocabulary"));
  EXPECT_THAT(error_of([&] { tok_->decode({-1}); }), HasSubstr("outside the vocabulary"));
}

// Every corpus the project reads, whole: decode(encode(text)) == text, and the pieces are
// subwords (fewer tokens than bytes) on text the tokenizer was not trained on.
TEST_F(SentencePieceTest, RoundTripsEveryCorpus) {
  for (const auto& c : dictd_corpora()) {
    if (!test::missing_dictd({c.name}).empty()) {
      if (c.in_setup) KVTUNE_REQUIRE_DICTD(c.name);
      continue;
    }
    int64_t bytes = 0, tokens = 0, entries = 0;
    for (const auto& text : corpus_texts(c.name, 0)) {
      const auto ids = tok_->encode(text, false, false);
      ASSERT_EQ(tok_->decode(ids), text) << c.name << " entry " << entries;
      bytes += static_cast<int64_t>(text.size());
      tokens += static_cast<int64_t>(ids.size());
      ++entries;
    }
    ASSERT_GT(entries, 0) << c.name;
    // English and code text: a 1024-piece model trained on 3000 wn entries gives well under
    // one token per byte (about 0.45 on wn); bytes alone would be 1.
    if (std::string(c.name) != "elements") EXPECT_LT(tokens, 0.75 * bytes) << c.name;
  }
  const auto facts = corpus_texts("elements-facts", 0);
  for (const auto& text : facts) ASSERT_EQ(tok_->decode(tok_->encode(text, true, true)), text);
}

// Arbitrary bytes: invalid UTF-8 (stray continuation bytes, overlong forms, surrogates, truncated
// sequences), NUL, control characters and SentencePiece's own space marker U+2581.
TEST_F(SentencePieceTest, RoundTripsArbitraryBytes) {
  const std::vector<std::string> cases = {"",
                                          " ",
                                          "  two  spaces  ",
                                          "\n\r\t\v\f",
                                          std::string("nul\0inside", 10),
                                          "\xE2\x96\x81",
                                          "a\xE2\x96\x81"
                                          "b \xE2\x96\x81\xE2\x96\x81",
                                          "\x80",
                                          "\xC0\xAF",
                                          "\xED\xA0\x80",
                                          "\xF4\x90\x80\x80",
                                          "\xE2\x96",
                                          "caf\xC3\xA9 caf\xE9",
                                          "\xFF\xFE\xFD",
                                          "日本語 🙂 naïve",
                                          "55.845 Fe"};
  for (const auto& text : cases) {
    EXPECT_EQ(tok_->decode(tok_->encode(text, true, true)), text) << testing::PrintToString(text);
  }
  // An invalid byte is one byte piece, which decodes to itself.
  const auto ids = tok_->encode("\xFF", false, false);
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(tok_->decode(ids), "\xFF");
  std::mt19937_64 rng(test::test_seed());
  const std::string alphabet = "ab \xE2\x96\x81\xC3\xA9\x80\xFF\n\0z";
  for (int trial = 0; trial < 3000; ++trial) {
    std::string text;
    const int n = static_cast<int>(rng() % 40);
    for (int k = 0; k < n; ++k) {
      // Half the bytes from a small alphabet that makes markers and broken sequences likely.
      text.push_back(rng() % 2 ? alphabet[rng() % (alphabet.size() + 1)]
                               : static_cast<char>(rng() % 256));
    }
    ASSERT_EQ(tok_->decode(tok_->encode(text, false, false)), text) << testing::PrintToString(text);
  }
}

TEST_F(SentencePieceTest, TrainingAndEncodingAreDeterministic) {
  SentencePieceTrainOptions options;
  options.vocab_size = 1024;
  const auto again = SentencePieceTokenizer::train(corpus_texts("wn", 3000), options);
  EXPECT_EQ(again.model_proto(), tok_->model_proto()) << "same text, same model";
  const std::string text = "The German word for house is Haus.";
  EXPECT_EQ(tok_->encode(text, true, true), tok_->encode(text, true, true));
  EXPECT_EQ(again.encode(text, true, true), tok_->encode(text, true, true));
}

TEST_F(SentencePieceTest, SaveLoadAndDamagedFilesAreRefused) {
  test::TempDir dir;
  const std::string json = dir.file("tokenizer.json");
  const std::string model = dir.file("tokenizer.model");
  tok_->save(json);
  ASSERT_TRUE(fs::is_regular_file(model));
  const auto loaded = load_tokenizer(json);
  EXPECT_EQ(loaded->type(), "sentencepiece");
  const std::string text = "house: a dwelling \xFF";
  EXPECT_EQ(loaded->encode(text, true, true), tok_->encode(text, true, true));

  const std::string good = test::read_bytes(model);
  // Missing.
  fs::remove(model);
  EXPECT_THAT(error_of([&] { load_tokenizer(json); }),
              AllOf(HasSubstr(model), HasSubstr("does not exist")));
  // Truncated.
  test::write_bytes(model, good.substr(0, good.size() / 2));
  EXPECT_THAT(error_of([&] { load_tokenizer(json); }),
              AllOf(HasSubstr(model), HasSubstr("bytes but")));
  // One byte changed: the CRC.
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x40;
  test::write_bytes(model, flipped);
  EXPECT_THAT(error_of([&] { load_tokenizer(json); }),
              AllOf(HasSubstr(model), HasSubstr("CRC-32")));
  // Garbage with a matching record (a hand-edited folder): the library's refusal, as a kvtune
  // error naming the file.
  const std::string garbage(good.size(), '\x07');
  test::write_bytes(model, garbage);
  auto j = nlohmann::json::parse(test::read_bytes(json));
  uLong crc = ::crc32(::crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(garbage.data()),
                      static_cast<uInt>(garbage.size()));
  char hex[9];
  std::snprintf(hex, sizeof(hex), "%08lx", static_cast<unsigned long>(crc));
  j["model_crc32"] = hex;
  test::write_bytes(json, j.dump());
  EXPECT_THAT(error_of([&] { load_tokenizer(json); }),
              AllOf(HasSubstr(model), HasSubstr("not a SentencePiece model")));
  // tokenizer.json's own fields.
  test::write_bytes(model, good);
  tok_->save(json);
  j = nlohmann::json::parse(test::read_bytes(json));
  j["model_file"] = "../elsewhere.model";
  test::write_bytes(json, j.dump());
  EXPECT_THAT(error_of([&] { load_tokenizer(json); }), HasSubstr("a file name in the same folder"));
  j["model_file"] = "tokenizer.model";
  j["vocab_size"] = 2048;
  test::write_bytes(json, j.dump());
  EXPECT_THAT(error_of([&] { load_tokenizer(json); }), HasSubstr("records vocab_size 2048"));
  j["vocab_size"] = 1024;
  j["extra"] = 1;
  test::write_bytes(json, j.dump());
  EXPECT_THAT(error_of([&] { load_tokenizer(json); }), HasSubstr("unknown key 'extra'"));
}

TEST(SentencePieceConfig, TokenizerKeyIsCheckedAndWrittenOnlyWhenNotByte) {
  const auto load = [](const std::string& text) {
    return model_config_from_yaml(YAML::Load(text), "m.yaml");
  };
  const ModelConfig byte = load("vocab_size: 259\n");
  EXPECT_EQ(byte.tokenizer, "byte");
  // The default stays out of the YAML, so byte models keep their fingerprint.
  EXPECT_THAT(to_yaml_string(byte), testing::Not(HasSubstr("tokenizer")));
  const ModelConfig sp = load("tokenizer: sentencepiece\nvocab_size: 2048\n");
  EXPECT_THAT(to_yaml_string(sp), HasSubstr("tokenizer: sentencepiece"));
  EXPECT_EQ(load(to_yaml_string(sp)).tokenizer, "sentencepiece");
  EXPECT_THAT(error_of([&] { load("tokenizer: bpe\n"); }),
              AllOf(HasSubstr("key 'tokenizer' is 'bpe'"), HasSubstr("byte, sentencepiece")));
  EXPECT_THAT(error_of([&] { load("tokenizer: sentencepiece\nvocab_size: 259\n"); }),
              AllOf(HasSubstr("vocab_size"), HasSubstr("320")));
  EXPECT_THAT(error_of([&] { load("tokenizer: sentencepiece\nvocab_size: 100000000\n"); }),
              HasSubstr("262144"));
}

// Pretraining with `tokenizer: sentencepiece` trains the tokenizer on the general corpus, saves
// it in the model folder, and the folder loads with it; without tokenizer.model it is refused.
TEST(SentencePiecePretrain, TrainsSavesAndLoadsTheTokenizer) {
  KVTUNE_REQUIRE_DICTD("wn");
  test::TempDir dir;
  auto r = test::micro_recipe("pretrain");
  r.model_config.tokenizer = "sentencepiece";
  r.model_config.vocab_size = 512;
  r.data.max_entries = 1500;
  pretrain(r, dir.file("base"), /*resume=*/false);
  const std::string model_dir = dir.file("base") + "/model";
  ASSERT_TRUE(fs::is_regular_file(model_dir + "/tokenizer.model"));
  auto loaded = load_model(model_dir);
  EXPECT_EQ(loaded.tokenizer->type(), "sentencepiece");
  EXPECT_EQ(loaded.config.tokenizer, "sentencepiece");
  EXPECT_LE(loaded.tokenizer->vocab_size(), 512);
  const std::string text = "house: a dwelling that serves as living quarters";
  EXPECT_EQ(loaded.tokenizer->decode(loaded.tokenizer->encode(text, true, true)), text);
  EXPECT_LT(loaded.tokenizer->encode(text, false, false).size(), text.size());
  // The same recipe trains the same tokenizer (a resumed pretraining retrains it).
  const auto texts = [&] {
    std::vector<std::string> out;
    for (const auto& e : split_corpora(r.data.general, r.data).train)
      out.push_back(document_text(e));
    return out;
  }();
  const auto again = make_tokenizer("sentencepiece", 512, [&] { return texts; });
  EXPECT_EQ(again->encode(text, true, true), loaded.tokenizer->encode(text, true, true));
  fs::remove(model_dir + "/tokenizer.model");
  EXPECT_THAT(error_of([&] { load_model(model_dir); }),
              AllOf(HasSubstr("tokenizer.model"), HasSubstr("does not exist")));
}

}  // namespace
}  // namespace kvtune

#else  // !KVTUNE_WITH_SENTENCEPIECE

namespace kvtune {
namespace {

// Built without the library (a sanitizer build, or no libsentencepiece-dev): the config is
// accepted, and making or reading the tokenizer says what is missing.
TEST(SentencePieceMissing, RefusedWithAMessage) {
  const auto texts = [] { return std::vector<std::string>{"some text"}; };
  EXPECT_THAT(test::error_of([&] { make_tokenizer("sentencepiece", 1024, texts); }),
              ::testing::HasSubstr("built without SentencePiece"));
}

}  // namespace
}  // namespace kvtune

#endif  // KVTUNE_WITH_SENTENCEPIECE
