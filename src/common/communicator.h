// The processes of one run and the collectives between them, on PyTorch's c10d: rendezvous
// through a TCPStore that rank 0 runs, collectives through ProcessGroupGloo on the CPU
// (docs/distributed.md). A one-process Communicator does no communication at all: every
// collective returns its input.
//
// Every collective is called by every rank in the same order (c10d's rule). When one fails,
// because a rank died, hung past the timeout or closed its connections, the error names the
// ranks that stopped: each rank bumps its own counter in the store a few times a second
// (a heartbeat), and a failed collective looks for the counters that no longer move.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/launch_settings.h"

namespace kvtune {

class Communicator {
 public:
  // One process: rank 0 of 1.
  Communicator();
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  // The rendezvous: rank 0 runs the store at MASTER_ADDR:MASTER_PORT and waits for the others,
  // who connect to it, each within settings.timeout. Errors name what went wrong and the fix: an
  // unreachable master, a port already in use, ranks that never joined. Throws when this build
  // has no Gloo (then only one process runs).
  static std::shared_ptr<Communicator> connect(const LaunchSettings& settings);

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank 0: the one that writes checkpoints, metrics, reports and banks.
  bool is_writer() const { return rank_ == 0; }

  // Sum over ranks, in place, of a contiguous CPU tensor (float, double or int64). `tag` names
  // the traffic in bytes_sent() ("dense", "sparse", ...).
  void allreduce_sum(torch::Tensor& t, const std::string& tag);
  // Every rank's `rows` [n_r, ...] (n_r may differ, the other dims may not), laid end to end in
  // rank order; `counts`, when given, receives each rank's n_r.
  torch::Tensor allgather_rows(const torch::Tensor& rows, const std::string& tag,
                               std::vector<int64_t>* counts = nullptr);
  // All-to-all along dim 0: `send` holds send_counts[r] rows for rank r, in rank order. Returns
  // what every rank sent to this one, in rank order; recv_counts receives how many rows each did.
  torch::Tensor alltoall_rows(const torch::Tensor& send, const std::vector<int64_t>& send_counts,
                              std::vector<int64_t>* recv_counts, const std::string& tag);
  // Root's tensor into every rank's (same shape and dtype), in place.
  void broadcast(torch::Tensor& t, int root, const std::string& tag);
  void barrier();

  // Payload bytes this rank has handed to collectives, by tag: what it contributes to each
  // (its tensor for an all-reduce, its rows for an all-gather, the rows it sends to other ranks
  // for an all-to-all). The bytes on the wire depend on the algorithm (a ring all-reduce sends
  // 2 (W - 1) / W of its payload); docs/distributed.md works both out.
  const std::map<std::string, int64_t>& bytes_sent() const { return bytes_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0;
  int size_ = 1;
  std::map<std::string, int64_t> bytes_;
  [[noreturn]] void fail(const std::string& what, const std::exception& e);
};

// The process-wide communicator of this run: one process until set_world is called (the CLI
// does, from the launch settings).
Communicator& world();
void set_world(std::shared_ptr<Communicator> c);

// Whether this build can run several processes (it found Gloo's headers).
bool distributed_available();

}  // namespace kvtune
