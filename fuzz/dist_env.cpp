// Fuzzes the Slurm host-list expansion and rank detection: any input must either parse or raise an
// openlm::Error; a successful expansion must agree with first_host_of_nodelist.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "openlm_cpp/core/dist_env.h"
#include "openlm_cpp/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  // "<host list>\n<tasks per node>\n<node id>"
  std::string list = in.substr(0, in.find('\n'));
  std::string rest = in.size() > list.size() ? in.substr(list.size() + 1) : std::string();
  std::string tasks = rest.substr(0, rest.find('\n'));
  std::string node = rest.size() > tasks.size() ? rest.substr(tasks.size() + 1) : std::string("0");

  bool expanded = false;
  std::string first_expanded;
  try {
    auto hosts = openlm::expand_nodelist(list, 4096);
    if (hosts.empty()) std::abort();
    expanded = true;
    first_expanded = hosts.front();
  } catch (const openlm::Error&) {
  }
  try {
    std::string first = openlm::first_host_of_nodelist(list);
    if (expanded && first != first_expanded) std::abort();
  } catch (const openlm::Error&) {
    if (expanded) std::abort();  // what expands must also have a first host
  }
  try {
    openlm::DistEnv e = openlm::detect_dist_env(std::map<std::string, std::string>{
        {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_NODEID", node},
        {"SLURM_TASKS_PER_NODE", tasks}, {"SLURM_JOB_NODELIST", list}});
    if (e.rank >= e.world_size || e.local_rank >= e.local_world_size) std::abort();
  } catch (const openlm::Error&) {
  }
  return 0;
}
