#include "openlm_cpp/model/model_stats.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>

#include "openlm_cpp/core/error.h"

namespace openlm {

int64_t norm_params(const std::string& t, int64_t n) {
  if (t == "default_layer_norm" || t == "lp_layer_norm") return 2 * n;  // gain + bias
  if (t == "no_wb_layer_norm") return 0;
  return n;  // gain only: gain_only_*, rms_norm
}

namespace {

std::string shape_of(const ModelConfig& m) {
  return "dim " + std::to_string(m.dim) + ", n_layers " + std::to_string(m.n_layers) + ", n_heads " +
         std::to_string(m.n_heads) + ", vocab_size " + std::to_string(m.vocab_size) +
         (m.ffn_hidden > 0 ? ", ffn_hidden " + std::to_string(m.ffn_hidden) : std::string());
}

/// int64 arithmetic that reports an overflow as a ConfigError on the key responsible.
struct Checked {
  const ModelConfig& m;
  [[noreturn]] void overflow(const char* key) const {
    throw ConfigError("", key, 0, "the parameter count of this model does not fit in 64 bits (" + shape_of(m) + ")");
  }
  int64_t mul(int64_t a, int64_t b, const char* key) const {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) overflow(key);
    return r;
  }
  int64_t add(int64_t a, int64_t b, const char* key) const {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) overflow(key);
    return r;
  }
};

}  // namespace

ParamCounts count_params(const ModelConfig& m) {
  const Checked k{m};
  // hidden_dim() computes 8 * dim; attention widths are at most dim.
  if (m.dim > std::numeric_limits<int64_t>::max() / 16) k.overflow("dim");
  const int64_t d = m.dim, A = m.attn_width(), Akv = m.kv_width(), h = m.hidden_dim();
  const char* hkey = m.ffn_hidden > 0 ? "ffn_hidden" : "dim";
  int64_t layer = k.add(k.mul(A + 2 * Akv, d, "dim"), k.mul(A, d, "dim"), "dim");  // in_proj, out_proj
  const int64_t ffn = k.mul(k.mul(h, d, hkey), m.ffn_type == "gelu" ? 2 : 3, hkey);  // w12 + w3 (or 2 gelu linears)
  layer = k.add(layer, ffn, hkey);
  layer = k.add(layer, 2 * norm_params(m.norm_type, d), "dim");  // attention_norm, ffn_norm
  if (m.qk_norm) layer = k.add(layer, norm_params(m.norm_type, A) + norm_params(m.norm_type, Akv), "dim");
  ParamCounts c;
  c.per_layer = layer;
  c.embedding = k.mul(m.vocab_size, d, "vocab_size");
  const int64_t layers = k.mul(m.n_layers, layer, "n_layers");
  int64_t total = k.add(c.embedding, m.weight_tying ? 0 : c.embedding, "vocab_size");
  total = k.add(total, layers, "n_layers");
  total = k.add(total, norm_params(m.norm_type, d) * (m.post_embed_norm ? 2 : 1), "dim");
  if (total > kMaxParams) {
    const char* key = layer > kMaxParams / 4 ? (ffn > layer / 2 ? hkey : "dim")
                      : layers >= c.embedding ? "n_layers"
                                              : "vocab_size";
    throw ConfigError("", key, 0, "the model would have " + std::to_string(total) + " parameters (" + shape_of(m) +
                                      "), more than the limit of 10^15");
  }
  c.total = total;
  c.non_embedding = c.total - c.embedding;
  return c;
}

ParamCounts check_model_size(const ModelConfig& m, const std::string& file) {
  try {
    return count_params(m);
  } catch (const ConfigError& e) {
    if (!e.file().empty() || file.empty()) throw;
    // the message after "<config>: key 'k': "
    std::string what = e.what();
    const std::string prefix = "<config>: key '" + e.key() + "': ";
    if (what.rfind(prefix, 0) == 0) what = what.substr(prefix.size());
    throw ConfigError(file, e.key(), 0, what);
  }
}

double flops_per_token(const ModelConfig& m) {
  return 6.0 * static_cast<double>(count_params(m).non_embedding) +
         12.0 * static_cast<double>(m.n_layers) * static_cast<double>(m.attn_width()) *
             static_cast<double>(m.seq_len);
}

