#include "openlm_cpp/train/icl_tasks.h"

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <unordered_map>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/tokenizer/tokenizer.h"

namespace stdfs = std::filesystem;

namespace openlm::icl {
namespace {

constexpr const char* kWhitespace = " \t\n\r\v\f";

std::string rstrip(std::string s) {
  s.erase(s.find_last_not_of(kWhitespace) + 1);
  return s;
}
std::string strip(const std::string& s) {
  const auto b = s.find_first_not_of(kWhitespace);
  return b == std::string::npos ? std::string() : rstrip(s.substr(b));
}

std::optional<TaskType> parse_type(const std::string& s) {
  if (s == "multiple_choice") return TaskType::MultipleChoice;
  if (s == "schema") return TaskType::Schema;
  if (s == "language_modeling") return TaskType::LanguageModeling;
  return std::nullopt;
}

const char* required_keys(TaskType t) {
  switch (t) {
    case TaskType::MultipleChoice: return "\"query\", \"choices\", \"gold\"";
    case TaskType::Schema: return "\"context_options\", \"continuation\", \"gold\"";
    case TaskType::LanguageModeling: return "\"context\", \"continuation\"";
  }
  return "";
}

/// Reads key `k` of record `j` as a string (stripped); `where` is "FILE:LINE".
std::string get_string(const nlohmann::json& j, const char* k, const std::string& where, TaskType t) {
  if (!j.contains(k))
    throw DataError(where + ": no \"" + k + "\" (a " + task_type_name(t) + " record has " + required_keys(t) + ")");
  if (!j[k].is_string()) throw DataError(where + ": \"" + k + "\" must be a string");
  return strip(j[k].get<std::string>());
}

std::vector<std::string> get_strings(const nlohmann::json& j, const char* k, const std::string& where, TaskType t) {
  if (!j.contains(k))
    throw DataError(where + ": no \"" + k + "\" (a " + task_type_name(t) + " record has " + required_keys(t) + ")");
  if (!j[k].is_array()) throw DataError(where + ": \"" + k + "\" must be a list of strings");
  if (j[k].empty()) throw DataError(where + ": \"" + k + "\" is empty");
  std::vector<std::string> out;
  for (std::size_t c = 0; c < j[k].size(); ++c) {
    if (!j[k][c].is_string()) throw DataError(where + ": \"" + k + "\"[" + std::to_string(c) + "] is not a string");
    out.push_back(strip(j[k][c].get<std::string>()));
  }
  return out;
}

int64_t get_gold(const nlohmann::json& j, const std::string& where, TaskType t, std::size_t n, const char* of) {
  if (!j.contains("gold"))
    throw DataError(where + ": no \"gold\" (a " + task_type_name(t) + " record has " + required_keys(t) + ")");
  if (!j["gold"].is_number_integer()) throw DataError(where + ": \"gold\" must be an integer");
  const int64_t g = j["gold"].get<int64_t>();
  if (g < 0 || g >= static_cast<int64_t>(n))
    throw DataError(where + ": \"gold\" " + std::to_string(g) + " is out of range: the record has " +
                    std::to_string(n) + " " + of);
  return g;
}

}  // namespace

std::string task_type_name(TaskType t) {
  switch (t) {
    case TaskType::MultipleChoice: return "multiple_choice";
    case TaskType::Schema: return "schema";
    case TaskType::LanguageModeling: return "language_modeling";
  }
  return "?";
}

int64_t Example::num_choices() const {
  return static_cast<int64_t>(std::max(contexts.size(), continuations.size()));
}

TaskFile read_task_file(const std::string& path, std::optional<TaskType> expect) {
  std::ifstream in(path);
  if (!in) throw_errno("cannot open task file", path);
  TaskFile f;
  f.path = path;
  std::optional<TaskType> type = expect;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(kWhitespace) == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(n);
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) throw DataError(where + ": not a JSON object");
    if (!type) {  // from the first record's keys
      if (j.contains("choices")) type = TaskType::MultipleChoice;
      else if (j.contains("context_options")) type = TaskType::Schema;
      else if (j.contains("context") && j.contains("continuation")) type = TaskType::LanguageModeling;
      else
        throw DataError(where + ": cannot tell the task type: a record needs \"query\"/\"choices\"/\"gold\" "
                        "(multiple_choice), \"context_options\"/\"continuation\"/\"gold\" (schema) or "
                        "\"context\"/\"continuation\" (language_modeling)");
    }
    Example e;
    e.line = n;
    switch (*type) {
      case TaskType::MultipleChoice:
        e.contexts = {get_string(j, "query", where, *type)};
        e.continuations = get_strings(j, "choices", where, *type);
        e.gold = get_gold(j, where, *type, e.continuations.size(), "choices");
        break;
      case TaskType::Schema:
        e.contexts = get_strings(j, "context_options", where, *type);
        e.continuations = {get_string(j, "continuation", where, *type)};
        e.gold = get_gold(j, where, *type, e.contexts.size(), "context options");
        break;
      case TaskType::LanguageModeling:
        e.contexts = {get_string(j, "context", where, *type)};
        e.continuations = {get_string(j, "continuation", where, *type)};
        break;
    }
    if (j.contains("category") && j["category"].is_string()) e.category = j["category"].get<std::string>();
    for (std::size_t c = 0; c < e.continuations.size(); ++c)
      if (e.continuations[c].empty())  // nothing to score: no log-likelihood, no mean
        throw DataError(where + ": " +
                        (*type == TaskType::MultipleChoice ? "choice " + std::to_string(c) : std::string("continuation")) +
                        " is empty (after stripping whitespace)");
    f.examples.push_back(std::move(e));
  }
  if (in.bad()) throw_errno("cannot read task file", path);
  if (f.examples.empty()) throw DataError(path + ": no task records");
  f.type = *type;
  return f;
}

