// Hugging Face tokenizer.json byte-level BPE (GPT-2 / GPT-NeoX family), id-for-id equal to the
// `tokenizers` package: added tokens -> normalizer -> pre-tokenizer (Split / ByteLevel) -> BPE
// merges by rank -> ids; decode through the ByteLevel decoder. docs/TOKENIZERS.md lists what is
// supported; every other part of a tokenizer.json is refused by name.
// This half: encoding and decoding; bpe_tokenizer_json.cpp reads the file (bpe_tokenizer_impl.h).
#include <cstdio>
#include <cstring>
#include <queue>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/tokenizer/bpe_tokenizer_impl.h"

namespace openlm::bpe_impl {
namespace {

/// NormalizedString::split: the (offsets, is_match) list of a pattern, then the behaviour.
void split_piece(std::string_view s, const Regex& re, Behavior behavior, bool invert,
                 std::vector<std::string_view>& out) {
  struct M { std::size_t a, b; bool m; };
  thread_local std::vector<M> ms;
  ms.clear();
  std::size_t prev = 0;
  re.find_iter(s, [&](std::size_t a, std::size_t b) {
    if (prev != a) ms.push_back({prev, a, false});
    ms.push_back({a, b, true});
    prev = b;
  });
  if (prev != s.size()) ms.push_back({prev, s.size(), false});
  if (invert)
    for (auto& m : ms) m.m = !m.m;
  auto emit = [&](std::size_t a, std::size_t b) {
    if (b > a) out.push_back(s.substr(a, b - a));
  };
  switch (behavior) {
    case Behavior::Isolated:
      for (auto& m : ms) emit(m.a, m.b);
      break;
    case Behavior::Removed:
      for (auto& m : ms)
        if (!m.m) emit(m.a, m.b);
      break;
    case Behavior::Contiguous:
    case Behavior::MergedWithPrevious: {
      thread_local std::vector<std::pair<std::size_t, std::size_t>> acc;
      acc.clear();
      bool prev_match = false;
      for (auto& m : ms) {
        bool merge = behavior == Behavior::Contiguous ? m.m == prev_match : (m.m && !prev_match);
        if (merge && !acc.empty()) acc.back().second = m.b;
        else acc.push_back({m.a, m.b});
        prev_match = m.m;
      }
      for (auto& [a, b] : acc) emit(a, b);
      break;
    }
    case Behavior::MergedWithNext: {
      thread_local std::vector<std::pair<std::size_t, std::size_t>> acc;
      acc.clear();
      bool prev_match = false;
      for (auto it = ms.rbegin(); it != ms.rend(); ++it) {
        if (it->m && !prev_match && !acc.empty()) acc.back().first = it->a;
        else acc.push_back({it->a, it->b});
        prev_match = it->m;
      }
      for (auto it = acc.rbegin(); it != acc.rend(); ++it) emit(it->first, it->second);
      break;
    }
  }
}

inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x243F6A8885A308D3ULL ^ (s.size() * 0x9E3779B97F4A7C15ULL);
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 31;
  }
  uint64_t w = 0;
  std::memcpy(&w, s.data() + i, s.size() - i);
  h = (h ^ w) * 0x94D049BB133111EBULL;
  h ^= h >> 29;
  return h;
}

/// Per-thread, per-tokenizer word cache: a direct-mapped table of byte pieces -> ids.
struct WordCache {
  static constexpr std::size_t kSlots = 1 << 15;
  struct Slot {
    uint64_t hash = 0;
    std::string key;
    std::vector<int32_t> ids;
  };
  std::vector<Slot> slots{kSlots};
};

WordCache& word_cache(uint64_t serial) {
  thread_local std::vector<std::pair<uint64_t, std::unique_ptr<WordCache>>> caches;
  for (auto& [s, c] : caches)
    if (s == serial) return *c;
  if (caches.size() >= 4) caches.erase(caches.begin());
  caches.emplace_back(serial, std::make_unique<WordCache>());
  return *caches.back().second;
}

}  // namespace

void BpeTokenizer::encode_valid(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  // 1. Non-normalized added tokens on the raw text; 2. normalize the rest; 3. normalized added
  // tokens on the normalized text; 4. pre-tokenize and BPE what is left.
  split_added(text, raw_matcher_, out, [&](std::string_view seg) {
    if (normalizers_.empty()) {
      split_added(seg, normalized_matcher_, out, [&](std::string_view s) { pre_tokenize_and_bpe(s, out); });
    } else {
      std::string norm = normalize_text(seg);
      split_added(norm, normalized_matcher_, out, [&](std::string_view s) { pre_tokenize_and_bpe(s, out); });
    }
  });
}

