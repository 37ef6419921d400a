#include "openlm_cpp/core/dist_env.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <stdexcept>

#include "openlm_cpp/core/error.h"

namespace openlm {
namespace {

constexpr const char* kEnvFile = "<environment>";

/// A malformed host list; turned into a ConfigError naming the variable it came from.
struct NodelistError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] void list_error(const std::string& what) { throw NodelistError(what); }
std::string first_host_impl(const std::string& nodelist);

[[noreturn]] void bad(const std::string& var, const std::string& what) {
  throw ConfigError(kEnvFile, var, 0, what);
}

bool has(const EnvLookup& env, const char* name) {
  const char* v = env(name);
  return v != nullptr && *v != '\0';
}

std::string get_str(const EnvLookup& env, const char* name, const std::string& def) {
  const char* v = env(name);
  return (v && *v) ? std::string(v) : def;
}

/// Strict decimal integer in [lo, hi]; the whole value must be a number.
int parse_int(const std::string& var, const std::string& s, long lo, long hi) {
  if (s.empty()) bad(var, "is empty, expected an integer");
  errno = 0;
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str() || *end != '\0')
    bad(var, fmt::format("'{}' is not an integer", s));
  if (v < lo || v > hi) bad(var, fmt::format("{} is out of range [{}, {}]", v, lo, hi));
  return static_cast<int>(v);
}

int get_int(const EnvLookup& env, const char* name, int def, long lo, long hi) {
  const char* v = env(name);
  if (!v || !*v) return def;
  return parse_int(name, v, lo, hi);
}

constexpr long kMaxRanks = 1 << 24;

/// Slurm's SLURM_TASKS_PER_NODE: "2(x3),1" = three nodes with 2 tasks then one with 1.
int tasks_on_node(const std::string& var, const std::string& spec, int node) {
  size_t pos = 0;
  int index = 0;
  while (pos < spec.size()) {
    size_t comma = spec.find(',', pos);
    std::string item = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? spec.size() : comma + 1;
    int reps = 1;
    size_t paren = item.find("(x");
    if (paren != std::string::npos) {
      if (item.back() != ')') bad(var, fmt::format("malformed entry '{}' in '{}'", item, spec));
      reps = parse_int(var, item.substr(paren + 2, item.size() - paren - 3), 1, kMaxRanks);
      item = item.substr(0, paren);
    }
    int count = parse_int(var, item, 1, kMaxRanks);
    if (node < index + reps) return count;
    index += reps;
  }
  bad(var, fmt::format("'{}' lists {} nodes but this is node {}", spec, index, node));
}

void validate(const DistEnv& e, const char* rank_var, const char* local_var) {
  if (e.rank >= e.world_size)
    bad(rank_var, fmt::format("rank {} is not below the world size {}", e.rank, e.world_size));
  if (e.local_rank >= e.local_world_size)
    bad(local_var, fmt::format("local rank {} is not below the local world size {}", e.local_rank,
                               e.local_world_size));
  if (e.local_world_size > e.world_size)
    bad(local_var, fmt::format("local world size {} exceeds the world size {}",
                               e.local_world_size, e.world_size));
}

DistEnv from_torchrun(const EnvLookup& env) {
  DistEnv e;
  e.source = "torchrun";
  e.world_size = get_int(env, "WORLD_SIZE", 1, 1, kMaxRanks);
  e.rank = get_int(env, "RANK", 0, 0, kMaxRanks);
  e.local_rank = get_int(env, "LOCAL_RANK", e.rank, 0, kMaxRanks);
  // torchrun always sets LOCAL_WORLD_SIZE; without it assume one node.
  e.local_world_size = get_int(env, "LOCAL_WORLD_SIZE", e.world_size, 1, kMaxRanks);
  e.node_rank = get_int(env, "GROUP_RANK", e.rank / e.local_world_size, 0, kMaxRanks);
  e.master_addr = get_str(env, "MASTER_ADDR", "127.0.0.1");
  e.master_port = get_int(env, "MASTER_PORT", 29500, 1, 65535);
  e.restart_count = get_int(env, "TORCHELASTIC_RESTART_COUNT", 0, 0, kMaxRanks);
  validate(e, "RANK", "LOCAL_RANK");
  if (e.world_size > e.local_world_size && !has(env, "MASTER_ADDR"))
    bad("MASTER_ADDR", "is unset in a multi-node run (WORLD_SIZE > LOCAL_WORLD_SIZE)");
  return e;
}