MemoryEstimate estimate_memory(const ModelConfig& m, const std::string& precision, int64_t micro_batch,
                               bool ckpt, int64_t world, const std::string& strategy, int64_t group) {
  const bool pure = precision == "pure_bf16";
  const bool amp = precision == "amp_bfloat16" || precision == "amp_bf16";
  const double pbytes = pure ? 2 : 4;   // stored parameter / gradient bytes
  const double cbytes = (pure || amp) ? 2 : 4;  // activation bytes
  double shards = static_cast<double>(world);
  if (strategy == "hybrid_shard") shards = static_cast<double>(group > 0 ? std::min(group, world) : world);
  if (strategy == "no_shard") shards = 1;
  MemoryEstimate e;
  const ParamCounts counts = count_params(m);
  const double P = static_cast<double>(counts.total);
  // FULL_SHARD keeps only the shard plus one gathered unit (~ the largest block) at a time.
  const double unit = static_cast<double>(std::max(counts.per_layer, counts.embedding));
  e.params = strategy == "no_shard" ? P * pbytes
             : strategy == "shard_grad_op" ? P * pbytes / shards + P * cbytes
                                           : P * pbytes / shards + 2 * unit * cbytes;
  e.grads = P * pbytes / shards;
  e.optimizer = 2 * P * pbytes / shards;
  const double tok = static_cast<double>(micro_batch) * static_cast<double>(m.seq_len);
  const double d = m.dim, A = m.attn_width(), h = m.hidden_dim();
  // Saved per token per layer: fp32 residuals (2d), norm outputs (2d), qkv + rotated q,k + attn out
  // (6A), ffn w12 out, silu, product (4h) in the compute dtype.
  const double full_layer = 4 * 2 * d + cbytes * (2 * d + 6 * A + 4 * h);
  const double L = static_cast<double>(m.n_layers);
  e.activations = ckpt ? tok * (L * 4 * d + full_layer) : tok * L * full_layer;
  e.logits = tok * static_cast<double>(m.vocab_size) * 4 * 2;  // fp32 logits and their gradient
  return e;
}

namespace {

/// A byte count with an optional K/M/G/T (or KiB/MiB/GiB/TiB, KB/MB/GB/TB: all binary) suffix; -1 if malformed.
double parse_bytes(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) return -1;
  char* end = nullptr;
  const std::string num = s.substr(0, i);
  double v = std::strtod(num.c_str(), &end);
  if (end != num.c_str() + num.size()) return -1;
  std::string suf = s.substr(i);
  for (auto& ch : suf) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (suf.size() > 1 && suf.back() == 'B') suf.pop_back();
  if (suf.size() > 1 && suf.back() == 'I') suf.pop_back();
  const std::string units = "KMGT";
  if (suf.empty()) return v;
  auto u = units.find(suf);
  if (suf.size() != 1 || u == std::string::npos) return -1;
  for (size_t k = 0; k <= u; ++k) v *= 1024;
  return v;
}

/// The first line of a file as a byte count (cgroup limit files); 0 when absent or "max".
double read_limit_file(const char* path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line) || line.rfind("max", 0) == 0) return 0;
  double v = parse_bytes(line);
  return v > 0 ? v : 0;
}

}  // namespace

std::string human_bytes(double bytes) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int i = 0;
  while (bytes >= 1024 && i < 6) {
    bytes /= 1024;
    ++i;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %s", bytes, u[i]);
  return buf;
}

MemoryLimit host_memory_limit() {
  MemoryLimit l;
  if (const char* env = std::getenv("OPENLM_MEMORY_LIMIT"); env && *env) {
    double v = parse_bytes(env);
    if (v < 0)
      throw ConfigError("OPENLM_MEMORY_LIMIT", "", 0,
                        std::string("expected a byte count (e.g. 17179869184 or 16GiB; 0 = no check), got '") + env + "'");
    l.bytes = v;
    l.what = "OPENLM_MEMORY_LIMIT";
    return l;
  }
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) {
    l.bytes = static_cast<double>(pages) * static_cast<double>(page);
    l.what = "physical memory";
  }
  // A container's limit (cgroup v2, else v1; v1 reports a huge number when unlimited).
  double cg = read_limit_file("/sys/fs/cgroup/memory.max");
  if (cg <= 0) cg = read_limit_file("/sys/fs/cgroup/memory/memory.limit_in_bytes");
  if (cg > 0 && (l.bytes <= 0 || cg < l.bytes)) {
    l.bytes = cg;
    l.what = "cgroup memory limit";
  }
  return l;
}

void require_memory(const ModelConfig& m, double bytes, const std::string& purpose, const std::string& file,
                    const MemoryLimit& limit) {
  if (!(limit.bytes > 0) || bytes <= limit.bytes) return;
  const int64_t params = count_params(m).total;
  char count[32];
  std::snprintf(count, sizeof count, "%.3g", static_cast<double>(params));
  throw ConfigError(file, "", 0,
                    "the model (" + shape_of(m) + ": " + count + " parameters) needs an estimated " + human_bytes(bytes) +
                        " for " + purpose + ", more than the " + human_bytes(limit.bytes) + " of " + limit.what +
                        (limit.what == "OPENLM_MEMORY_LIMIT" ? std::string()
                                                             : std::string(" on this machine")) +
                        "; refused before allocating (OPENLM_MEMORY_LIMIT=<bytes> overrides the limit, 0 disables "
                        "the check)");
}

void check_weights_fit(const ModelConfig& m, const std::string& file) {
  const ParamCounts c = check_model_size(m, file);
  require_memory(m, 4.0 * static_cast<double>(c.total), "its fp32 weights", file, host_memory_limit());
}

}  // namespace openlm
