#include "openlm_cpp/train/downstream_eval.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/checkpoint/hf_import.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/parallel/comm.h"
#include "openlm_cpp/tokenizer/tokenizer.h"

namespace stdfs = std::filesystem;

namespace openlm::icl {

std::vector<ChoiceScore> score_requests(Transformer& model, const std::vector<Request>& requests) {
  std::vector<ChoiceScore> out(requests.size());
  if (requests.empty()) return out;
  const int64_t B = static_cast<int64_t>(requests.size());
  const int64_t V = model.config().vocab_size;
  int64_t T = 1;  // the model reads context + continuation[:-1]
  for (const auto& r : requests) {
    if (r.context.empty() || r.continuation.empty()) throw Error("score_requests: empty context or continuation");
    T = std::max<int64_t>(T, static_cast<int64_t>(r.context.size() + r.continuation.size()) - 1);
  }
  if (T > model.config().seq_len)
    throw Error("score_requests: " + std::to_string(T) + " input tokens exceed seq_len " +
                std::to_string(model.config().seq_len));
  // Right padding with id 0: causal attention keeps the padding out of every scored position.
  std::vector<int64_t> ids(static_cast<std::size_t>(B * T), 0), rows, targets;
  for (int64_t b = 0; b < B; ++b) {
    const auto& r = requests[static_cast<std::size_t>(b)];
    std::vector<int64_t> seq(r.context);
    seq.insert(seq.end(), r.continuation.begin(), r.continuation.end() - 1);
    for (std::size_t t = 0; t < seq.size(); ++t) {
      if (seq[t] < 0 || seq[t] >= V)
        throw DataError("token id " + std::to_string(seq[t]) + " outside the model's vocabulary [0, " +
                        std::to_string(V) + "): the tokenizer does not fit the model");
      ids[static_cast<std::size_t>(b * T) + t] = seq[t];
    }
    const int64_t c = static_cast<int64_t>(r.context.size());
    for (std::size_t j = 0; j < r.continuation.size(); ++j) {
      rows.push_back(b * T + c - 1 + static_cast<int64_t>(j));  // the position predicting continuation[j]
      targets.push_back(r.continuation[j]);
      if (targets.back() < 0 || targets.back() >= V)
        throw DataError("token id " + std::to_string(targets.back()) + " outside the model's vocabulary [0, " +
                        std::to_string(V) + "): the tokenizer does not fit the model");
    }
  }
  at::NoGradGuard no_grad;
  model.train(false);
  const auto dev = model.device();
  at::Tensor tokens = at::tensor(ids, at::kLong).view({B, T}).to(dev);
  at::Tensor h = model.forward_hidden(tokens);
  h = h.reshape({B * T, h.size(-1)}).index_select(0, at::tensor(rows, at::kLong).to(dev));
  // The head only at the scored positions (as Transformer::forward computes it, fp32 out): the
  // [B, T, V] logits of a whole batch never exist.
  const auto cd = model.compute_dtype();
  at::Tensor logits = at::linear(h.to(cd), model.output_weight().to(cd)).to(at::kFloat);
  at::Tensor tgt = at::tensor(targets, at::kLong).to(dev);
  at::Tensor lp = at::log_softmax(logits, -1).gather(1, tgt.unsqueeze(1)).squeeze(1).to(at::kCPU);
  at::Tensor hit = logits.argmax(-1).eq(tgt).to(at::kCPU);
  const float* lpp = lp.data_ptr<float>();
  const bool* hp = hit.data_ptr<bool>();
  std::size_t k = 0;
  for (std::size_t b = 0; b < requests.size(); ++b) {
    ChoiceScore& s = out[b];
    s.greedy_match = true;
    for (std::size_t j = 0; j < requests[b].continuation.size(); ++j, ++k) {
      s.sum_logprob += static_cast<double>(lpp[k]);
      s.greedy_match = s.greedy_match && hp[k];
    }
    s.tokens = static_cast<int64_t>(requests[b].continuation.size());
    s.mean_logprob = s.sum_logprob / static_cast<double>(s.tokens);
  }
  return out;
}

namespace {

/// First index of the largest value (llm-foundry's and the harness's argmax: ties go to the first).
template <class F>
int64_t argmax(const std::vector<ChoiceScore>& c, F key) {
  int64_t best = 0;
  for (std::size_t i = 1; i < c.size(); ++i)
    if (key(c[i]) > key(c[static_cast<std::size_t>(best)])) best = static_cast<int64_t>(i);
  return best;
}

nlohmann::json to_wire(const ExampleResult& e) {
  nlohmann::json cs = nlohmann::json::array();
  for (const auto& c : e.choices) cs.push_back({c.tokens, c.sum_logprob, c.greedy_match});
  return {e.index, e.line, e.gold, e.context_tokens, e.truncated, cs};
}

ExampleResult from_wire(const nlohmann::json& j, TaskType type) {
  ExampleResult e;
  e.index = j[0];
  e.line = j[1];
  e.gold = j[2];
  e.context_tokens = j[3];
  e.truncated = j[4];
  for (const auto& c : j[5]) {
    ChoiceScore s;
    s.tokens = c[0];
    s.sum_logprob = c[1];
    s.greedy_match = c[2];
    s.mean_logprob = s.sum_logprob / static_cast<double>(s.tokens);
    e.choices.push_back(s);
  }
  if (type == TaskType::LanguageModeling) {
    e.pred = e.pred_sum = e.choices[0].greedy_match ? 0 : -1;
  } else {
    e.pred = argmax(e.choices, [](const ChoiceScore& s) { return s.mean_logprob; });
    e.pred_sum = argmax(e.choices, [](const ChoiceScore& s) { return s.sum_logprob; });
  }
  return e;
}

}  // namespace

TaskResult evaluate_task(Transformer& model, const Tokenizer& tok, const TaskFile& task, const EvalOptions& opt,
                         parallel::Communicator* comm) {
  if (opt.batch_size < 1) throw ConfigError("--batch-size", "", 0, "must be >= 1");
  const auto t0 = std::chrono::steady_clock::now();
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  const bool prefix_space = needs_prefix_space(tok);
  const int64_t n = static_cast<int64_t>(task.examples.size());
  const int64_t L = model.config().seq_len;
  // Results travel as compact JSON: sums as doubles, so every rank derives the same predictions.
  nlohmann::json mine = nlohmann::json::array();
  std::string error;  // a rank's bad record must not leave the others waiting in the gather
  try {
    for (int64_t b0 = 0, block = 0; b0 < n; b0 += opt.batch_size, ++block) {
      if (block % world != rank) continue;
      const int64_t b1 = std::min(n, b0 + opt.batch_size);
      std::vector<Request> reqs;
      std::vector<ExampleResult> ex;
      for (int64_t i = b0; i < b1; ++i) {
        PreparedExample p = prepare_example(task, i, opt.prompt, tok, prefix_space, L);
        ExampleResult e;
        e.index = i;
        e.line = task.examples[static_cast<std::size_t>(i)].line;
        e.gold = task.examples[static_cast<std::size_t>(i)].gold;
        e.truncated = p.truncated;
        for (auto& r : p.requests) {
          e.context_tokens = std::max<int64_t>(e.context_tokens, static_cast<int64_t>(r.context.size()));
          reqs.push_back(std::move(r));
        }
        e.choices.resize(reqs.size());  // marks where this example's requests end
        ex.push_back(std::move(e));
      }
      std::vector<ChoiceScore> scores = score_requests(model, reqs);
      std::size_t from = 0;
      for (auto& e : ex) {
        const std::size_t to = e.choices.size();
        e.choices.assign(scores.begin() + static_cast<std::ptrdiff_t>(from), scores.begin() + static_cast<std::ptrdiff_t>(to));
        from = to;
        mine.push_back(to_wire(e));
      }
    }
  } catch (const std::exception& e) {
    if (!comm || world == 1) throw;
    error = std::string("rank ") + std::to_string(rank) + ": " + e.what();
  }
  std::vector<std::string> parts{mine.dump()};
  if (comm && world > 1) {
    parts = comm->all_gather_bytes(error.empty() ? mine.dump() : "!" + error);
    for (const auto& p : parts)
      if (!p.empty() && p[0] == '!') throw DataError(p.substr(1));  // every rank raises the first error
  }
  TaskResult r;
  r.label = opt.label.empty() ? stdfs::path(task.path).stem().string() : opt.label;
  r.path = task.path;
  r.type = task.type;
  r.num_fewshot = opt.prompt.num_fewshot;
  for (const auto& p : parts)
    for (const auto& j : nlohmann::json::parse(p)) r.examples.push_back(from_wire(j, task.type));
  std::sort(r.examples.begin(), r.examples.end(),
            [](const ExampleResult& a, const ExampleResult& b) { return a.index < b.index; });
  r.n = static_cast<int64_t>(r.examples.size());
  for (auto& e : r.examples) e.category = task.examples[static_cast<std::size_t>(e.index)].category;
  if (r.n != n) throw Error("downstream eval: gathered " + std::to_string(r.n) + " of " + std::to_string(n) + " examples");
  double inv_choices = 0;
  for (const auto& e : r.examples) {
    r.acc += e.pred == e.gold ? 1.0 : 0.0;
    r.acc_sum += e.pred_sum == e.gold ? 1.0 : 0.0;
    r.truncated_examples += e.truncated > 0 ? 1 : 0;
    inv_choices += 1.0 / static_cast<double>(e.choices.size());
  }
  r.acc /= static_cast<double>(r.n);
  r.acc_sum /= static_cast<double>(r.n);
  r.random_baseline = opt.random_baseline ? *opt.random_baseline
                      : task.type == TaskType::LanguageModeling ? 0.0
                                                                : inv_choices / static_cast<double>(r.n);
  r.centered_acc = (r.acc - r.random_baseline) / (1.0 - r.random_baseline);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

TaskResult merge_categories(std::vector<TaskResult> parts, std::optional<double> given_baseline) {
  if (parts.empty()) throw Error("merge_categories: no categories");
  TaskResult r = parts[0];
  r.examples.clear();
  r.n = r.truncated_examples = 0;
  r.acc = r.acc_sum = r.seconds = 0;
  double baseline = 0;
  for (auto& p : parts) {
    r.n += p.n;
    r.truncated_examples += p.truncated_examples;
    r.seconds += p.seconds;
    r.acc += p.acc;
    r.acc_sum += p.acc_sum;
    baseline += p.random_baseline;
    for (auto& e : p.examples) r.examples.push_back(std::move(e));
  }
  const double k = static_cast<double>(parts.size());
  r.categories = static_cast<int64_t>(parts.size());
  r.acc /= k;
  r.acc_sum /= k;
  r.random_baseline = given_baseline ? *given_baseline : baseline / k;
  r.centered_acc = (r.acc - r.random_baseline) / (1.0 - r.random_baseline);
  return r;
}

nlohmann::json summary_json(const TaskResult& r) {
  nlohmann::json j = {{"task", r.label},
          {"type", task_type_name(r.type)},
          {"num_fewshot", r.num_fewshot},
          {"n", r.n},
          {"acc", r.acc},
          {"acc_sum", r.acc_sum},
          {"random_baseline", r.random_baseline},
          {"centered_acc", r.centered_acc},
          {"truncated", r.truncated_examples},
          {"seconds", r.seconds},
          {"file", r.path}};
  if (r.categories > 0) j["categories"] = r.categories;
  return j;
}

nlohmann::json example_json(const ExampleResult& e) {
  nlohmann::json cs = nlohmann::json::array();
  for (const auto& c : e.choices)
    cs.push_back({{"tokens", c.tokens},
                  {"sum_logprob", c.sum_logprob},
                  {"mean_logprob", c.mean_logprob},
                  {"greedy_match", c.greedy_match}});
  nlohmann::json j = {{"index", e.index},   {"line", e.line}, {"choices", cs}, {"pred", e.pred},
                      {"pred_sum", e.pred_sum}, {"gold", e.gold}, {"correct", e.pred == e.gold},
                      {"context_tokens", e.context_tokens}, {"truncated", e.truncated}};
  if (!e.category.empty()) j["category"] = e.category;
  return j;
}

SourceInfo describe_source(const std::string& source) {
  SourceInfo s;
  stdfs::path p(source);
  if (stdfs::is_regular_file(p)) p = p.parent_path();
  if (p.empty()) p = ".";
  if (checkpoint::is_hf_dir(p.string())) return s;
  if (stdfs::exists(p / "metadata.json")) {  // a checkpoint: RUN/checkpoints/step_N
    auto meta = nlohmann::json::parse(fs::read_file((p / "metadata.json").string()), nullptr, false);
    if (meta.is_object() && meta.contains("step") && meta["step"].is_number_integer()) s.step = meta["step"];
    stdfs::path run = stdfs::absolute(p).lexically_normal();
    if (!run.has_filename()) run = run.parent_path();  // a trailing '/'
    run = run.parent_path();
    if (run.filename() == "checkpoints" && stdfs::exists(run.parent_path() / "config.json"))
      s.run_dir = run.parent_path().string();
    return s;
  }
  // A run directory: what `openlm train` writes (an import-hf output has no metrics or checkpoints).
  if (stdfs::exists(p / "config.json") && (stdfs::exists(p / "metrics.jsonl") || stdfs::exists(p / "checkpoints"))) {
    s.run_dir = p.string();
    if (stdfs::exists(p / "model.safetensors") && stdfs::exists(p / "metrics.jsonl")) {
      std::ifstream in(p / "metrics.jsonl");
      std::string line;
      while (std::getline(in, line)) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_object() && j.contains("step") && j["step"].is_number_integer()) s.step = j["step"];
      }
    }
  }
  return s;
}

void append_results(const std::string& run_dir, const std::vector<nlohmann::json>& records) {
  const std::string path = (stdfs::path(run_dir) / "results.jsonl").string();
  std::string text;
  for (const auto& r : records) text += r.dump() + "\n";
  std::ofstream out(path, std::ios::app | std::ios::binary);
  if (!out) throw_errno("cannot open", path);
  out << text;  // one write of whole lines: a concurrent reader sees complete records
  out.flush();
  if (!out) throw_errno("cannot append to", path);
}

}  // namespace openlm::icl
