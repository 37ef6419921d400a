#pragma once
/// Instruction data for supervised fine-tuning: a JSONL file of {prompt, response} records. Each
/// record becomes one sequence of seq_len+1 tokens, encode(prompt) ++ encode(response) ++ [eos],
/// truncated on the right and padded with eos; its loss mask is 1 on the response tokens and the
/// closing eos, 0 on prompt tokens and padding. Records are ordered like the pretraining loader:
/// a stream of global batches over per-epoch shuffles (seed + epoch), rank r of W taking the
/// contiguous slice [r*G/W, (r+1)*G/W) of each global batch. The whole file is read and tokenised
/// at construction (no background threads). docs/DATA_FORMATS.md describes the format.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data_loader/batch_source.h"

namespace openlm::data {

/// Text -> token ids (the run's tokenizer; tests pass a trivial one). Kept as a function so this
/// library does not link the tokenizer.
using TextEncoder = std::function<std::vector<int32_t>(const std::string&)>;

/// Reads opt.cfg.instructions (relative paths: as given, else under opt.base_dir) with the fields
/// opt.cfg.prompt_field / opt.cfg.response_field. Throws DataError naming the file and line on a
/// bad record (bad JSON, not an object, missing field, field not a string, token id outside
/// opt.vocab_size) and when no usable record is left; ConfigError on bad options.
std::unique_ptr<BatchSource> make_instruction_source(const LoaderOptions& opt, const TextEncoder& encode,
                                                     int32_t eos_id);

}  // namespace openlm::data
