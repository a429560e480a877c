// The dictd, plain-text and JSONL readers: on the installed dictionaries and on broken files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "common/check.h"
#include "data/dictd_reader.h"
#include "data/gzip_file.h"
#include "data/text_clean.h"
#include "data/text_reader.h"
#include "test_util.h"

namespace kvtune {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

void write_file(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
  ASSERT_TRUE(out.good()) << path;
}

void write_gzip(const std::string& path, const std::string& contents) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, contents.data(), static_cast<unsigned>(contents.size())),
            static_cast<int>(contents.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

// The kvtune::Error message thrown by `fn`, or a failure if it throws nothing.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected kvtune::Error, nothing was thrown";
  return "";
}

const TextEntry* find_entry(const std::vector<TextEntry>& entries, const std::string& headword) {
  for (const auto& e : entries) {
    if (e.headword == headword) return &e;
  }
  return nullptr;
}

// Skips, or fails under CI=true (test_util.h), when the dictionary is not installed.
#define SKIP_UNLESS_DICTIONARY(name) KVTUNE_REQUIRE_DICTD(name)

// ---- on the installed dictionaries ----

struct Corpus {
  const char* name;
  size_t min_entries;  // measured count rounded down: a reader that loses entries fails
  const char* headword;
  const char* expected_text;  // a whitespace-normalized piece of that entry
};

void PrintTo(const Corpus& c, std::ostream* os) {
  *os << c.name;
}

class DataDictdReal : public ::testing::TestWithParam<Corpus> {};

TEST_P(DataDictdReal, EntriesAreCleanAndAKnownOneIsPresent) {
  const Corpus& c = GetParam();
  SKIP_UNLESS_DICTIONARY(c.name);
  const auto entries = read_dictd_named(c.name);
  EXPECT_GE(entries.size(), c.min_entries);
  for (const auto& e : entries) {
    ASSERT_FALSE(e.headword.empty());
    ASSERT_FALSE(e.text.empty()) << e.headword;
    ASSERT_EQ(e.headword.find("00database"), std::string::npos) << e.headword;
    ASSERT_EQ(e.headword.find("00-database"), std::string::npos) << e.headword;
    ASSERT_EQ(e.text.find_first_of("\n\r\t"), std::string::npos) << e.headword;
    ASSERT_EQ(e.text.find("  "), std::string::npos) << e.headword;
    ASSERT_NE(e.text.front(), ' ') << e.headword;
    ASSERT_NE(e.text.back(), ' ') << e.headword;
  }
  const TextEntry* known = find_entry(entries, c.headword);
  ASSERT_NE(known, nullptr) << c.headword;
  EXPECT_THAT(known->text, HasSubstr(c.expected_text));
  // The repeated headword line is removed from the text.
  EXPECT_THAT(known->text, ::testing::Not(StartsWith(c.headword)));
}

