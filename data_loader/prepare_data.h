#pragma once
/// `openlm prepare-data`: DCLM's tokenize-shuffle in one step (docs/DATA_FORMATS.md, "prepare-data").
/// Text / JSONL(.gz/.zst) inputs, or folders of them, with upsampling weights -> documents
/// tokenised on T threads, each followed by the end-of-text id, concatenated in input order, cut
/// into sequences of seq_len + 1 tokens, globally shuffled with a seed (external merge sort beyond
/// a memory budget) and written as native or OpenLM tar shards with manifest.jsonl and the stats
/// file prepare_data.json. The output depends only on the inputs and the options that change the
/// data: not on the thread count, the memory budget or where a previous run was interrupted.
/// Library openlm_data_prep (needs the tokenizer, no LibTorch).
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data_loader/manifest.h"

namespace openlm::data {

/// One `--input PATH[:WEIGHT]`: a file or a folder (every input file below it, sorted by path).
struct PrepareSource {
  std::string path;
  double weight = 1.0;  ///< > 0: floor(w) full copies of each document plus one more with probability frac(w)
};

/// "PATH" or "PATH:WEIGHT" (the text after the last ':' when it is a number; "a:b.jsonl:1" is the
/// file "a:b.jsonl" with weight 1). Throws ConfigError for a weight <= 0 or not finite.
PrepareSource parse_input_spec(const std::string& spec);

struct PrepareProgress {
  const char* phase = "";          ///< "tokenize" or "write"
  uint64_t bytes_done = 0, bytes_total = 0;  ///< input bytes as stored (compressed), all passes
  int64_t documents = 0, tokens = 0;
  int64_t sequences_written = 0, sequences_total = 0;
  double seconds = 0;
};

struct PrepareOptions {
  std::vector<PrepareSource> inputs;
  std::string tokenizer_path;
  std::string tokenizer_type = "auto";  ///< auto | bpe | sentencepiece (load_tokenizer)
  std::string output_dir;
  ShardFormat format = ShardFormat::Native;
  int64_t seq_len = 0;            ///< model seq_len: stored sequences hold seq_len + 1 tokens
  uint64_t seed = 0;
  int threads = 1;                ///< tokenizer threads (the output does not depend on it)
  std::string text_field = "text";
  bool no_pad = false;            ///< drop the incomplete last sequence instead of padding it
  int64_t pad_id = -1;            ///< -1: the tokenizer's padding token if it has one, else its eos id
  bool skip_bad_lines = false;    ///< count and skip bad lines instead of failing at the first
  int64_t shard_sequences = 8192; ///< sequences per shard (the last shard may hold fewer)
  double memory_budget_mb = 1024;  ///< MiB of buffered sequences before the shuffle spills sorted runs to disk
  /// Called from the calling thread about twice a second (may be empty).
  std::function<void(const PrepareProgress&)> progress;
};

struct PrepareResult {
  nlohmann::json stats;  ///< what DIR/prepare_data.json holds
  int64_t documents = 0, tokens = 0, sequences = 0, shards = 0;
  int64_t shuffle_runs = 0;  ///< temporary run files the external shuffle wrote (0: in memory)
};

/// Runs the whole preparation. Throws ConfigError (options, tokenizer), DataError ("FILE:LINE: ..."
/// for bad input, unless skip_bad_lines) or IoError. Writes only under output_dir: work happens in
/// output_dir/.partial-<pid>/, and manifest.jsonl appears last, so a directory with a manifest.jsonl
/// holds a complete output. output_dir must be missing, empty, or hold an earlier prepare-data
/// output (replaced; stale .partial-* folders of interrupted runs are removed).
PrepareResult prepare_data(const PrepareOptions& opt);

}  // namespace openlm::data
