// prepare-data: read -> tokenise (T threads) -> pack -> shuffle -> shards. Three kinds of threads:
// one reader (inputs in order, bad lines, upsampling), T tokenisers (batches of documents), and the
// calling thread, which packs the tokenised batches strictly in batch order. Every decision that
// shapes the output (which documents, their order, the cut into sequences, the permutation) is
// taken by the reader or the packer from the inputs and the seed alone, so the thread count and
// the timing never change a byte.
#include "data_loader/prepare_data.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "data_loader/prepare_detail.h"
#include "data_loader/seq_shuffle.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/tokenizer/tokenizer.h"

namespace openlm::data {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kBatchBytes = size_t(256) << 10;  // text per tokeniser work item (small: early overlap)
constexpr size_t kBatchDocs = 4096;

struct Batch {
  int64_t id = 0;
  std::vector<std::string> docs;
  std::vector<std::vector<int32_t>> ids;
};

struct SourceStats {
  int64_t files = 0, documents = 0, documents_written = 0, bad_lines = 0, blank_lines = 0;
};

/// The id written after the tail when padding: --pad-id, else the tokenizer's own padding token,
/// else its end-of-text id.
int64_t choose_pad_id(const Tokenizer& tok, int64_t requested) {
  if (requested >= 0) return requested;
  for (const char* t : {"<|padding|>", "<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>"})
    if (auto id = tok.token_to_id(t); id && tok.is_special(*id)) return *id;
  return tok.eos_id();
}

/// Uniform in [0, 1) from the seed, the source and the document's ordinal in the source.
double keep_draw(uint64_t seed, size_t source, int64_t doc) {
  uint64_t h = shuffle_key(shuffle_key(seed, 0xA5A5000000000000ull + source), static_cast<uint64_t>(doc));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

/// Producer/consumer state shared by the reader, the tokenisers and the packer.
struct Pipeline {
  std::mutex m;
  std::condition_variable cv_work, cv_done, cv_space;
  std::deque<std::unique_ptr<Batch>> todo;
  std::map<int64_t, std::unique_ptr<Batch>> done;
  int64_t submitted = 0, consumed = 0;
  size_t capacity = 4;
  bool reader_finished = false, abort = false;
  std::exception_ptr error;

  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> g(m);
    if (!error) error = e;
    abort = true;
    cv_work.notify_all();
    cv_done.notify_all();
    cv_space.notify_all();
  }
  /// Reader: hand a batch to the tokenisers, waiting while `capacity` batches are in flight (this
  /// bounds memory whatever the input size). False when the run is aborting.
  bool submit(std::unique_ptr<Batch> b) {
    std::unique_lock<std::mutex> g(m);
    cv_space.wait(g, [&] { return abort || submitted - consumed < static_cast<int64_t>(capacity); });
    if (abort) return false;
    b->id = submitted++;
    todo.push_back(std::move(b));
    cv_work.notify_one();
    return true;
  }
  void tokenise(const Tokenizer& tok) {
    try {
      while (true) {
        std::unique_ptr<Batch> b;
        {
          std::unique_lock<std::mutex> g(m);
          cv_work.wait(g, [&] { return abort || !todo.empty() || reader_finished; });
          if (abort || todo.empty()) return;
          b = std::move(todo.front());
          todo.pop_front();
        }
        b->ids.resize(b->docs.size());
        for (size_t i = 0; i < b->docs.size(); ++i) b->ids[i] = tok.encode(b->docs[i]);
        b->docs = {};
        std::lock_guard<std::mutex> g(m);
        done[b->id] = std::move(b);
        cv_done.notify_all();
      }
    } catch (...) {
      fail(std::current_exception());
    }
  }
};

}  // namespace

PrepareSource parse_input_spec(const std::string& spec) {
  PrepareSource s{spec, 1.0};
  auto colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size()) return s;
  const std::string w = spec.substr(colon + 1);
  if (w.find_first_not_of("0123456789.eE+-") != std::string::npos) return s;  // a path with a colon
  char* end = nullptr;
  double v = std::strtod(w.c_str(), &end);
  if (end != w.c_str() + w.size()) return s;
  if (!std::isfinite(v) || v <= 0)
    throw ConfigError("--input", "", 0, "'" + spec + "': the weight after ':' must be a number > 0");
  return {spec.substr(0, colon), v};
}