INSTANTIATE_TEST_SUITE_P(
    DataInstalled, DataDictdReal,
    ::testing::Values(
        Corpus{"foldoc", 12000, "compiler",
               "<programming, tool> A program that converts another program from some {source "
               "language} (or {programming language}) to {machine language} (object code)."},
        Corpus{"wn", 147000, "iron", "a heavy ductile magnetic metallic element"},
        Corpus{"jargon", 2300, "hacker",
               "A person who enjoys exploring the details of programmable systems"},
        Corpus{"elements", 137, "iron", "Symbol: Fe Atomic number: 26 Atomic weight: 55.847"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(DataDictd, FoldocAliasesGiveOneEntryUnderTheCanonicalHeadword) {
  SKIP_UNLESS_DICTIONARY("foldoc");
  const auto entries = read_dictd_named("foldoc");
  // "!" and "exclamation mark" point at the same bytes in foldoc.index.
  EXPECT_EQ(find_entry(entries, "!"), nullptr);
  const auto count = std::count_if(entries.begin(), entries.end(), [](const TextEntry& e) {
    return e.headword == "exclamation mark";
  });
  EXPECT_EQ(count, 1);
}

TEST(DataDictd, ElementsLatin1IsRepairedToUtf8) {
  SKIP_UNLESS_DICTIONARY("elements");
  const auto entries = read_dictd_named("elements");
  const TextEntry* rg = find_entry(entries, "roentgenium");
  ASSERT_NE(rg, nullptr);
  EXPECT_THAT(rg->text, HasSubstr("Gottfried M\xc3\xbcnzenberg"));  // ü, Latin-1 0xfc in the file
}

TEST(DataDictd, KeepLinesKeepsTheLayout) {
  SKIP_UNLESS_DICTIONARY("elements");
  const auto entries = read_dictd_named("elements", DictdText::kKeepLines);
  const TextEntry* iron = find_entry(entries, "iron");
  ASSERT_NE(iron, nullptr);
  EXPECT_THAT(iron->text, StartsWith("Symbol: Fe\nAtomic number: 26\nAtomic weight: 55.847\n"));
}

// ---- on small files written here ----

class DataDictdFiles : public ::testing::Test {
 protected:
  // Entries: "alpha" and its alias "a", a metadata entry, and "beta" with a Latin-1 byte.
  const std::string dict_ =
      "00-database-short\n  Test dictionary\n"  // bytes 0..36
      "Alpha\n   first  line\n   second line\n\n"
      "beta\n  caf\xe9\n";
  std::string index_line(const std::string& head, uint64_t offset, uint64_t length) {
    return head + "\t" + encode(offset) + "\t" + encode(length) + "\n";
  }
  static std::string encode(uint64_t v) {
    static const char* kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string s;
    do {
      s.insert(s.begin(), kAlphabet[v % 64]);
      v /= 64;
    } while (v > 0);
    return s;
  }
  std::string good_index() {
    const size_t alpha = dict_.find("Alpha"), beta = dict_.find("beta");
    return index_line("00-database-short", 0, alpha) + index_line("a", alpha, beta - alpha) +
           index_line("alpha", alpha, beta - alpha) + index_line("beta", beta, dict_.size() - beta);
  }
  test::TempDir dir_;
  std::string index_ = dir_.file("t.index");
  std::string dz_ = dir_.file("t.dict.dz");
};

TEST_F(DataDictdFiles, ReadsAWellFormedDictionary) {
  write_file(index_, good_index());
  write_gzip(dz_, dict_);
  const auto entries = read_dictd(index_, dz_);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].headword, "Alpha");  // original case, from the entry's first line
  EXPECT_EQ(entries[0].text, "first line second line");
  EXPECT_EQ(entries[1].headword, "beta");
  EXPECT_EQ(entries[1].text, "caf\xc3\xa9");
  const auto lines = read_dictd(index_, dz_, DictdText::kKeepLines);
  EXPECT_EQ(lines[0].text, "   first  line\n   second line");
}

TEST_F(DataDictdFiles, AcceptsCrlfBlankLinesAndFourFields) {
  const size_t beta = dict_.find("beta");
  write_file(index_, "b\t" + encode(beta) + "\t" + encode(dict_.size() - beta) + "\tbeta\r\n\n");
  write_gzip(dz_, dict_);
  const auto entries = read_dictd(index_, dz_);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].headword, "beta");
}

TEST_F(DataDictdFiles, BadBase64CharacterNamesFileAndLine) {
  write_file(index_, good_index() + "gamma\tA!B\tC\n");
  write_gzip(dz_, dict_);
  const std::string msg = error_of([&] { read_dictd(index_, dz_); });
  EXPECT_THAT(msg, HasSubstr(index_));
  EXPECT_THAT(msg, HasSubstr("line 5"));
  EXPECT_THAT(msg, HasSubstr("'!'"));
  EXPECT_THAT(msg, HasSubstr("base64"));
}

TEST_F(DataDictdFiles, WrongFieldCountNamesFileAndLine) {
  write_file(index_, "alpha\tA\n");
  write_gzip(dz_, dict_);
  const std::string msg = error_of([&] { read_dictd(index_, dz_); });
  EXPECT_THAT(msg, HasSubstr(index_ + " line 1"));
  EXPECT_THAT(msg, HasSubstr("expected 3 tab-separated fields"));
  EXPECT_THAT(msg, HasSubstr("found 2"));
}

