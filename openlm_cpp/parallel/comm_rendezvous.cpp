// Rendezvous of the c10d-backed Communicator: rank 0 hosts a TCPStore, the others reach it, and
// every rank waits for all the others, naming the ones that never arrive. Used by comm_pg.cpp only.
#include "openlm_cpp/parallel/comm_rendezvous.h"

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join
#include <netdb.h>
#include <sys/socket.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "openlm_cpp/parallel/comm.h"

namespace openlm::parallel {
namespace {

std::string cause_of(const std::exception& e) {
  if (auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

std::string join_ranks(const std::vector<int>& r) { return fmt::format("{}", fmt::join(r, ", ")); }

/// Every rank announces itself in the store and waits for all others; names the missing ones.
void await_all_ranks(c10d::Store& store, const DistEnv& env, Ms timeout) {
  store.set(fmt::format("openlm/arrived/{}", env.rank), std::vector<uint8_t>{1});
  std::vector<std::string> keys;
  for (int r = 0; r < env.world_size; ++r) keys.push_back(fmt::format("openlm/arrived/{}", r));
  try {
    store.wait(keys, timeout);
  } catch (const std::exception& e) {
    std::vector<int> missing;
    try {
      for (int r = 0; r < env.world_size; ++r)
        if (!store.check({keys[static_cast<size_t>(r)]})) missing.push_back(r);
    } catch (const std::exception&) {
      throw CommError(fmt::format("rendezvous on rank {} of {} at {}:{} failed: {} (the store on rank 0 "
                                  "went away)",
                                  env.rank, env.world_size, env.master_addr, env.master_port, cause_of(e)));
    }
    throw CommError(fmt::format("rendezvous timed out after {} s on rank {} of {} at {}:{}: rank(s) {} never "
                                "arrived (check that every rank started with the same WORLD_SIZE, "
                                "MASTER_ADDR and MASTER_PORT)",
                                timeout.count() / 1000.0, env.rank, env.world_size, env.master_addr,
                                env.master_port, missing.empty() ? std::string("?") : join_ranks(missing)));
  }
}

/// Waits until something accepts TCP connections at host:port, polling until `deadline`. Returns
/// the last error when it never does. Needed because TCPStore clients of LibTorch 2.x retry with
/// a random backoff and give up after up to ~3x their timeout; this makes "rank 0 never came"
/// an error at the timeout on every version.
std::string await_listener(const std::string& host, int port, std::chrono::steady_clock::time_point deadline) {
  std::string last = "no attempt";
  for (;;) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (rc != 0) {
      last = fmt::format("cannot resolve '{}': {}", host, gai_strerror(rc));
    } else {
      for (addrinfo* a = res; a; a = a->ai_next) {
        int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        const bool ok = ::connect(fd, a->ai_addr, a->ai_addrlen) == 0;
        if (!ok) last = fmt::format("connect: {}", std::strerror(errno));
        ::close(fd);
        if (ok) {
          ::freeaddrinfo(res);
          return "";
        }
      }
      ::freeaddrinfo(res);
    }
    if (std::chrono::steady_clock::now() >= deadline) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

c10::intrusive_ptr<c10d::Store> rendezvous_store(const DistEnv& env, Ms timeout) {
  const double timeout_s = static_cast<double>(timeout.count()) / 1000.0;
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(env.master_port);
  so.isServer = env.rank == 0;
  so.numWorkers = static_cast<size_t>(env.world_size);
  so.waitWorkers = false;  // await_all_ranks waits instead, and can name who is missing
  so.timeout = timeout;
  auto fail = [&](const std::string& why) {
    return CommError(fmt::format(
        "rendezvous: rank {} of {} could not {} TCPStore at {}:{} within {} s: {}", env.rank, env.world_size,
        env.rank == 0 ? "start the" : "reach rank 0's", env.master_addr, env.master_port, timeout_s, why));
  };
  if (env.rank != 0) {
    std::string why = await_listener(env.master_addr, env.master_port, std::chrono::steady_clock::now() + timeout);
    if (!why.empty()) throw fail(why);
  }
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    throw fail(cause_of(e));
  }
  await_all_ranks(*store, env, timeout);
  return store;
}

}  // namespace openlm::parallel