DistEnv from_slurm(const EnvLookup& env) {
  DistEnv e;
  e.source = "slurm";
  e.world_size = get_int(env, "SLURM_NTASKS", 1, 1, kMaxRanks);
  e.rank = get_int(env, "SLURM_PROCID", 0, 0, kMaxRanks);
  e.local_rank = get_int(env, "SLURM_LOCALID", 0, 0, kMaxRanks);
  e.node_rank = get_int(env, "SLURM_NODEID", 0, 0, kMaxRanks);
  if (has(env, "SLURM_NTASKS_PER_NODE") &&
      std::string(env("SLURM_NTASKS_PER_NODE")).find_first_of("(,") == std::string::npos) {
    e.local_world_size = get_int(env, "SLURM_NTASKS_PER_NODE", 1, 1, kMaxRanks);
  } else if (has(env, "SLURM_TASKS_PER_NODE")) {
    e.local_world_size = tasks_on_node("SLURM_TASKS_PER_NODE", env("SLURM_TASKS_PER_NODE"), e.node_rank);
  } else {
    int nnodes = get_int(env, "SLURM_NNODES", 1, 1, kMaxRanks);
    e.local_world_size = nnodes == 1 ? e.world_size : 1;
  }
  validate(e, "SLURM_PROCID", "SLURM_LOCALID");
  e.master_port = get_int(env, "MASTER_PORT", 29500, 1, 65535);
  e.restart_count = get_int(env, "SLURM_RESTART_COUNT", 0, 0, kMaxRanks);
  if (has(env, "MASTER_ADDR")) {
    e.master_addr = env("MASTER_ADDR");
  } else if (has(env, "SLURM_JOB_NODELIST") || has(env, "SLURM_NODELIST")) {
    const char* var = has(env, "SLURM_JOB_NODELIST") ? "SLURM_JOB_NODELIST" : "SLURM_NODELIST";
    try {
      e.master_addr = first_host_impl(env(var));
    } catch (const NodelistError& err) {
      bad(var, err.what());
    }
  } else if (e.world_size > e.local_world_size) {
    bad("MASTER_ADDR", "is unset and neither SLURM_JOB_NODELIST nor SLURM_NODELIST names the hosts");
  }
  return e;
}

DistEnv from_mpirun(const EnvLookup& env) {
  DistEnv e;
  e.source = "mpirun";
  e.world_size = get_int(env, "OMPI_COMM_WORLD_SIZE", 1, 1, kMaxRanks);
  e.rank = get_int(env, "OMPI_COMM_WORLD_RANK", 0, 0, kMaxRanks);
  e.local_rank = get_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0, 0, kMaxRanks);
  e.local_world_size = get_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", e.world_size, 1, kMaxRanks);
  validate(e, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK");
  // mpirun places ranks by node in blocks by default; GROUP_RANK overrides for other mappings.
  e.node_rank = get_int(env, "GROUP_RANK", e.rank / e.local_world_size, 0, kMaxRanks);
  e.master_port = get_int(env, "MASTER_PORT", 29500, 1, 65535);
  if (has(env, "MASTER_ADDR"))
    e.master_addr = env("MASTER_ADDR");
  else if (e.world_size > e.local_world_size)
    bad("MASTER_ADDR", "is unset in a multi-node mpirun job: export MASTER_ADDR=<host of rank 0> "
                       "(mpirun -x MASTER_ADDR)");
  return e;
}

/// Parses "[01-04,07]" contents at s[pos] (just after '['); returns the ranges as (lo, hi, width).
struct Range {
  unsigned long long lo, hi;
  size_t width;  // zero-padded width (0 = none)
};

std::vector<Range> parse_brackets(const std::string& s, size_t& pos, const std::string& whole) {
  std::vector<Range> out;
  auto number = [&](size_t& p, size_t& width) {
    size_t start = p;
    while (p < s.size() && s[p] >= '0' && s[p] <= '9') ++p;
    if (p == start || p - start > 18)
      list_error( fmt::format("bad number in host list '{}'", whole));
    width = p - start;
    return std::stoull(s.substr(start, p - start));
  };
  while (true) {
    size_t w = 0, w2 = 0;
    Range r{};
    r.lo = number(pos, w);
    r.hi = r.lo;
    r.width = (w > 1 && s[pos - w] == '0') ? w : 0;
    if (pos < s.size() && s[pos] == '-') {
      ++pos;
      r.hi = number(pos, w2);
      if (r.hi < r.lo)
        list_error( fmt::format("descending range in host list '{}'", whole));
      if (w > 1 && w == w2) r.width = w;
    }
    out.push_back(r);
    if (pos >= s.size())
      list_error( fmt::format("unclosed '[' in host list '{}'", whole));
    if (s[pos] == ']') {
      ++pos;
      return out;
    }
    if (s[pos] != ',')
      list_error( fmt::format("unexpected '{}' in host list '{}'", s[pos], whole));
    ++pos;
  }
}

std::string padded(unsigned long long v, size_t width) {
  std::string d = std::to_string(v);
  if (d.size() < width) d.insert(0, width - d.size(), '0');
  return d;
}