/// AddedVocabulary::find_matches: matches with the single_word / lstrip / rstrip flags; text
/// between matches goes to `rest`.
template <class Rest>
void BpeTokenizer::split_added(std::string_view s, const AddedMatcher& m, std::vector<int32_t>& out, Rest&& rest) const {
  if (s.empty()) return;
  if (m.empty()) {
    rest(s);
    return;
  }
  std::size_t start_offset = 0;
  m.find_iter(s, [&](std::size_t start, std::size_t stop, int32_t id) {
    const AddedToken& t = added_by_id_.at(id);
    if (t.single_word) {
      bool start_space = start == 0 || !unicode::is_word_char(unicode::last_code_point(s.substr(0, start)));
      bool stop_space = true;
      if (stop != s.size()) {
        std::size_t i = stop;
        stop_space = !unicode::is_word_char(unicode::next_code_point(s, i));
      }
      if (!stop_space || !start_space) return;
    }
    if (t.lstrip) {
      std::size_t ns = start;
      while (ns > 0) {
        std::size_t j = ns - 1;
        while (j > 0 && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
        std::size_t k = j;
        if (!unicode::is_white_space(unicode::next_code_point(s, k))) break;
        ns = j;
      }
      start = std::max(ns, start_offset);
    }
    if (t.rstrip) {
      std::size_t k = stop;
      while (k < s.size()) {
        std::size_t k2 = k;
        if (!unicode::is_white_space(unicode::next_code_point(s, k2))) break;
        k = k2;
      }
      stop = k;
    }
    if (start_offset < start) rest(s.substr(start_offset, start - start_offset));
    out.push_back(id);
    start_offset = stop;
  });
  if (start_offset < s.size()) rest(s.substr(start_offset));
}

void BpeTokenizer::pre_tokenize_and_bpe(std::string_view seg, std::vector<int32_t>& out) const {
  if (seg.empty()) return;
  // Fast path: one ByteLevel step (GPT-2 / GPT-NeoX): regex matches go straight to BPE.
  if (steps_.size() == 1) {
    const Step& st = steps_[0];
    std::string prefixed;
    if (st.add_prefix_space && seg[0] != ' ') {
      prefixed.reserve(seg.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(seg);
      seg = prefixed;
    }
    if (!st.use_regex) return bpe(seg, out);
    std::size_t prev = 0;
    st.regex->find_iter(seg, [&](std::size_t a, std::size_t b) {
      if (prev != a) bpe(seg.substr(prev, a - prev), out);
      if (b > a) bpe(seg.substr(a, b - a), out);
      prev = b;
    });
    if (prev != seg.size()) bpe(seg.substr(prev), out);
    return;
  }
  std::vector<std::string_view> pieces{seg}, next;
  std::vector<std::unique_ptr<std::string>> storage;
  for (const Step& st : steps_) {
    next.clear();
    for (auto p : pieces) {
      if (st.byte_level) {
        if (st.add_prefix_space && p[0] != ' ') {
          storage.push_back(std::make_unique<std::string>(" " + std::string(p)));
          p = *storage.back();
        }
        if (st.use_regex) split_piece(p, *st.regex, Behavior::Isolated, false, next);
        else next.push_back(p);
      } else {
        split_piece(p, *st.regex, st.behavior, st.invert, next);
      }
    }
    pieces.swap(next);
  }
  for (auto p : pieces) bpe(p, out);
}

/// BPE of one pre-token (its bytes), through the word cache.
void BpeTokenizer::bpe(std::string_view w, std::vector<int32_t>& out) const {
  if (w.empty()) return;
  if (w.size() == 1 && byte_id_[static_cast<unsigned char>(w[0])] >= 0 && !ignore_merges_) {
    out.push_back(byte_id_[static_cast<unsigned char>(w[0])]);
    return;
  }
  if (w.size() >= 256) return merge_word(w, out);
  WordCache& cache = word_cache(serial_);
  uint64_t h = hash_bytes(w);
  auto& slot = cache.slots[h & (WordCache::kSlots - 1)];
  if (slot.hash == h && slot.key == w) {
    out.insert(out.end(), slot.ids.begin(), slot.ids.end());
    return;
  }
  std::size_t before = out.size();
  merge_word(w, out);
  slot.hash = h;
  slot.key.assign(w.data(), w.size());
  slot.ids.assign(out.begin() + static_cast<std::ptrdiff_t>(before), out.end());
}

/// BPE::merge_word + Word::merge_all: initial symbols (unk / byte_fallback as tokenizers), then
/// the lowest-rank pair first, the leftmost among equal ranks.
void BpeTokenizer::merge_word(std::string_view w, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    if (auto it = vocab_bytes_.find(std::string(w)); it != vocab_bytes_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  thread_local std::vector<int32_t> sym;
  sym.clear();
  int32_t unk_pending = -1;  // fused unk run
  for (unsigned char b : w) {
    int32_t id = byte_id_[b];
    if (id >= 0) {
      if (unk_pending >= 0) { sym.push_back(unk_pending); unk_pending = -1; }
      sym.push_back(id);
      continue;
    }
    if (byte_fallback_) {
      // The byte-level character's UTF-8 bytes, as <0xXX> tokens (all of them, or none).
      std::string ch;
      unicode::append_utf8(ch, alphabet().byte_to_cp[b]);
      std::vector<int32_t> fb;
      for (unsigned char x : ch) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", x);
        auto it = vocab_.find(name);
        if (it == vocab_.end()) { fb.clear(); break; }
        fb.push_back(it->second);
      }
      if (!fb.empty()) {
        // tokenizers adds these without flushing a pending unk first.
        sym.insert(sym.end(), fb.begin(), fb.end());
        continue;
      }
    }
    if (unk_token_) {
      if (unk_id_ < 0)
        throw DataError(origin_ + ": model.unk_token '" + *unk_token_ + "' is not in model.vocab");
      if (unk_pending >= 0 && !fuse_unk_) sym.push_back(unk_pending);
      unk_pending = unk_id_;
    }
    // no unk_token: the character is dropped, as tokenizers does
  }
  if (unk_pending >= 0) sym.push_back(unk_pending);
  if (sym.size() > 1) {
    if (sym.size() <= 48) merge_small(sym);
    else merge_queue(sym);
  }
  out.insert(out.end(), sym.begin(), sym.end());
}

void BpeTokenizer::merge_small(std::vector<int32_t>& sym) const {
  thread_local std::vector<uint64_t> pr;  // per adjacent pair: rank << 32 | merged id, or kNone
  std::size_t n = sym.size();
  pr.resize(n);
  for (std::size_t i = 0; i + 1 < n; ++i) pr[i] = merges_.find(sym[i], sym[i + 1]);
  while (n > 1) {
    std::size_t best = n;
    uint64_t bv = MergeTable::kNone;
    for (std::size_t i = 0; i + 1 < n; ++i) {
      uint64_t v = pr[i];
      if (v == MergeTable::kNone) continue;
      if (best == n || (v >> 32) < (bv >> 32)) {  // strict: the leftmost of equal ranks
        bv = v;
        best = i;
      }
    }
    if (best == n) break;
    sym[best] = static_cast<int32_t>(uint32_t(bv));
    sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    std::copy(pr.begin() + static_cast<std::ptrdiff_t>(best) + 1, pr.begin() + static_cast<std::ptrdiff_t>(n),
              pr.begin() + static_cast<std::ptrdiff_t>(best));
    --n;
    if (best > 0) pr[best - 1] = merges_.find(sym[best - 1], sym[best]);
    if (best + 1 < n) pr[best] = merges_.find(sym[best], sym[best + 1]);
  }
}

/// Word::merge_all for long words: a priority queue of (rank, position) over a linked list.
void BpeTokenizer::merge_queue(std::vector<int32_t>& sym) const {
  struct S { int32_t c; int32_t prev, next; bool alive; };
  std::vector<S> s(sym.size());
  for (std::size_t i = 0; i < sym.size(); ++i)
    s[i] = {sym[i], int32_t(i) - 1, i + 1 < sym.size() ? int32_t(i + 1) : -1, true};
  struct M { uint32_t rank; int32_t pos; int32_t new_id; };
  auto cmp = [](const M& a, const M& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
  std::priority_queue<M, std::vector<M>, decltype(cmp)> q(cmp);
  for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
    uint64_t v = merges_.find(sym[i], sym[i + 1]);
    if (v != MergeTable::kNone) q.push({uint32_t(v >> 32), int32_t(i), int32_t(uint32_t(v))});
  }
  while (!q.empty()) {
    M top = q.top();
    q.pop();
    S& cur = s[top.pos];
    if (!cur.alive || cur.next < 0) continue;
    S& right = s[cur.next];
    uint64_t v = merges_.find(cur.c, right.c);
    if (v == MergeTable::kNone || int32_t(uint32_t(v)) != top.new_id) continue;
    cur.c = top.new_id;
    right.alive = false;
    int32_t rn = right.next;
    cur.next = rn;
    if (rn >= 0) s[rn].prev = top.pos;
    if (cur.prev >= 0) {
      uint64_t pv = merges_.find(s[cur.prev].c, cur.c);
      if (pv != MergeTable::kNone) q.push({uint32_t(pv >> 32), cur.prev, int32_t(uint32_t(pv))});
    }
    if (rn >= 0) {
      uint64_t nv = merges_.find(cur.c, s[rn].c);
      if (nv != MergeTable::kNone) q.push({uint32_t(nv >> 32), top.pos, int32_t(uint32_t(nv))});
    }
  }
  sym.clear();
  for (auto& x : s)
    if (x.alive) sym.push_back(x.c);
}

}  // namespace openlm::bpe_impl
