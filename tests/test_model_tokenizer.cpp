// The byte tokenizer: exact round trips on any bytes, and its tokenizer.json format.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "bank_test_util.h"
#include "common/crc32.h"
#include "model/byte_tokenizer.h"
#include "model/tokenizer.h"
#include "test_util.h"

namespace kvtune {
namespace {

using test::error_of;
using ::testing::HasSubstr;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST(ModelTokenizer, RoundTripsUtf8TextWithSpecials) {
  const ByteTokenizer tok;
  const std::string text =
      "naïve café — 日本語 🙂\n\ttabs, \"quotes\" and a NUL-free line";
  const auto ids = tok.encode(text, /*add_bos=*/true, /*add_eos=*/true);
  ASSERT_EQ(ids.size(), text.size() + 2);
  EXPECT_EQ(ids.front(), ByteTokenizer::kBos);
  EXPECT_EQ(ids.back(), ByteTokenizer::kEos);
  for (size_t i = 1; i + 1 < ids.size(); ++i) {
    EXPECT_EQ(ids[i], static_cast<unsigned char>(text[i - 1]));
  }
  EXPECT_EQ(tok.decode(ids), text);
  auto padded = ids;
  padded.insert(padded.begin() + 5, ByteTokenizer::kPad);
  padded.push_back(ByteTokenizer::kPad);
  EXPECT_EQ(tok.decode(padded), text) << "special tokens must be skipped";
  EXPECT_EQ(tok.encode(text, false, false).size(), text.size());
  EXPECT_EQ(tok.vocab_size(), 259);
}

TEST(ModelTokenizer, InvalidUtf8PassesThroughAsBytes) {
  const ByteTokenizer tok;
  const std::string bad = std::string("ab\xff\xfe") + "\xc3" + "z\x80";
  EXPECT_EQ(tok.decode(tok.encode(bad, true, false)), bad);
}

TEST(ModelTokenizer, DecodeRejectsIdsOutsideTheVocabulary) {
  const ByteTokenizer tok;
  EXPECT_THAT(error_of([&] { tok.decode({65, 259}); }), HasSubstr("id 259 at position 1"));
  EXPECT_THAT(error_of([&] { tok.decode({-1}); }), HasSubstr("outside the vocabulary"));
}

TEST(ModelTokenizer, TheByteTokenizerIsMadeWithoutReadingAnyText) {
  int calls = 0;
  const auto tok = make_tokenizer("byte", 259, [&] {
    ++calls;
    return std::vector<std::string>{"never read"};
  });
  EXPECT_EQ(tok->type(), "byte");
  EXPECT_EQ(calls, 0);
}

// The checksum model folders record (common/crc32.h): the standard check value of CRC-32, and
// the same in pieces as in one piece.
TEST(ModelTokenizer, Crc32HasTheStandardCheckValue) {
  EXPECT_EQ(crc32_hex("123456789"), "cbf43926");
  EXPECT_EQ(crc32_hex(""), "00000000");
  Crc32 pieces;
  pieces.update("1234", 4);
  pieces.update("", 0);
  pieces.update("56789", 5);
  EXPECT_EQ(pieces.hex(), "cbf43926");
}

TEST(ModelTokenizer, SavesAndLoadsItsJsonFile) {
  test::TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  ByteTokenizer().save(path);
  std::ifstream f(path);
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("\"type\": \"byte\""));
  EXPECT_THAT(text, HasSubstr("\"version\": 1"));
  EXPECT_THAT(text, HasSubstr("\"vocab_size\": 259"));
  const auto tok = load_tokenizer(path);
  EXPECT_EQ(tok->type(), "byte");
  EXPECT_EQ(tok->vocab_size(), 259);
  EXPECT_EQ(tok->decode(tok->encode("héllo", true, true)), "héllo");
}

TEST(ModelTokenizer, LoadRefusesUnknownTypesVersionsAndBadFiles) {
  test::TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  write_text(path, R"({"type": "wordpiece", "version": 1, "vocab_size": 32000})");
  EXPECT_THAT(error_of([&] { load_tokenizer(path); }),
              HasSubstr("unknown tokenizer type 'wordpiece' (known types: byte, sentencepiece)"));
  write_text(path, R"({"type": "byte", "version": 2, "vocab_size": 259})");
  EXPECT_THAT(error_of([&] { load_tokenizer(path); }), HasSubstr("version 2 is not supported"));
  write_text(path, R"({"type": "byte", "version": 1, "vocab_size": 300})");
  EXPECT_THAT(error_of([&] { load_tokenizer(path); }), HasSubstr("vocab_size is 300"));
  write_text(path, R"({"type": "byte", "version": 1, "vocab_size": 259, "merges": []})");
  EXPECT_THAT(error_of([&] { load_tokenizer(path); }), HasSubstr("unknown key 'merges'"));
  write_text(path, R"({"type": "byte", "version": )");
  EXPECT_THAT(error_of([&] { load_tokenizer(path); }), HasSubstr("not valid JSON"));
  write_text(path, R"({"version": 1})");
  EXPECT_THAT(error_of([&] { load_tokenizer(path); }), HasSubstr("key 'type'"));
  EXPECT_THAT(error_of([&] { load_tokenizer(dir.file("none.json")); }),
              HasSubstr("does not exist"));
}

}  // namespace
}  // namespace kvtune
