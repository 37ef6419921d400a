// `openlm eval CHECKPOINT_OR_RUN (--tokens FILE | --data MANIFEST [--max-sequences N]) [--stride S] [--json]
// [--logits-out FILE.safetensors]`: mean next-token loss over every target of every sequence (sequences
// longer than seq_len + 1 in sliding windows, train/inference.h score_sequence); optionally the fp32
// logits of equal-length sequences as safetensors.
// `openlm eval SOURCE --task FILE.jsonl | --suite SUITE.yaml [--num-fewshot K] [--json] [--per-example OUT]`:
// downstream (CORE-style) accuracy on in-context-learning tasks (train/downstream_eval.h,
// docs/EVALUATION.md), over all ranks when launched by `openlm launch`.
#include <nlohmann/json.hpp>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "data_loader/manifest.h"
#include "openlm_cpp/checkpoint/tensor_file.h"
#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/config.h"
#include "openlm_cpp/core/dist_env.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/parallel/comm.h"
#include "openlm_cpp/train/downstream_eval.h"
#include "openlm_cpp/train/inference.h"
#include "openlm_cpp/train/validation.h"  // read_token_file

namespace {
struct Args {
  std::string source, tokens, data, logits_out, weights;
  int64_t stride = 0, max_sequences = 0;
  bool json = false;
  // Downstream tasks.
  std::string task, suite, data_root, per_example, tokenizer, label, continuation_delimiter = " ", example_delimiter = "\n";
  int64_t num_fewshot = 0, batch_size = 8;
  double random_baseline = -1;  // not given: the default (1 / choices; LM 0)
  bool no_record = false;
};

/// A delimiter typed on the command line: "\\n", "\\t" and "\\\\" stand for a newline, a tab and a
/// backslash (a shell passes a real newline only as $'\\n').
std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == 'n' || s[i + 1] == 't' || s[i + 1] == '\\')) {
      ++i;
      out += s[i] == 'n' ? '\n' : s[i] == 't' ? '\t' : '\\';
    } else {
      out += s[i];
    }
  }
  return out;
}

/// Now in UTC, ISO 8601 ("2026-01-31T12:00:00Z").
std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// --task / --suite: every task file is read (and refused) before the model is loaded; each rank
/// scores its share, rank 0 prints, writes --per-example and appends to RUN/results.jsonl.
void run_downstream(const Args& a) {
  namespace icl = openlm::icl;
  struct Job {
    std::vector<icl::TaskFile> files;  // one, or one per category (has_categories)
    icl::EvalOptions opt;
  };
  std::vector<Job> jobs;
  if (!a.task.empty()) {
    Job j{{icl::read_task_file(a.task)}, {}};
    j.opt.label = a.label;
    j.opt.prompt = {a.num_fewshot, unescape(a.continuation_delimiter), unescape(a.example_delimiter), "", 1234};
    if (a.random_baseline >= 0) j.opt.random_baseline = a.random_baseline;
    jobs.push_back(std::move(j));
  } else {
    for (const auto& s : icl::read_suite(a.suite, a.data_root)) {
      auto file = icl::read_task_file(s.path, s.type);
      auto files = s.has_categories ? icl::split_by_category(file) : std::vector<icl::TaskFile>{file};
      for (int64_t k : s.num_fewshot) {
        Job j{files, {}};
        j.opt.label = s.label;
        j.opt.prompt = {k, s.continuation_delimiter, s.example_delimiter, s.prompt_string, s.seed};
        j.opt.random_baseline = s.random_baseline;
        jobs.push_back(std::move(j));
      }
    }
  }
  const openlm::DistEnv env = openlm::detect_dist_env();
  auto m = openlm::load_for_inference(a.source, a.tokenizer, env.local_rank);  // one GPU per rank of a node
  if (!m.tokenizer)
    throw openlm::ConfigError(a.source, "tokenizer.path", 0, "the model has no tokenizer: pass --tokenizer FILE");
  std::unique_ptr<openlm::parallel::Communicator> comm;
  if (env.distributed()) comm = openlm::parallel::make_communicator(env, openlm::ParallelConfig{});
  const bool rank0 = env.rank == 0;
  const openlm::icl::SourceInfo info = icl::describe_source(a.source);
  std::ofstream per;
  if (rank0 && !a.per_example.empty()) {
    per.open(a.per_example, std::ios::binary | std::ios::trunc);
    if (!per) openlm::throw_errno("cannot write", a.per_example);
  }
  nlohmann::json tasks = nlohmann::json::array();
  std::vector<nlohmann::json> records;
  double centered_sum = 0;
  for (auto& j : jobs) {
    j.opt.batch_size = a.batch_size;
    std::vector<icl::TaskResult> parts;
    for (const auto& f : j.files) parts.push_back(icl::evaluate_task(*m.model, *m.tokenizer, f, j.opt, comm.get()));
    icl::TaskResult r = parts.size() == 1 ? std::move(parts[0]) : icl::merge_categories(std::move(parts), j.opt.random_baseline);
    if (!rank0) continue;
    nlohmann::json sum = icl::summary_json(r);
    tasks.push_back(sum);
    centered_sum += r.centered_acc;
    if (per.is_open())
      for (const auto& e : r.examples) {
        nlohmann::json line = icl::example_json(e);
        line["task"] = r.label;
        line["num_fewshot"] = r.num_fewshot;
        per << line.dump() << "\n";
      }
    nlohmann::json rec = sum;
    rec["source"] = std::filesystem::absolute(a.source).lexically_normal().string();
    rec["step"] = info.step >= 0 ? nlohmann::json(info.step) : nlohmann::json();
    rec["time"] = utc_now();
    if (!a.suite.empty()) rec["suite"] = a.suite;
    records.push_back(rec);
    if (!a.json)
      std::cout << r.label << " (" << icl::task_type_name(r.type) << ", " << r.num_fewshot << "-shot): n " << r.n
                << "  acc " << r.acc << "  acc_sum " << r.acc_sum << "  centered_acc " << r.centered_acc
                << "  (random " << r.random_baseline << ")" << std::endl;
  }
  if (!rank0) return;
  if (per.is_open()) {
    per.close();
    if (!per) openlm::throw_errno("cannot write", a.per_example);
  }
  if (!info.run_dir.empty() && !a.no_record) icl::append_results(info.run_dir, records);
  const double mean_centered = centered_sum / static_cast<double>(tasks.size());
  if (a.json) {
    std::cout << (a.task.empty() ? nlohmann::json{{"tasks", tasks}, {"n_tasks", tasks.size()},
                                                  {"mean_centered_acc", mean_centered}}
                                 : tasks[0])
                     .dump()
              << std::endl;
  } else if (a.task.empty()) {
    std::cout << "mean centered accuracy over " << tasks.size() << " tasks (CORE-style): " << mean_centered << std::endl;
  }
}


