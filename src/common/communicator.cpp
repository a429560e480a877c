#include "common/communicator.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "common/check.h"

#if defined(KVTUNE_WITH_GLOO)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace kvtune {

namespace {

std::shared_ptr<Communicator>& world_slot() {
  static std::shared_ptr<Communicator> w = std::make_shared<Communicator>();
  return w;
}

std::string beat_key(int rank) {
  return "kvtune/heartbeat/" + std::to_string(rank);
}

// Set by a rank whose collective failed, before it looks for the culprit: a rank that noticed
// the failure and exits is not one that caused it.
std::string noticed_key(int rank) {
  return "kvtune/noticed/" + std::to_string(rank);
}

// The first rank to name the stopped ranks writes them here. Ranks still blocked in a
// collective (waiting on a rank that itself failed) read it from their heartbeat thread and
// stop with the same message, instead of waiting for the timeout or finding the store gone.
constexpr const char* kVerdictKey = "kvtune/stopped_ranks";

std::string stopped_message(const std::string& ranks) {
  return "rank(s) " + ranks + " stopped (died, were killed, or failed; their own output says why)";
}

}  // namespace

Communicator& world() {
  return *world_slot();
}

void set_world(std::shared_ptr<Communicator> c) {
  KVT_CHECK(c != nullptr, "set_world: null communicator");
  world_slot() = std::move(c);
}

#if defined(KVTUNE_WITH_GLOO)

bool distributed_available() {
  return true;
}

struct Communicator::Impl {
  LaunchSettings settings;
  c10::intrusive_ptr<c10d::TCPStore> store;       // the collectives' store (rendezvous)
  c10::intrusive_ptr<c10d::TCPStore> beat_store;  // the heartbeat thread's own connection
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  std::thread beat;
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::atomic<bool> noticed{false};  // this rank's own collective failed: it reports itself

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    cv.notify_all();
    if (beat.joinable()) beat.join();
  }

  void start_heartbeat() {
    beat = std::thread([this] {
      const auto key = beat_key(settings.rank);
      std::unique_lock<std::mutex> lock(mu);
      while (!stop) {
        lock.unlock();
        try {
          beat_store->add(key, 1);
          if (!noticed && beat_store->check({kVerdictKey})) {
            const auto v = beat_store->get(kVerdictKey);
            std::fprintf(stderr, "kvtune: error: rank %d: the run cannot go on: %s\n",
                         settings.rank, std::string(v.begin(), v.end()).c_str());
            std::fflush(stderr);
            _exit(1);  // blocked in a collective that cannot finish; outputs are atomic
          }
        } catch (...) {
          return;  // the store is gone (rank 0 exited): nothing left to report to
        }
        lock.lock();
        cv.wait_for(lock, std::chrono::milliseconds(200), [this] { return stop; });
      }
    });
  }

  // The ranks whose heartbeat stopped, found by reading every counter twice, a second apart.
  // An empty string when the store itself cannot be read.
  std::string stopped_ranks() {
    try {
      auto reader = c10::make_intrusive<c10d::TCPStore>(
          settings.master_addr,
          c10d::TCPStoreOptions{static_cast<std::uint16_t>(settings.master_port), false,
                                c10::nullopt, false, std::chrono::seconds(5)});
      reader->add(noticed_key(settings.rank), 1);
      if (reader->check({kVerdictKey})) {
        const auto v = reader->get(kVerdictKey);
        return std::string(v.begin(), v.end());
      }
      std::vector<int64_t> first(settings.world_size);
      for (int r = 0; r < settings.world_size; ++r) first[r] = reader->add(beat_key(r), 0);
      std::this_thread::sleep_for(std::chrono::milliseconds(1200));
      std::string out;
      for (int r = 0; r < settings.world_size; ++r) {
        if (r == settings.rank || reader->add(noticed_key(r), 0) > 0) continue;
        if (reader->add(beat_key(r), 0) == first[r]) {
          out += (out.empty() ? "" : ", ") + std::to_string(r);
        }
      }
      std::string verdict =
          out.empty() ? "no rank's heartbeat stopped (one may be hung, or slower than the timeout)"
                      : stopped_message(out);
      verdict += ", as rank " + std::to_string(settings.rank) + " found";
      reader->compareSet(kVerdictKey, {}, std::vector<uint8_t>(verdict.begin(), verdict.end()));
      const auto v = reader->get(kVerdictKey);  // the first rank's verdict wins
      // Rank 0 runs the store: it stays up a little longer, so that the others can read it.
      if (settings.rank == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2500));
      return std::string(v.begin(), v.end());
    } catch (...) {
      return "";
    }
  }
};

Communicator::Communicator() = default;
Communicator::~Communicator() = default;

