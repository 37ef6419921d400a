#pragma once
/// Downstream (CORE-style) evaluation: scores the requests of train/icl_tasks.h with a model in
/// batches, over every rank of a launched group, and reports llm-foundry's accuracy (lowest mean
/// per-token negative log-likelihood), lm-evaluation-harness's (highest summed log-likelihood) and
/// the centred accuracy CORE averages. docs/EVALUATION.md describes the rules and the outputs.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "openlm_cpp/train/icl_tasks.h"

namespace openlm {
class Transformer;
class Tokenizer;
namespace parallel {
class Communicator;
}
}  // namespace openlm

namespace openlm::icl {

/// One alternative of an example (a choice, a context option, or the LM continuation).
struct ChoiceScore {
  int64_t tokens = 0;         ///< continuation tokens scored
  double sum_logprob = 0;     ///< summed fp32 log-probabilities of the continuation tokens
  double mean_logprob = 0;    ///< sum_logprob / tokens
  bool greedy_match = false;  ///< every continuation token is the argmax of its position's logits
};

struct ExampleResult {
  int64_t index = 0;           ///< 0-based record index in the task file
  int64_t line = 0;            ///< 1-based line of the record
  std::vector<ChoiceScore> choices;
  int64_t gold = 0;
  int64_t pred = 0;            ///< highest mean log-likelihood (LM: 0 when greedy_match, else -1)
  int64_t pred_sum = 0;        ///< highest summed log-likelihood (LM: as pred)
  int64_t context_tokens = 0;  ///< context tokens read (largest over the alternatives, after truncation)
  int64_t truncated = 0;       ///< context tokens dropped from the left
  std::string category;        ///< the record's "category" (has_categories tasks)
};

struct TaskResult {
  std::string label, path;
  TaskType type = TaskType::MultipleChoice;
  int64_t num_fewshot = 0;
  int64_t n = 0;
  double acc = 0, acc_sum = 0;
  double random_baseline = 0;  ///< given, else the mean over examples of 1 / choices (LM 0)
  double centered_acc = 0;     ///< (acc - random_baseline) / (1 - random_baseline)
  int64_t truncated_examples = 0;
  int64_t categories = 0;      ///< has_categories: how many categories acc and acc_sum average over
  double seconds = 0;
  std::vector<ExampleResult> examples;  ///< in file order
};

struct EvalOptions {
  std::string label;                     ///< "" = the file's stem
  PromptOptions prompt;
  std::optional<double> random_baseline;
  int64_t batch_size = 8;                ///< examples per forward (all alternatives of each)
};

/// Scores token requests in one forward pass (right-padded batch): per request, the fp32
/// log_softmax of the logits at the positions that predict each continuation token.
std::vector<ChoiceScore> score_requests(Transformer& model, const std::vector<Request>& requests);

/// Evaluates one task. Examples go in blocks of `batch_size` in file order; with a communicator
/// of W ranks block b is scored by rank b % W and every rank ends with the same, complete result
/// (identical to W = 1: the blocks and thus the batches do not depend on W). A collective: every
/// rank must call it with the same arguments.
TaskResult evaluate_task(Transformer& model, const Tokenizer& tok, const TaskFile& task, const EvalOptions& opt,
                         parallel::Communicator* comm = nullptr);

/// llm-foundry's has_categories as DCLM reports it: the categories' results (each scored as a task
/// of its own, few-shot examples from the same category) merged into one, with acc and acc_sum
/// the unweighted means over categories, n and truncated their sums, the random baseline
/// `given` or else the categories' mean, examples in category order.
TaskResult merge_categories(std::vector<TaskResult> parts, std::optional<double> given_baseline);

/// The summary object `openlm eval --task --json` prints: task, type, num_fewshot, n, acc, acc_sum,
/// random_baseline, centered_acc, truncated, seconds, file (and categories when merged).
nlohmann::json summary_json(const TaskResult& r);
/// One line of --per-example: index, line, choices [{tokens, sum_logprob, mean_logprob,
/// greedy_match}], pred, pred_sum, gold, correct, context_tokens, truncated (and category when set).
nlohmann::json example_json(const ExampleResult& e);

/// Where results of `source` are recorded: the run directory (a run, or the run holding a
/// checkpoint; empty when the source is not part of a run) and the step of the weights when known
/// (a checkpoint's step; a run's last logged step for its model.safetensors; -1 unknown).
struct SourceInfo {
  std::string run_dir;
  int64_t step = -1;
};
SourceInfo describe_source(const std::string& source);

/// Appends one JSON line per record to <run_dir>/results.jsonl (created when missing).
void append_results(const std::string& run_dir, const std::vector<nlohmann::json>& records);

}  // namespace openlm::icl