openlm::cli::Registrar reg("eval", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto* sub = root.add_subcommand(
      "eval",
      "Mean next-token cross entropy of a model on token sequences: every token after the first of each "
      "sequence is scored once; sequences longer than seq_len + 1 in windows of seq_len inputs (--stride). "
      "With --task/--suite: downstream accuracy on in-context-learning tasks (docs/EVALUATION.md)");
  sub->add_option("source", a->source, "run directory, checkpoint directory or model.safetensors")->required();
  openlm::cli::add_weights_option(sub, a->weights);
  auto* tok = sub->add_option("--tokens", a->tokens,
                              "file of whitespace-separated token ids, one sequence (>= 2 ids) per line");
  auto* data = sub->add_option("--data", a->data,
                               "manifest.jsonl of OpenLM tar or native shards: every stored sequence is scored, "
                               "in manifest order");
  tok->excludes(data);
  auto* task = sub->add_option("--task", a->task,
                               "downstream task file (llm-foundry ICL JSONL: multiple_choice {query, choices, gold}, "
                               "schema {context_options, continuation, gold}, language_modeling {context, "
                               "continuation}; the type is read from the keys): prints acc, acc_sum, centered_acc");
  auto* suite = sub->add_option("--suite", a->suite,
                                "suite YAML listing tasks (icl_tasks: label, dataset_uri, icl_task_type, num_fewshot, "
                                "continuation_delimiter, example_delimiter, random_baseline): every task and the mean "
                                "centred accuracy (docs/EVALUATION.md)");
  sub->add_option("--data-root", a->data_root,
                  "with --suite: directory the suite's relative dataset_uri paths are under (default: the working "
                  "directory, then the suite file's directory)")
      ->needs(suite);
  for (auto* o : {tok, data}) {
    task->excludes(o);
    suite->excludes(o);
  }
  task->excludes(suite);
  sub->add_option("--num-fewshot", a->num_fewshot,
                  "with --task: few-shot examples put before each example (drawn from the same file with a "
                  "fixed seed, never the example itself)")
      ->capture_default_str()
      ->needs(task);
  sub->add_option("--continuation-delimiter", a->continuation_delimiter,
                  "with --task: text between a context and its continuation (\\n, \\t and \\\\ are escapes)")
      ->default_str("\" \"")
      ->needs(task);
  sub->add_option("--example-delimiter", a->example_delimiter,
                  "with --task: text between few-shot examples (\\n, \\t and \\\\ are escapes)")
      ->default_str("\"\\n\"")
      ->needs(task);
  auto* baseline = sub->add_option("--random-baseline", a->random_baseline,
                                   "with --task: the accuracy of guessing, in [0, 1), for centered_acc (default: "
                                   "the mean of 1/choices; language_modeling 0)")
                       ->default_str("1/choices")
                       ->needs(task);
  sub->add_option("--label", a->label, "with --task: the task's name in the output (default: the file's stem)")
      ->needs(task);
  sub->add_option("--per-example", a->per_example,
                  "with --task/--suite: write one JSON line per example: each choice's tokens, sum_logprob, "
                  "mean_logprob, greedy_match; pred, pred_sum, gold");
  sub->add_option("--batch-size", a->batch_size, "with --task/--suite: examples per forward pass (all their choices)")
      ->capture_default_str();
  sub->add_option("--tokenizer", a->tokenizer,
                  "with --task/--suite: tokenizer.model or tokenizer.json (default: the run's)");
  sub->add_flag("--no-record", a->no_record, "with --task/--suite: do not append the results to RUN/results.jsonl");
  sub->add_option("--max-sequences", a->max_sequences, "with --data: score only the first N sequences (0 = all)")
      ->capture_default_str()
      ->needs(data);
  sub->add_option("--stride", a->stride,
                  "window stride S for sequences longer than seq_len + 1 (L = seq_len): window k holds tokens "
                  "[kS, kS+L] and scores the targets no earlier window scored; 0 = L (disjoint windows)")
      ->capture_default_str();
  sub->add_flag("--json", a->json, "print one JSON object");
  sub->add_option("--logits-out", a->logits_out,
                  "also write the fp32 logits [sequences, T, vocab] of the whole sequences (all of equal length "
                  "T <= seq_len) to this safetensors file, key \"logits\"")
      ->needs(tok);
  sub->callback([a, baseline] {
    a->source = openlm::weights_source(a->source, a->weights);
    if (!a->task.empty() || !a->suite.empty()) {
      openlm::cli::require_option(a->num_fewshot >= 0, "--num-fewshot",
                                  "must be >= 0 (got " + std::to_string(a->num_fewshot) + ")");
      openlm::cli::require_option(a->batch_size >= 1, "--batch-size",
                                  "must be >= 1 (got " + std::to_string(a->batch_size) + ")");
      openlm::cli::require_option(baseline->count() == 0 || (a->random_baseline >= 0 && a->random_baseline < 1),
                                  "--random-baseline",
                                  "must be in [0, 1) (a fraction, not a percentage); got " +
                                      std::to_string(a->random_baseline));
      run_downstream(*a);
      return;
    }
    if (a->tokens.empty() && a->data.empty())
      throw openlm::ConfigError("--tokens", "", 0, "give --tokens FILE, --data MANIFEST, --task FILE or --suite FILE");
    openlm::cli::require_option(a->stride >= 0, "--stride",
                                "must be >= 1, or 0 = seq_len (got " + std::to_string(a->stride) + ")");
    openlm::cli::require_option(a->max_sequences >= 0, "--max-sequences",
                                "must be >= 0, 0 = all (got " + std::to_string(a->max_sequences) + ")");
    // Token files are read (and refused) before the model is loaded.
    std::vector<std::vector<int64_t>> seqs;
    if (!a->tokens.empty()) seqs = openlm::read_token_file(a->tokens);
    openlm::data::Manifest manifest;
    if (!a->data.empty()) manifest = openlm::data::read_manifest(a->data);
    auto m = openlm::load_for_inference(a->source);
    const int64_t L = m.model->config().seq_len;
    openlm::cli::require_option(a->stride <= L, "--stride",
                                "must not exceed the model's seq_len " + std::to_string(L) + " (got " +
                                    std::to_string(a->stride) + ")");
    openlm::EvalResult r;
    if (!a->tokens.empty()) {
      for (std::size_t i = 0; i < seqs.size(); ++i)  // every id checked before anything is written
        for (auto id : seqs[i])
          if (id < 0 || id >= m.model->config().vocab_size)
            throw openlm::DataError(a->tokens + ":" + std::to_string(i + 1) + ": token id " + std::to_string(id) +
                                    " outside the vocabulary [0, " + std::to_string(m.model->config().vocab_size) + ")");
      if (!a->logits_out.empty()) {  // before the loss, so that a refused input writes nothing
        at::Tensor logits = openlm::sequence_logits(*m.model, seqs);
        openlm::checkpoint::save_safetensors(a->logits_out, openlm::checkpoint::NamedTensors{{"logits", logits}},
                                             {{"source", a->source}});
      }
      for (std::size_t i = 0; i < seqs.size(); ++i)
        openlm::score_sequence(*m.model, seqs[i], a->stride, r, a->tokens + ":" + std::to_string(i + 1));
    } else {
      openlm::for_each_manifest_sequence(manifest, a->max_sequences,
                                         [&](const std::vector<int64_t>& ids, const std::string& label) {
                                           openlm::score_sequence(*m.model, ids, a->stride, r, label);
                                         });
    }
    nlohmann::json j = {{"loss", r.loss},        {"tokens", r.tokens}, {"sequences", r.sequences},
                        {"windows", r.windows}, {"stride", a->stride > 0 ? a->stride : L}};
    std::cout << (a->json ? j.dump()
                          : "loss " + std::to_string(r.loss) + " over " + std::to_string(r.tokens) + " tokens of " +
                                std::to_string(r.sequences) + " sequences (" + std::to_string(r.windows) +
                                " windows)")
              << std::endl;
  });
});
}  // namespace