std::shared_ptr<Communicator> Communicator::connect(const LaunchSettings& s) {
  auto c = std::make_shared<Communicator>();
  if (!s.distributed()) return c;
  auto impl = std::make_unique<Impl>();
  impl->settings = s;
  const auto where = s.master_addr + ":" + std::to_string(s.master_port);
  const long timeout_s = static_cast<long>(s.timeout.count() / 1000);
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(s.master_port);
  o.isServer = s.rank == 0;
  o.numWorkers = s.world_size;
  o.waitWorkers = true;
  o.timeout = s.timeout;
  try {
    impl->store = c10::make_intrusive<c10d::TCPStore>(s.master_addr, o);
  } catch (const std::exception& e) {
    const std::string m = e.what();
    if (s.rank == 0 &&
        (m.find("in use") != std::string::npos || m.find("EADDRINUSE") != std::string::npos ||
         m.find("failed to listen") != std::string::npos || m.find("bind") != std::string::npos)) {
      KVT_THROW("rank 0 cannot run the rendezvous store on ", where,
                ": the port is in use or the address is not this machine's. Pick a free ",
                "MASTER_PORT, and a MASTER_ADDR of the machine rank 0 runs on (",
                m.substr(0, m.find('\n')), ")");
    }
    if (s.rank == 0) {
      KVT_THROW("rank 0: not every rank joined the rendezvous on ", where, " within ", timeout_s,
                " s (WORLD_SIZE=", s.world_size, "): start all ", s.world_size,
                " ranks with the same MASTER_ADDR and MASTER_PORT, or raise --dist-timeout (",
                m.substr(0, m.find('\n')), ")");
    }
    KVT_THROW("rank ", s.rank, " cannot reach the rendezvous store at ", where, " within ",
              timeout_s, " s: start rank 0 first, and check MASTER_ADDR and MASTER_PORT (",
              m.substr(0, m.find('\n')), ")");
  }
  try {
    o.isServer = false;
    o.waitWorkers = false;
    o.numWorkers = c10::nullopt;
    impl->beat_store = c10::make_intrusive<c10d::TCPStore>(s.master_addr, o);
    auto options = c10d::ProcessGroupGloo::Options::create(s.timeout);
    const bool loopback = s.master_addr == "localhost" || s.master_addr.rfind("127.", 0) == 0;
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (loopback) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    options->threads = 1;
    impl->group =
        c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, s.rank, s.world_size, options);
  } catch (const std::exception& e) {
    const std::string m = e.what();
    KVT_THROW("rank ", s.rank, ": the process group on ", where, " did not form within ", timeout_s,
              " s: ", m.substr(0, m.find('\n')));
  }
  c->impl_ = std::move(impl);
  c->rank_ = s.rank;
  c->size_ = s.world_size;
  c->impl_->start_heartbeat();
  return c;
}

void Communicator::fail(const std::string& what, const std::exception& e) {
  const std::string m = e.what();
  impl_->noticed = true;
  const std::string stopped = impl_->stopped_ranks();
  const long timeout_s = static_cast<long>(impl_->settings.timeout.count() / 1000);
  if (stopped.empty()) {
    KVT_THROW("rank ", rank_, ": ", what, " failed: rank 0 is gone (it runs the rendezvous ",
              "store, which no longer answers). Its own output says why (",
              m.substr(0, m.find('\n')), ")");
  }
  KVT_THROW("rank ", rank_, ": ", what, " failed: ", stopped, "; the timeout is ", timeout_s,
            " s (", m.substr(0, m.find('\n')), ")");
}

namespace {

void check_cpu_contiguous(const torch::Tensor& t, const char* what) {
  KVT_CHECK(t.defined() && t.device().is_cpu() && t.is_contiguous() && !t.is_sparse(), what,
            ": needs a dense contiguous CPU tensor");
}

}  // namespace

void Communicator::allreduce_sum(torch::Tensor& t, const std::string& tag) {
  if (size_ == 1) return;
  check_cpu_contiguous(t, "allreduce_sum");
  bytes_[tag] += static_cast<int64_t>(t.nbytes());
  std::vector<at::Tensor> ts{t};
  try {
    impl_->group->allreduce(ts)->wait();
  } catch (const std::exception& e) {
    fail("all-reduce (" + tag + ")", e);
  }
}

torch::Tensor Communicator::allgather_rows(const torch::Tensor& rows, const std::string& tag,
                                           std::vector<int64_t>* counts) {
  if (size_ == 1) {
    if (counts != nullptr) *counts = {rows.size(0)};
    return rows;
  }
  const auto r = rows.contiguous();
  auto n = torch::full({1}, r.size(0), torch::kInt64);
  std::vector<std::vector<at::Tensor>> n_out(1);
  for (int i = 0; i < size_; ++i) n_out[0].push_back(torch::empty({1}, torch::kInt64));
  std::vector<at::Tensor> n_in{n};
  bytes_[tag] += 8;
  try {
    impl_->group->allgather(n_out, n_in)->wait();
  } catch (const std::exception& e) {
    fail("all-gather (" + tag + " counts)", e);
  }
  std::vector<int64_t> ns;
  int64_t most = 0;
  for (const auto& t : n_out[0]) {
    ns.push_back(t.item<int64_t>());
    most = std::max(most, ns.back());
  }
  if (counts != nullptr) *counts = ns;
  // Gloo all-gathers tensors of one shape: pad every rank's rows to the largest count.
  auto shape = r.sizes().vec();
  shape[0] = most;
  auto padded = torch::zeros(shape, r.options());
  if (r.size(0) > 0) padded.narrow(0, 0, r.size(0)).copy_(r);
  std::vector<std::vector<at::Tensor>> out(1);
  for (int i = 0; i < size_; ++i) out[0].push_back(torch::empty(shape, r.options()));
  std::vector<at::Tensor> in{padded};
  bytes_[tag] += static_cast<int64_t>(r.nbytes());
  if (most > 0) {
    try {
      impl_->group->allgather(out, in)->wait();
    } catch (const std::exception& e) {
      fail("all-gather (" + tag + ")", e);
    }
  }
  std::vector<torch::Tensor> parts;
  for (int i = 0; i < size_; ++i) parts.push_back(out[0][i].narrow(0, 0, ns[i]));
  return torch::cat(parts, 0);
}

