// Readers for user-supplied text: plain text files and JSONL.
#pragma once

#include <string>
#include <vector>

#include "data/text_entry.h"

namespace kvtune {

// How many words of a paragraph make its headword when the text has none.
inline constexpr int kHeadwordWords = 5;

// Plain text: one entry per paragraph, paragraphs separated by blank (or whitespace-only)
// lines. Line wrapping is layout, so the text is whitespace-normalized (text_clean.h); bytes that
// are not UTF-8 are read as Latin-1. The headword is the paragraph's first kHeadwordWords words:
// it survives edits elsewhere in the file (a line number would not), and paragraphs that open
// alike (repeated boilerplate) fall on the same side of the split.
std::vector<TextEntry> read_plain_text(const std::string& path);

// JSONL: one JSON object per line, blank lines skipped. The text is the string in `field`,
// taken verbatim (the writer chose its line breaks); records whose text is only whitespace are
// skipped. The headword is the string in `headword_field`, or, when that is empty, the first
// kHeadwordWords words of the text, as for plain text.
// Throws kvtune::Error naming the file and line for invalid JSON, a line that is not an object,
// a missing field, or a field that is not a string.
std::vector<TextEntry> read_jsonl(const std::string& path, const std::string& field = "text",
                                  const std::string& headword_field = "");

}  // namespace kvtune
