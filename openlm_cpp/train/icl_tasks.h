#pragma once
/// In-context-learning (ICL) tasks in the JSONL layouts of llm-foundry's eval bundle (what DCLM's
/// CORE runs), the suite YAML that lists them, and the prompts built from them: text in, token
/// requests out. Torch-free; scoring is train/downstream_eval.h. docs/EVALUATION.md has the rules.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace openlm {
class Tokenizer;
}

namespace openlm::icl {

enum class TaskType { MultipleChoice, Schema, LanguageModeling };
/// "multiple_choice", "schema", "language_modeling".
std::string task_type_name(TaskType t);

/// One record of a task file, its strings stripped of leading and trailing whitespace (as
/// llm-foundry's default strip_dataset does).
struct Example {
  int64_t line = 0;                        ///< 1-based line in the file
  std::vector<std::string> contexts;       ///< multiple_choice: {query}; schema: context_options; LM: {context}
  std::vector<std::string> continuations;  ///< multiple_choice: choices; schema / LM: {continuation}
  int64_t gold = 0;                        ///< index of the correct choice / context option (LM: 0)
  std::string category;                    ///< "category" when the record has one (has_categories)
  /// How many alternatives are scored (choices, context options, 1 for LM).
  int64_t num_choices() const;
};

struct TaskFile {
  std::string path;
  TaskType type = TaskType::MultipleChoice;
  std::vector<Example> examples;
};

/// Reads a task file. The type comes from `expect` when given, else from the first record's keys:
/// "choices" -> multiple_choice, "context_options" -> schema, "context" + "continuation" ->
/// language_modeling. Every record must have its type's keys. Throws DataError "FILE:LINE: ..." for
/// a line that is not a JSON object, a missing or mistyped key, an empty choice list, an empty
/// choice string, a gold index out of range; blank lines are skipped; a file without records is
/// an error too.
TaskFile read_task_file(const std::string& path, std::optional<TaskType> expect = std::nullopt);

/// The records of each "category" as a task file of their own (in order of first appearance; lines
/// kept), for llm-foundry's has_categories. Throws DataError "FILE:LINE" for a record without a
/// category.
std::vector<TaskFile> split_by_category(const TaskFile& f);

/// One task of a suite: what a user writes per entry of `icl_tasks:`.
struct TaskSpec {
  std::string label;                       ///< "label" (default: the file's stem)
  std::string path;                        ///< "dataset_uri" (or "path"), resolved
  std::optional<TaskType> type;            ///< "icl_task_type" (none: from the records)
  std::vector<int64_t> num_fewshot{0};     ///< "num_fewshot": a number or a list (each is evaluated)
  std::string continuation_delimiter = " ";
  std::string example_delimiter = "\n";
  std::string prompt_string;               ///< text put once before the few-shot examples
  uint64_t seed = 1234;                    ///< "fewshot_random_seed"
  std::optional<double> random_baseline;   ///< "random_baseline" in [0, 1) (none: 1/choices, LM 0)
  bool has_categories = false;             ///< "has_categories": score each category apart, report their mean
};

/// Reads a suite YAML: a top-level `icl_tasks:` list (llm-foundry's layout; other top-level keys
/// are not read) or a bare list of task maps. A relative dataset_uri is looked up under
/// `data_root` when given, else as given (relative to the working directory), else relative to the
/// suite file's directory. Unknown keys that llm-foundry defines are ignored
/// (with a warning); others, missing or malformed values and unsupported task types are
/// ConfigErrors naming FILE, the key and the line.
std::vector<TaskSpec> read_suite(const std::string& path, const std::string& data_root = "");

/// The few-shot examples of example `i` among `n`: min(k, n - 1) distinct indices, never `i`,
/// ascending, a pure function of (n, k, i, seed) so that every rank and every run draws the same.
std::vector<int64_t> fewshot_indices(int64_t n, int64_t k, int64_t i, uint64_t seed);

struct PromptOptions {
  int64_t num_fewshot = 0;
  std::string continuation_delimiter = " ";
  std::string example_delimiter = "\n";
  std::string prompt_string;
  uint64_t seed = 1234;  ///< llm-foundry's default fewshot_random_seed (the draw itself differs)
};

/// The token ids of one alternative: the model reads context + continuation[:-1] and scores the
/// continuation.
struct Request {
  std::vector<int64_t> context;
  std::vector<int64_t> continuation;
};

struct PreparedExample {
  std::vector<Request> requests;  ///< one per choice / context option; one for LM
  int64_t truncated = 0;          ///< context tokens dropped from the left (largest over requests)
};

/// Whether the tokenizer needs a space put before a continuation: it encodes " a" as one token
/// (GPT-2/GPT-NeoX byte-level BPE), llm-foundry's test.
bool needs_prefix_space(const Tokenizer& tok);

/// Builds example `i`'s requests (docs/EVALUATION.md, "Prompts"): the few-shot prefix, the context
/// (rstripped, tokenized apart from the prefix), the continuation (tokenized alone, a space put
/// before it when `prefix_space`), context truncated from the left so that context + continuation
/// fit in `max_len` tokens. Throws DataError "FILE:LINE: ..." when a continuation leaves no room
/// for a context token or a context is empty.
PreparedExample prepare_example(const TaskFile& task, int64_t i, const PromptOptions& opt, const Tokenizer& tok,
                                bool prefix_space, int64_t max_len);

}  // namespace openlm::icl
