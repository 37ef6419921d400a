#pragma once
// Internal to tokenizer/bpe_tokenizer.cpp: the pre-tokenizer's regular expressions, PCRE2 (UTF +
// UCP, JIT) made to match what `tokenizers`' Oniguruma matches, with its find_iter semantics.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/tokenizer/unicode_text.h"

namespace openlm::bpe {

/// Rewrites an Oniguruma pattern for PCRE2 so that both match the same text (see bpe_regex.cpp);
/// throws std::invalid_argument naming an escape whose meaning would differ.
std::string onig_compatible(const std::string& pattern);

/// Per-thread PCRE2 match data, match context and JIT stack.
struct MatchState {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mctx = nullptr;
  pcre2_jit_stack* stack = nullptr;
  MatchState();
  ~MatchState();
  static MatchState& local();
};

class Regex {
 public:
  /// `literal`: the pattern is a plain string. Throws std::invalid_argument saying why when the
  /// pattern cannot be matched the way Oniguruma would (unsupported escape, PCRE2 compile error).
  Regex(const std::string& pattern, bool literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  /// Calls f(start, end) for each match in s, like onig's find_iter (an empty match right after
  /// the previous match is skipped by advancing one character).
  template <class F>
  void find_iter(std::string_view s, F&& f) const {
    auto& st = MatchState::local();
    std::size_t last_end = 0;
    bool have_last = false;
    std::size_t last_match_end = 0;
    const auto* subj = reinterpret_cast<PCRE2_SPTR>(s.data());
    while (last_end <= s.size()) {
      int rc = jit_ ? pcre2_jit_match(code_, subj, s.size(), last_end, 0, st.md, st.mctx) : PCRE2_ERROR_JIT_BADOPTION;
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_JIT_BADOPTION)
        rc = pcre2_match(code_, subj, s.size(), last_end, PCRE2_NO_UTF_CHECK, st.md, st.mctx);
      if (rc == PCRE2_ERROR_NOMATCH) return;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        throw Error(std::string("tokenizer regex match failed: ") + reinterpret_cast<char*>(msg));
      }
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.md);
      std::size_t ms = ov[0], me = ov[1];
      if (ms == me && have_last && last_match_end == me) {
        if (last_end >= s.size()) return;
        std::size_t i = last_end;
        unicode::next_code_point(s, i);
        last_end = i;
        continue;
      }
      last_end = me;
      have_last = true;
      last_match_end = me;
      f(ms, me);
    }
  }

 private:
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

}  // namespace openlm::bpe