/// Splits a host list at top-level commas (commas inside brackets belong to the ranges).
std::vector<std::string> split_items(const std::string& list) {
  std::vector<std::string> items;
  std::string cur;
  int depth = 0;
  for (char c : list) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (depth < 0 || depth > 1)
      list_error( fmt::format("unbalanced brackets in host list '{}'", list));
    if (c == ',' && depth == 0) {
      items.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (depth != 0) list_error( fmt::format("unclosed '[' in host list '{}'", list));
  items.push_back(cur);
  for (const auto& it : items)
    if (it.empty()) list_error( fmt::format("empty host name in host list '{}'", list));
  return items;
}

}  // namespace

std::string DistEnv::describe() const {
  return fmt::format("rank {}/{} (local {}/{}, node {}) via {}, master {}:{}", rank, world_size,
                     local_rank, local_world_size, node_rank, source, master_addr, master_port);
}

namespace {

std::vector<std::string> expand_nodelist_impl(const std::string& nodelist, size_t max_hosts) {
  std::vector<std::string> hosts;
  for (const std::string& item : split_items(nodelist)) {
    // Cartesian product over the item's bracket groups, left to right.
    std::vector<std::string> partial{""};
    size_t pos = 0;
    while (pos < item.size()) {
      if (item[pos] == '[') {
        ++pos;
        std::vector<Range> ranges = parse_brackets(item, pos, nodelist);
        unsigned long long n = 0;
        for (const Range& r : ranges) {
          n += r.hi - r.lo + 1;  // each term < 1e18, so checking every step avoids overflow
          if (n > max_hosts) break;
        }
        if (n > max_hosts || partial.size() * n + hosts.size() > max_hosts)
          list_error(
                            fmt::format("host list '{}' expands to more than {} hosts", nodelist, max_hosts));
        std::vector<std::string> next;
        next.reserve(partial.size() * n);
        for (const std::string& p : partial)
          for (const Range& r : ranges)
            for (unsigned long long v = r.lo; v <= r.hi; ++v) next.push_back(p + padded(v, r.width));
        partial.swap(next);
      } else if (item[pos] == ']') {
        list_error( fmt::format("unexpected ']' in host list '{}'", nodelist));
      } else {
        size_t end = item.find('[', pos);
        std::string text = item.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
        if (text.find(']') != std::string::npos)
          list_error( fmt::format("unexpected ']' in host list '{}'", nodelist));
        for (std::string& p : partial) p += text;
        pos = end == std::string::npos ? item.size() : end;
      }
    }
    hosts.insert(hosts.end(), partial.begin(), partial.end());
    if (hosts.size() > max_hosts)
      list_error(
                        fmt::format("host list '{}' expands to more than {} hosts", nodelist, max_hosts));
  }
  return hosts;
}

std::string first_host_impl(const std::string& nodelist) {
  std::vector<std::string> items = split_items(nodelist);
  const std::string& item = items.front();
  std::string host;
  size_t pos = 0;
  while (pos < item.size()) {
    if (item[pos] == '[') {
      ++pos;
      std::vector<Range> ranges = parse_brackets(item, pos, nodelist);
      host += padded(ranges.front().lo, ranges.front().width);
    } else if (item[pos] == ']') {
      list_error( fmt::format("unexpected ']' in host list '{}'", nodelist));
    } else {
      host += item[pos++];
    }
  }
  return host;
}

}  // namespace

std::vector<std::string> expand_nodelist(const std::string& nodelist, size_t max_hosts) {
  try {
    return expand_nodelist_impl(nodelist, max_hosts);
  } catch (const NodelistError& e) {
    throw ConfigError(kEnvFile, "", 0, e.what());
  }
}

std::string first_host_of_nodelist(const std::string& nodelist) {
  try {
    return first_host_impl(nodelist);
  } catch (const NodelistError& e) {
    throw ConfigError(kEnvFile, "", 0, e.what());
  }
}

DistEnv detect_dist_env(const EnvLookup& env) {
  if (has(env, "RANK") && has(env, "WORLD_SIZE")) return from_torchrun(env);
  if (has(env, "SLURM_PROCID") && has(env, "SLURM_NTASKS")) return from_slurm(env);
  if (has(env, "OMPI_COMM_WORLD_RANK") && has(env, "OMPI_COMM_WORLD_SIZE")) return from_mpirun(env);
  DistEnv e;
  e.master_port = get_int(env, "MASTER_PORT", 29500, 1, 65535);
  e.master_addr = get_str(env, "MASTER_ADDR", "127.0.0.1");
  return e;
}

DistEnv detect_dist_env() {
  return detect_dist_env([](const char* name) -> const char* { return std::getenv(name); });
}

DistEnv detect_dist_env(const std::map<std::string, std::string>& vars) {
  return detect_dist_env([&vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

}  // namespace openlm
