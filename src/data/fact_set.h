// A fact set: facts (subject, relation, object) and the wordings that state or ask them.
//
// Each relation has statement templates in both directions: forward ones end in the object ("The
// symbol of Iron is Fe."), reverse ones end in the subject ("Fe stands for Iron."), so that every
// statement, cut before its last slot, is a prompt whose continuation is the answer. The first
// `train_templates` of each direction are trained; the others are held out and only ever used in
// evaluation, as prompts in a wording the model never saw (recall in held-out wordings). Question
// templates ask the same facts in question form ("Which element has the chemical symbol Fe?
// Answer:"); they share no run of 4 words with any statement (a test checks this).
//
// Subjects decide the split (data/split.h): a held-out subject's facts are never trained, in
// any wording, and are the untrained control. Of the training-side subjects, a fixed half (by a
// hash of the subject) also trains its answered questions, so that a model learns how a question
// is answered; the other half is the trained facts whose questions are asked. docs/data.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/text_entry.h"

namespace kvtune {

// Placeholders: {S} the subject as written ("Iron"), {s} the subject in lower case ("iron"),
// {o} the object ("Fe").
struct QuestionTemplate {
  std::string prompt;         // "Which element has the chemical symbol {o}? Answer:"
  bool asks_subject = false;  // the answer is the subject (true) or the object (false)
};

struct Relation {
  std::string name;                  // "symbol"
  std::vector<std::string> forward;  // statements ending in "{o}." (the answer: the object)
  std::vector<std::string> reverse;  // statements ending in "{S}." (the answer: the subject)
  std::vector<QuestionTemplate> questions;
};

struct Fact {
  std::string subject;  // "Iron": also the split's headword
  int relation = 0;     // index into FactSet::relations
  std::string object;   // "Fe"
};

struct FactSet {
  std::string name;  // the corpus name: "elements-facts"
  std::vector<Relation> relations;
  std::vector<Fact> facts;  // grouped by subject, in the source's order
};

// Statement templates trained per relation and direction unless a recipe says otherwise
// (data.train_templates).
inline constexpr int64_t kDefaultTrainTemplates = 3;

// The fewest statement templates of any relation in one direction: train_templates must be
// below it, so that every relation keeps a held-out wording in each direction.
int64_t max_train_templates(const FactSet& set);

// Throws kvtune::Error unless 1 <= train_templates <= max_train_templates(set). `context` opens
// the message ("recipes/x.yaml: key 'data.train_templates'").
void check_train_templates(const FactSet& set, int64_t train_templates, const std::string& context);

// Throws kvtune::Error (naming the relation and the template) unless every forward statement
// ends in "{o}." and names the subject before it, every reverse statement ends in "{S}." and
// names the object before it, and every relation has at least two statements per direction.
void check_templates(const FactSet& set);

// One wording of one fact, cut before the answer: prompt "The symbol of Iron is", answer " Fe."
// (a statement's end, so the continuation must end the text there as the statement did) or, for
// a question, prompt "... Answer:" and answer " Iron".
struct FactPrompt {
  std::string subject;  // the fact's subject (its group in the split)
  std::string prompt;
  std::string answer;
  int kind = 0;  // the wording's kind: chance is computed per kind (fact_prompt_kinds)
};

// A statement with its placeholders filled: "The symbol of Iron is Fe.".
std::string render_statement(const std::string& pattern, const Fact& fact);

// The statement cut before its answer slot: {"The symbol of Iron is", " Fe."}.
FactPrompt statement_prompt(const std::string& pattern, const Fact& fact, bool reverse);

// A question with its answer: {"Which element has the chemical symbol Fe? Answer:", " Iron"}.
FactPrompt question_prompt(const QuestionTemplate& question, const Fact& fact);

// True for the half of the subjects (a fixed hash) whose answered questions are trained.
bool teaches_answer_format(const std::string& subject);

// The training text of a fact set, for every subject (the split then keeps the held-out
// subjects' documents off the training side): per fact, the first `train_templates` statements
// of each direction; per fact of a subject that teaches the answer format, every question with
// its answer ("Which element has the chemical symbol Fe? Answer: Iron"). Headword: the subject,
// shown in no document. Held-out templates appear in none of them.
std::vector<TextEntry> fact_documents(const FactSet& set, int64_t train_templates);

// The evaluation prompts of one group of subjects (fact_prompts below).
struct FactPromptGroup {
  std::vector<FactPrompt> heldout_wordings;  // (a) statements in held-out templates
  std::vector<FactPrompt> trained_wordings;  // statements in trained templates (verbatim)
  std::vector<FactPrompt> questions;         // (b) question answering
};

struct FactPrompts {
  // Training-side subjects that do not teach the answer format: facts trained as statements
  // only, asked in held-out wordings and as questions.
  FactPromptGroup trained;
  // Held-out subjects: nothing about them was trained (c).
  FactPromptGroup control;
  // 1 / (distinct answers of the kind over all subjects), by kind: the exact match of a guess
  // drawn uniformly from the answers of that kind. A kind is one (relation, direction) for
  // statements, one question template for questions.
  std::vector<double> chance_by_kind;
};

// The prompts of a fact set under a split (held_out_fraction, split_salt) and train_templates.
FactPrompts fact_prompts(const FactSet& set, double held_out_fraction, uint64_t split_salt,
                         int64_t train_templates);

}  // namespace kvtune