torch::Tensor Communicator::alltoall_rows(const torch::Tensor& send,
                                          const std::vector<int64_t>& send_counts,
                                          std::vector<int64_t>* recv_counts,
                                          const std::string& tag) {
  KVT_CHECK(static_cast<int>(send_counts.size()) == size_, "alltoall_rows: ", send_counts.size(),
            " send counts for ", size_, " ranks");
  if (size_ == 1) {
    if (recv_counts != nullptr) *recv_counts = send_counts;
    return send;
  }
  const auto s = send.contiguous();
  // The counts first: each rank learns how many rows every other one sends it.
  auto counts_out = torch::empty({size_}, torch::kInt64);
  auto counts_in = torch::tensor(send_counts, torch::kInt64);
  std::vector<int64_t> ones(size_, 1);
  std::vector<int64_t> ones2 = ones;
  bytes_[tag] += 8 * (size_ - 1);
  try {
    impl_->group->alltoall_base(counts_out, counts_in, ones, ones2)->wait();
  } catch (const std::exception& e) {
    fail("all-to-all (" + tag + " counts)", e);
  }
  std::vector<int64_t> rc(counts_out.data_ptr<int64_t>(), counts_out.data_ptr<int64_t>() + size_);
  if (recv_counts != nullptr) *recv_counts = rc;
  int64_t total = 0;
  for (auto v : rc) total += v;
  auto shape = s.sizes().vec();
  shape[0] = total;
  auto out = torch::empty(shape, s.options());
  const int64_t row_bytes = s.size(0) > 0 ? static_cast<int64_t>(s.nbytes()) / s.size(0) : 0;
  for (int r = 0; r < size_; ++r)
    if (r != rank_) bytes_[tag] += send_counts[r] * row_bytes;
  std::vector<int64_t> sc = send_counts;
  try {
    impl_->group->alltoall_base(out, const_cast<torch::Tensor&>(s), rc, sc)->wait();
  } catch (const std::exception& e) {
    fail("all-to-all (" + tag + ")", e);
  }
  return out;
}

void Communicator::broadcast(torch::Tensor& t, int root, const std::string& tag) {
  if (size_ == 1) return;
  check_cpu_contiguous(t, "broadcast");
  if (rank_ == root) bytes_[tag] += static_cast<int64_t>(t.nbytes());
  std::vector<at::Tensor> ts{t};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  try {
    impl_->group->broadcast(ts, o)->wait();
  } catch (const std::exception& e) {
    fail("broadcast (" + tag + ")", e);
  }
}

void Communicator::barrier() {
  if (size_ == 1) return;
  try {
    impl_->group->barrier()->wait();
  } catch (const std::exception& e) {
    fail("barrier", e);
  }
}

#else  // no Gloo: one process only

bool distributed_available() {
  return false;
}

struct Communicator::Impl {};

Communicator::Communicator() = default;
Communicator::~Communicator() = default;

std::shared_ptr<Communicator> Communicator::connect(const LaunchSettings& s) {
  KVT_CHECK(!s.distributed(), "WORLD_SIZE=", s.world_size,
            ": this kvtune was built without Gloo (c10d's CPU backend), so it runs one process "
            "only. Install libgloo-dev (tools/setup) and rebuild, or unset WORLD_SIZE and RANK");
  return std::make_shared<Communicator>();
}

void Communicator::fail(const std::string& what, const std::exception& e) {
  KVT_THROW(what, " failed: ", e.what());
}

void Communicator::allreduce_sum(torch::Tensor&, const std::string&) {}

torch::Tensor Communicator::allgather_rows(const torch::Tensor& rows, const std::string&,
                                           std::vector<int64_t>* counts) {
  if (counts != nullptr) *counts = {rows.size(0)};
  return rows;
}

torch::Tensor Communicator::alltoall_rows(const torch::Tensor& send,
                                          const std::vector<int64_t>& send_counts,
                                          std::vector<int64_t>* recv_counts, const std::string&) {
  if (recv_counts != nullptr) *recv_counts = send_counts;
  return send;
}

void Communicator::broadcast(torch::Tensor&, int, const std::string&) {}

void Communicator::barrier() {}

#endif

}  // namespace kvtune
