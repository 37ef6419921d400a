#pragma once
// Internal to parallel/comm_pg.cpp (includes c10d): the TCPStore rendezvous.
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

#include "openlm_cpp/core/dist_env.h"

namespace openlm::parallel {

using Ms = std::chrono::milliseconds;

/// Rank 0 starts a TCPStore at env.master_addr:master_port, the other ranks reach it; then every
/// rank announces itself and waits for all W ranks. Each step fails with a CommError at `timeout`
/// (on every LibTorch version: a non-zero rank polls the port itself before connecting, since
/// 2.x's TCPStore client retries with backoff well past its timeout), naming the missing ranks.
c10::intrusive_ptr<c10d::Store> rendezvous_store(const DistEnv& env, Ms timeout);

}  // namespace openlm::parallel
