// One unit of training or evaluation text: a dictionary entry, a paragraph, a JSONL record.
#pragma once

#include <string>

namespace kvtune {

struct TextEntry {
  // What the text is about (a dictionary headword) or, for text without one, a short label.
  // The train/held-out split is decided on this (see split.h).
  std::string headword;
  std::string text;
  // Whether documents built from the entry open with "headword: " (dictionary entries do;
  // the element statements and question-answer pairs name their subject in the text itself).
  bool show_headword = true;
};

}  // namespace kvtune