TEST_F(DataDictdFiles, OffsetBeyondTheEndNamesFileLineAndSize) {
  write_file(index_, good_index() + index_line("gamma", dict_.size() - 2, 3));
  write_gzip(dz_, dict_);
  const std::string msg = error_of([&] { read_dictd(index_, dz_); });
  EXPECT_THAT(msg, HasSubstr(index_ + " line 5"));
  EXPECT_THAT(msg, HasSubstr("decompresses to only " + std::to_string(dict_.size()) + " bytes"));
  // An entry ending exactly at the end is fine.
  write_file(index_, good_index() + index_line("gamma", dict_.size() - 2, 2));
  EXPECT_NO_THROW(read_dictd(index_, dz_));
}

TEST_F(DataDictdFiles, DictThatIsNotGzipIsAnError) {
  write_file(index_, good_index());
  write_file(dz_, dict_);  // plain text: gzread would pass it through silently
  const std::string msg = error_of([&] { read_dictd(index_, dz_); });
  EXPECT_THAT(msg, HasSubstr(dz_));
  EXPECT_THAT(msg, HasSubstr("not a gzip/dictzip file"));
}

TEST_F(DataDictdFiles, TruncatedGzipIsAnError) {
  write_file(index_, good_index());
  write_gzip(dz_, dict_);
  const auto size = std::filesystem::file_size(dz_);
  std::filesystem::resize_file(dz_, size - 10);
  EXPECT_THAT(error_of([&] { read_dictd(index_, dz_); }), HasSubstr("ends early"));
}

TEST_F(DataDictdFiles, MissingFilesAreNamed) {
  write_gzip(dz_, dict_);
  EXPECT_THAT(error_of([&] { read_dictd(index_, dz_); }), HasSubstr(index_ + " does not exist"));
  write_file(index_, good_index());
  const std::string no_dict = dir_.file("none.dict.dz");
  EXPECT_THAT(error_of([&] { read_dictd(index_, no_dict); }),
              HasSubstr(no_dict + " does not exist"));
  EXPECT_THAT(error_of([] { read_dictd_named("../etc/passwd"); }), HasSubstr("bare name"));
}

// Malformed input must give a kvtune::Error or a result, never a crash or another exception.
TEST_F(DataDictdFiles, RandomCorruptionsThrowErrorOrRead) {
  std::mt19937_64 rng(test::test_seed());
  write_gzip(dz_, dict_);
  std::ifstream in(dz_, std::ios::binary);
  const std::string gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string index = good_index();
  size_t read = 0, errors = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string bad_index = index, bad_gz = gz;
    std::string& target = trial % 2 ? bad_index : bad_gz;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) target[rng() % target.size()] = static_cast<char>(rng());
    write_file(index_, bad_index);
    write_file(dz_, bad_gz);
    try {
      read_dictd(index_, dz_);
      ++read;
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_EQ(read + errors, 300u);
  EXPECT_GT(errors, 0u);
}

TEST(DataDictd, DecodesDictdBase64MostSignificantFirst) {
  uint64_t v = 0;
  char bad = 0;
  ASSERT_TRUE(decode_dictd_number("A", &v, &bad));
  EXPECT_EQ(v, 0u);
  ASSERT_TRUE(decode_dictd_number("/", &v, &bad));
  EXPECT_EQ(v, 63u);
  ASSERT_TRUE(decode_dictd_number("BA", &v, &bad));
  EXPECT_EQ(v, 64u);
  ASSERT_TRUE(decode_dictd_number("Iuw", &v, &bad));  // elements.index, actinium
  EXPECT_EQ(v, 8u * 4096 + 46 * 64 + 48);
  EXPECT_FALSE(decode_dictd_number("A=", &v, &bad));
  EXPECT_EQ(bad, '=');
  EXPECT_FALSE(decode_dictd_number("", &v, &bad));
  EXPECT_FALSE(decode_dictd_number("AAAAAAAAAAA", &v, &bad));  // 11 digits: could overflow
}

// ---- text clean-up ----