PrepareResult prepare_data(const PrepareOptions& o) {
  using openlm::ConfigError;
  if (o.inputs.empty()) throw ConfigError("--input", "", 0, "no input given");
  if (o.seq_len <= 0) throw ConfigError("--seq-len", "", 0, "must be positive");
  if (o.threads < 1) throw ConfigError("--threads", "", 0, "must be at least 1");
  if (o.shard_sequences <= 0) throw ConfigError("--shard-sequences", "", 0, "must be positive");
  if (!(o.memory_budget_mb > 0) || o.memory_budget_mb > 1e9)
    throw ConfigError("--memory-budget-mb", "", 0, "must be a positive number of MiB");
  if (o.text_field.empty()) throw ConfigError("--text-field", "", 0, "must not be empty");
  const int64_t L = o.seq_len + 1;

  std::vector<std::vector<detail::InputFile>> files;
  uint64_t bytes_total = 0;
  int passes = 0;
  for (const auto& s : o.inputs) {
    if (!(s.weight > 0) || !std::isfinite(s.weight))
      throw ConfigError("--input", "", 0, "'" + s.path + "': the weight must be a number > 0");
    files.push_back(detail::list_source_files(s.path));
    detail::refuse_output_inside(s.path, o.output_dir);
    const int reads = static_cast<int>(std::ceil(s.weight));
    passes = std::max(passes, reads);
    for (auto& f : files.back()) bytes_total += f.size * static_cast<uint64_t>(reads);
  }
  auto tok = load_tokenizer(o.tokenizer_type, o.tokenizer_path);
  const int64_t eot = tok->eos_id();
  if (eot < 0)
    throw ConfigError("--tokenizer", "", 0, "'" + o.tokenizer_path + "' has no end-of-text token to join documents with");
  const int64_t pad = choose_pad_id(*tok, o.pad_id);
  if (pad < 0 || pad >= tok->vocab_size())
    throw ConfigError("--pad-id", "", 0, std::to_string(pad) + " is outside the vocabulary [0, " +
                                             std::to_string(tok->vocab_size()) + ")");

  detail::OutputDir out(o.output_dir);
  SequenceShuffler shuffler(L, o.seed, static_cast<uint64_t>(o.memory_budget_mb * 1048576.0), out.tmp());
  std::vector<SourceStats> src(o.inputs.size());
  std::map<std::string, int64_t> bad_counts;
  for (BadLine b : {BadLine::InvalidUtf8, BadLine::NotJson, BadLine::NotObject, BadLine::MissingField,
                    BadLine::EmptyDocument})
    bad_counts[bad_line_name(b)] = 0;
  std::atomic<uint64_t> bytes_done{0};
  std::atomic<int64_t> bad_seen{0};

  Pipeline pl;
  pl.capacity = static_cast<size_t>(2 * o.threads + 2);
  // Reader: pass r reads every source whose weight needs an r-th copy, in command-line order; a
  // source with weight w gives floor(w) full passes and, in pass floor(w), each document with
  // probability frac(w) (keep_draw). Bad lines are judged (and counted) in the first pass only.
  auto reader = [&] {
    try {
      auto batch = std::make_unique<Batch>();
      size_t batch_bytes = 0;
      for (int r = 0; r < passes; ++r) {
        for (size_t s = 0; s < o.inputs.size(); ++s) {
          const double w = o.inputs[s].weight;
          if (r >= static_cast<int>(std::ceil(w))) continue;
          const bool all = r < static_cast<int>(std::floor(w));
          const double frac = w - std::floor(w);
          int64_t ordinal = 0;
          for (const auto& f : files[s]) {
            if (r == 0) ++src[s].files;
            DocReader rd(decompress_stream(open_file_stream(f.path, &bytes_done), f.kind.compression, f.path), f.path,
                         f.kind.format, o.text_field);
            DocRecord rec;
            while (rd.next(rec)) {
              if (rec.bad != BadLine::None) {
                if (r > 0) continue;
                const std::string where = f.path + ":" + std::to_string(rec.line) + ": ";
                if (!o.skip_bad_lines)
                  throw DataError(where + rec.why + " (--skip-bad-lines skips and counts such lines)");
                ++bad_counts[bad_line_name(rec.bad)];
                ++src[s].bad_lines;
                int64_t n = ++bad_seen;
                if (n <= 10 || (n & (n - 1)) == 0) log::warn("prepare-data: skipped bad line {}{}", where, rec.why);
                continue;
              }
              if (r == 0) ++src[s].documents;
              if (!all && keep_draw(o.seed, s, ordinal) >= frac) {
                ++ordinal;
                continue;
              }
              ++ordinal;
              ++src[s].documents_written;
              batch_bytes += rec.text.size();
              batch->docs.push_back(std::move(rec.text));
              if (batch_bytes >= kBatchBytes || batch->docs.size() >= kBatchDocs) {
                if (!pl.submit(std::move(batch))) return;
                batch = std::make_unique<Batch>();
                batch_bytes = 0;
              }
            }
            if (r == 0) src[s].blank_lines += rd.blank_lines();
          }
        }
      }
      if (!batch->docs.empty() && !pl.submit(std::move(batch))) return;
      std::lock_guard<std::mutex> g(pl.m);
      pl.reader_finished = true;
      pl.cv_work.notify_all();
      pl.cv_done.notify_all();
    } catch (...) {
      pl.fail(std::current_exception());
    }
  };

  const auto t0 = Clock::now();
  auto last_report = t0;
  PrepareProgress prog;
  auto report = [&](bool force) {
    auto now = Clock::now();
    if (!o.progress || (!force && now - last_report < std::chrono::milliseconds(500))) return;
    last_report = now;
    prog.bytes_done = bytes_done.load();
    prog.bytes_total = bytes_total;
    prog.seconds = std::chrono::duration<double>(now - t0).count();
    o.progress(prog);
  };

  // Packer (this thread): documents in batch order, each followed by eot, cut every L tokens.
  std::vector<uint32_t> cur(static_cast<size_t>(L));
  size_t fill = 0;
  int64_t documents = 0, tokens = 0;
  auto push = [&](int64_t id) {
    cur[fill++] = static_cast<uint32_t>(id);
    if (fill == cur.size()) {
      shuffler.add(cur.data());
      fill = 0;
    }
  };
  std::thread read_thread(reader);
  std::vector<std::thread> workers;
  for (int t = 0; t < o.threads; ++t) workers.emplace_back([&] { pl.tokenise(*tok); });
  try {
    prog.phase = "tokenize";
    while (true) {
      std::unique_ptr<Batch> b;
      {
        std::unique_lock<std::mutex> g(pl.m);
        pl.cv_done.wait_for(g, std::chrono::milliseconds(250), [&] {
          return pl.abort || pl.done.count(pl.consumed) || (pl.reader_finished && pl.consumed == pl.submitted);
        });
        if (pl.abort) break;
        auto it = pl.done.find(pl.consumed);
        if (it != pl.done.end()) {
          b = std::move(it->second);
          pl.done.erase(it);
          ++pl.consumed;
          pl.cv_space.notify_one();
        } else if (pl.reader_finished && pl.consumed == pl.submitted) {
          break;
        }
      }
      if (b) {
        for (auto& ids : b->ids) {
          for (int32_t id : ids) push(id);
          push(eot);
          tokens += static_cast<int64_t>(ids.size()) + 1;
          ++documents;
        }
        prog.documents = documents;
        prog.tokens = tokens;
      }
      report(false);
    }
  } catch (...) {
    pl.fail(std::current_exception());
  }
  read_thread.join();
  for (auto& w : workers) w.join();
  if (pl.error) std::rethrow_exception(pl.error);

  // The tail: fewer than L tokens after the last full sequence.
  int64_t padded = 0, dropped = 0;
  if (fill > 0 && o.no_pad) {
    dropped = static_cast<int64_t>(fill);
  } else if (fill > 0) {
    padded = L - static_cast<int64_t>(fill);
    while (fill > 0) push(pad);
  }
  if (shuffler.count() == 0)
    throw DataError("prepare-data: the inputs hold " + std::to_string(tokens) + " tokens, fewer than one sequence of " +
                    std::to_string(L) + " (--no-pad drops the incomplete tail)");

  PrepareResult res;
  res.shuffle_runs = shuffler.runs();
  detail::ShardSink sink(out.partial(), o.format, o.shard_sequences, L, tok->vocab_size(), tok->id(), o.threads);
  prog.phase = "write";
  prog.sequences_total = shuffler.count();
  shuffler.finish([&](const uint32_t* seq) {
    sink.add(seq);
    ++prog.sequences_written;
    report(false);
  });
  auto entries = sink.finish();
  res.shuffle_runs = std::max(res.shuffle_runs, shuffler.runs());
  report(true);

  nlohmann::json sources = nlohmann::json::array();
  int64_t blank = 0, bad_total = 0;
  for (size_t s = 0; s < src.size(); ++s) {
    sources.push_back({{"input", o.inputs[s].path},
                       {"weight", o.inputs[s].weight},
                       {"files", src[s].files},
                       {"documents", src[s].documents},
                       {"documents_written", src[s].documents_written},
                       {"bad_lines", src[s].bad_lines},
                       {"blank_lines", src[s].blank_lines}});
    blank += src[s].blank_lines;
    bad_total += src[s].bad_lines;
  }
  // Only what the data depends on: no thread count, memory budget, paths of temporaries or times,
  // so the file is byte-identical across those settings too.
  res.stats = {{"documents", documents},
               {"tokens", tokens},
               {"sequences", shuffler.count()},
               {"shards", static_cast<int64_t>(entries.size())},
               {"seq_len", o.seq_len},
               {"tokens_per_sequence", L},
               {"padded_tokens", padded},
               {"dropped_tail_tokens", dropped},
               {"pad", !o.no_pad},
               {"pad_id", pad},
               {"eot_id", eot},
               {"format", format_name(o.format)},
               {"seed", o.seed},
               {"shard_sequences", o.shard_sequences},
               {"text_field", o.text_field},
               {"tokenizer", tok->id()},
               {"vocab_size", tok->vocab_size()},
               {"skip_bad_lines", o.skip_bad_lines},
               {"bad_lines", bad_counts},
               {"bad_lines_total", bad_total},
               {"blank_lines", blank},
               {"sources", sources},
               {"manifest", "manifest.jsonl"}};
  out.commit(entries, res.stats.dump(2) + "\n");
  res.documents = documents;
  res.tokens = tokens;
  res.sequences = shuffler.count();
  res.shards = static_cast<int64_t>(entries.size());
  return res;
}

}  // namespace openlm::data