std::vector<TaskFile> split_by_category(const TaskFile& f) {
  std::vector<TaskFile> out;
  std::unordered_map<std::string, std::size_t> at;
  for (const auto& e : f.examples) {
    if (e.category.empty())
      throw DataError(f.path + ":" + std::to_string(e.line) + ": no \"category\" (the suite sets has_categories)");
    auto [it, fresh] = at.emplace(e.category, out.size());
    if (fresh) out.push_back(TaskFile{f.path, f.type, {}});
    out[it->second].examples.push_back(e);
  }
  return out;
}

std::vector<TaskSpec> read_suite(const std::string& path, const std::string& data_root) {
  if (!stdfs::is_regular_file(path)) throw ConfigError(path, "", 0, "no such suite file");
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw ConfigError(path, "", e.mark.line + 1, std::string("not valid YAML: ") + e.msg);
  }
  YAML::Node list = root.IsMap() && root["icl_tasks"] ? root["icl_tasks"] : root;
  if (!list.IsSequence() || list.size() == 0)
    throw ConfigError(path, "icl_tasks", list.Mark().line + 1, "expected a non-empty list of tasks under icl_tasks:");
  // Keys llm-foundry defines that do not change what is scored here.
  static const std::set<std::string> kIgnored = {"metric_names", "batch_size", "pass_at_k",
                                                 "generations_per_sample", "do_normalization", "cot_delimiter",
                                                 "early_stopping_criteria", "generation_kwargs", "max_seq_len"};
  std::vector<TaskSpec> out;
  for (std::size_t t = 0; t < list.size(); ++t) {
    const YAML::Node& n = list[t];
    const std::string at = "icl_tasks[" + std::to_string(t) + "]";
    if (!n.IsMap()) throw ConfigError(path, at, n.Mark().line + 1, "a task must be a map of keys");
    TaskSpec s;
    for (const auto& kv : n) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      const int line = v.Mark().line + 1;
      const std::string k = at + "." + key;
      auto scalar = [&] {
        if (!v.IsScalar()) throw ConfigError(path, k, line, "expected a single value");
        return v.as<std::string>();
      };
      auto integer = [&](const YAML::Node& x) {
        try {
          const int64_t i = x.as<int64_t>();
          if (i < 0) throw ConfigError(path, k, line, "must be >= 0");
          return i;
        } catch (const YAML::Exception&) {
          throw ConfigError(path, k, line, "expected a non-negative integer");
        }
      };
      if (key == "label") s.label = scalar();
      else if (key == "dataset_uri" || key == "path") s.path = scalar();
      else if (key == "icl_task_type") {
        s.type = parse_type(scalar());
        if (!s.type)
          throw ConfigError(path, k, line, "'" + v.as<std::string>() + "' is not supported: multiple_choice, schema "
                                           "and language_modeling are (remove generation/code tasks from the suite)");
      } else if (key == "num_fewshot") {
        s.num_fewshot.clear();
        if (v.IsSequence()) {
          for (const auto& x : v) s.num_fewshot.push_back(integer(x));
          if (s.num_fewshot.empty()) throw ConfigError(path, k, line, "an empty list");
        } else {
          s.num_fewshot.push_back(integer(v));
        }
      } else if (key == "continuation_delimiter") s.continuation_delimiter = scalar();
      else if (key == "example_delimiter") s.example_delimiter = scalar();
      else if (key == "prompt_string") s.prompt_string = scalar();
      else if (key == "fewshot_random_seed") s.seed = static_cast<uint64_t>(integer(v));
      else if (key == "has_categories") {
        try {
          s.has_categories = v.as<bool>();
        } catch (const YAML::Exception&) {
          throw ConfigError(path, k, line, "expected true or false");
        }
      }
      else if (key == "random_baseline") {
        double r = 0;
        try {
          r = v.as<double>();
        } catch (const YAML::Exception&) {
          throw ConfigError(path, k, line, "expected a number");
        }
        if (!(r >= 0 && r < 1))
          throw ConfigError(path, k, line, "must be in [0, 1) (a fraction, not a percentage); got " + scalar());
        s.random_baseline = r;
      } else if (kIgnored.count(key)) {
        log::warn("{}:{}: {} is not used here; ignored (docs/EVALUATION.md)", path, line, k);
      } else {
        throw ConfigError(path, k, line, "unknown key (label, dataset_uri, icl_task_type, num_fewshot, "
                                         "continuation_delimiter, example_delimiter, prompt_string, "
                                         "fewshot_random_seed, random_baseline, has_categories)");
      }
    }
    if (s.path.empty()) throw ConfigError(path, at + ".dataset_uri", n.Mark().line + 1, "missing");
    if (stdfs::path(s.path).is_relative()) {
      if (!data_root.empty()) {
        s.path = (stdfs::path(data_root) / s.path).string();
      } else if (!stdfs::exists(s.path)) {
        stdfs::path beside = stdfs::path(path).parent_path() / s.path;
        if (stdfs::exists(beside)) s.path = beside.string();
      }
    }
    if (s.label.empty()) s.label = stdfs::path(s.path).stem().string();
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<int64_t> fewshot_indices(int64_t n, int64_t k, int64_t i, uint64_t seed) {
  const int64_t m = n - 1;  // candidates: every index but i
  k = std::min(k, m);
  if (k <= 0) return {};
  uint64_t state = seed ^ (0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(i + 1)) ^ (static_cast<uint64_t>(n) << 32);
  auto next = [&state] {  // splitmix64: the same numbers on every platform and standard library
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  };
  // Partial Fisher-Yates over the virtual array 0..m-1 (slot v stands for v < i ? v : v + 1), with
  // only the touched slots stored: O(k) for any file size.
  std::unordered_map<int64_t, int64_t> moved;
  auto slot = [&moved](int64_t v) {
    auto it = moved.find(v);
    return it == moved.end() ? v : it->second;
  };
  std::vector<int64_t> out;
  for (int64_t t = 0; t < k; ++t) {
    const int64_t r = t + static_cast<int64_t>(next() % static_cast<uint64_t>(m - t));
    const int64_t vr = slot(r), vt = slot(t);
    moved[r] = vt;
    moved[t] = vr;
    out.push_back(vr < i ? vr : vr + 1);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool needs_prefix_space(const Tokenizer& tok) { return tok.encode(" a").size() == 1; }

namespace {
std::vector<int64_t> encode(const Tokenizer& tok, const std::string& s) {
  if (s.empty()) return {};
  auto ids = tok.encode(s);
  return std::vector<int64_t>(ids.begin(), ids.end());
}
/// The text a few-shot example shows: its (gold) context and its answer.
std::string shown_context(const Example& e) { return e.contexts[e.contexts.size() == 1 ? 0 : e.gold]; }
std::string shown_answer(const Example& e) { return e.continuations[e.continuations.size() == 1 ? 0 : e.gold]; }
}  // namespace

PreparedExample prepare_example(const TaskFile& task, int64_t i, const PromptOptions& opt, const Tokenizer& tok,
                                bool prefix_space, int64_t max_len) {
  const Example& e = task.examples.at(static_cast<std::size_t>(i));
  const std::string where = task.path + ":" + std::to_string(e.line);
  // The prefix: prompt string, then each few-shot example as delimiter + context + continuation
  // delimiter + answer (the delimiter only once some text precedes).
  std::string prefix = opt.prompt_string;
  for (int64_t j : fewshot_indices(static_cast<int64_t>(task.examples.size()), opt.num_fewshot, i, opt.seed)) {
    const Example& f = task.examples[static_cast<std::size_t>(j)];
    prefix += (prefix.empty() ? "" : opt.example_delimiter) + shown_context(f) + opt.continuation_delimiter +
              shown_answer(f);
  }
  const std::vector<int64_t> prefix_ids = encode(tok, prefix);
  const std::string lead = prefix.empty() ? "" : opt.example_delimiter;
  std::vector<std::string> contexts;  // one per request
  if (task.type == TaskType::Schema) {
    // llm-foundry's schema contexts: the delimiter's trailing whitespace dropped, and no
    // continuation delimiter at all without a preceding text.
    for (const auto& c : e.contexts)
      contexts.push_back(prefix.empty() ? c : lead + c + rstrip(opt.continuation_delimiter));
  } else {
    contexts.push_back(rstrip(lead + e.contexts[0] + opt.continuation_delimiter));
  }
  std::vector<std::string> conts;
  for (const auto& c : e.continuations) conts.push_back(prefix_space && c.rfind(' ', 0) != 0 ? " " + c : c);

  PreparedExample out;
  const std::size_t n = std::max(contexts.size(), conts.size());
  for (std::size_t r = 0; r < n; ++r) {
    Request q;
    q.context = prefix_ids;
    auto c = encode(tok, contexts[contexts.size() == 1 ? 0 : r]);
    q.context.insert(q.context.end(), c.begin(), c.end());
    q.continuation = encode(tok, conts[conts.size() == 1 ? 0 : r]);
    const int64_t nc = static_cast<int64_t>(q.continuation.size());
    if (nc >= max_len)
      throw DataError(where + ": a continuation of " + std::to_string(nc) + " tokens leaves no room for context in " +
                      std::to_string(max_len) + " tokens (the model's seq_len)");
    if (q.context.empty())
      throw DataError(where + ": the context is empty: nothing predicts the first continuation token");
    const int64_t over = static_cast<int64_t>(q.context.size()) + nc - max_len;
    if (over > 0) {
      q.context.erase(q.context.begin(), q.context.begin() + over);
      out.truncated = std::max(out.truncated, over);
    }
    out.requests.push_back(std::move(q));
  }
  return out;
}

}  // namespace openlm::icl