TEST(DataTextClean, NormalizesWhitespaceAndRepairsUtf8) {
  EXPECT_EQ(normalize_whitespace("  a \t\n b\r\n\nc  "), "a b c");
  EXPECT_EQ(normalize_whitespace(" \n "), "");
  EXPECT_EQ(repair_utf8("caf\xe9"), "caf\xc3\xa9");                                // Latin-1 byte
  EXPECT_EQ(repair_utf8("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");  // kept
  EXPECT_EQ(repair_utf8("\xc3"), "\xc3\x83");  // a sequence cut short is Latin-1 too
  EXPECT_EQ(first_words("  one two\nthree  four five six", 5), "one two three four five");
  EXPECT_EQ(fold_headword(" Exclamation  MARK "), "exclamation mark");
}

// ---- plain text and JSONL ----

TEST(DataText, PlainTextGivesOneEntryPerParagraph) {
  test::TempDir dir;
  const std::string path = dir.file("t.txt");
  write_file(path,
             "\n\nThe first paragraph is\r\nwrapped over  two lines.\r\n\r\n"
             "   \t\nSecond paragraph.\n\n\n\nThird one, with seven words in it\n");
  const auto entries = read_plain_text(path);
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].text, "The first paragraph is wrapped over two lines.");
  EXPECT_EQ(entries[0].headword, "The first paragraph is wrapped");
  EXPECT_EQ(entries[1].text, "Second paragraph.");
  EXPECT_EQ(entries[1].headword, "Second paragraph.");
  EXPECT_EQ(entries[2].text, "Third one, with seven words in it");
  EXPECT_THAT(error_of([&] { read_plain_text(dir.file("none.txt")); }),
              HasSubstr("none.txt does not exist"));
}

TEST(DataText, JsonlReadsTextVerbatimAndHeadwords) {
  test::TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_file(path,
             "{\"text\": \"line one\\nline two\", \"id\": \"first\"}\n"
             "\n"
             "{\"text\": \"  \", \"id\": \"blank\"}\n"
             "{\"body\": 1, \"text\": \"Second record text\", \"id\": \"second\"}\r\n");
  const auto by_words = read_jsonl(path);
  ASSERT_EQ(by_words.size(), 2u);
  EXPECT_EQ(by_words[0].text, "line one\nline two");
  EXPECT_EQ(by_words[0].headword, "line one line two");
  const auto by_id = read_jsonl(path, "text", "id");
  ASSERT_EQ(by_id.size(), 2u);
  EXPECT_EQ(by_id[1].headword, "second");
  EXPECT_EQ(by_id[1].text, "Second record text");
}

TEST(DataText, JsonlErrorsNameFileLineAndProblem) {
  test::TempDir dir;
  const std::string path = dir.file("bad.jsonl");
  const std::string good = "{\"text\": \"fine\", \"n\": 3}\n";

  write_file(path, good + good + "{\"text\": \"unterminated}\n");
  std::string msg = error_of([&] { read_jsonl(path); });
  EXPECT_THAT(msg, HasSubstr(path + " line 3"));
  EXPECT_THAT(msg, HasSubstr("invalid JSON"));

  write_file(path, good + "{\"content\": \"x\"}\n");
  msg = error_of([&] { read_jsonl(path); });
  EXPECT_THAT(msg, HasSubstr(path + " line 2"));
  EXPECT_THAT(msg, HasSubstr("no \"text\" field (keys present: content)"));

  write_file(path, good);
  msg = error_of([&] { read_jsonl(path, "n"); });
  EXPECT_THAT(msg, HasSubstr("line 1: field \"n\" is a number, expected a string"));
  msg = error_of([&] { read_jsonl(path, "text", "title"); });
  EXPECT_THAT(msg, HasSubstr("no \"title\" field"));

  write_file(path, "[1, 2]\n");
  EXPECT_THAT(error_of([&] { read_jsonl(path); }), HasSubstr("found a JSON array"));
  EXPECT_THAT(error_of([&] { read_jsonl(dir.file("none.jsonl")); }),
              HasSubstr("none.jsonl does not exist"));
}

}  // namespace
}  // namespace kvtune
