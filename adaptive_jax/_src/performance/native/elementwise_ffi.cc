// One XLA FFI handler that runs a generated elementwise kernel over [0, size).
//
// The kernel is plain C, compiled separately (see codegen.py), with the signature
//     void kernel(const void* const* inputs, void* const* outputs, int64_t lo, int64_t hi,
//                 int64_t first_chunk)
// `first_chunk` is 1 for the chunk that starts at 0 (it alone writes rank-0 outputs;
// those are never aliased to inputs, which the other chunks may still be reading).
// Its address arrives as the attribute `kernel`; inputs and outputs are the call's
// buffers, in order.
//
// Large calls are split into `threads` chunks.  The calling thread runs the first;
// the others go to workers of a small pool owned by this library: started once,
// spinning up to 100 us after a call, then asleep on a condition variable.  (XLA's
// FFI thread pool cost tens of microseconds per task here, more than a chunk of a
// mid-sized step takes.)

#include <algorithm>
#include <atomic>
#include <cfenv>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

using Kernel = void (*)(const void* const*, void* const*, int64_t, int64_t, int64_t);

namespace {

class Workers {
 public:
  // Runs run(c) for c in [1, chunks) on workers and run(0) here; returns when all are done.
  template <typename F>
  void Run(int64_t chunks, F run) {
    std::lock_guard<std::mutex> calls(call_mutex_);  // one call at a time uses the pool
    Grow(chunks - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = [&run](int64_t c) { run(c); };
      chunks_ = chunks;
      pending_.store(chunks - 1);
      uint64_t generation = generation_.load() + 1;
      next_.store(generation << 32 | 1);  // chunk claims carry the generation they belong to
      generation_.store(generation, std::memory_order_release);
    }
    if (sleepers_.load() > 0) wake_.notify_all();
    run(0);
    while (pending_.load(std::memory_order_acquire) > 0) std::this_thread::yield();
  }

 private:
  void Grow(int64_t n) {
    while (static_cast<int64_t>(threads_.size()) < n) {
      threads_.emplace_back([this] { Loop(); });
      threads_.back().detach();
    }
  }

  void Loop() {
    uint64_t seen = 0;
    for (;;) {
      // Spin up to 100 us before sleeping: steps often come back to back, and waking a
      // sleeping thread costs more than a mid-sized chunk.
      auto until = std::chrono::steady_clock::now() + kSpin;
      while (generation_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() < until) {
        std::this_thread::yield();
      }
      std::function<void(int64_t)> job;
      int64_t chunks;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        if (generation_.load() == seen) {
          sleepers_.fetch_add(1);
          wake_.wait(lock, [&] { return generation_.load() != seen; });
          sleepers_.fetch_sub(1);
        }
        seen = generation_.load();
        job = job_;
        chunks = chunks_;
      }
      for (int64_t c; (c = Claim(seen, chunks)) >= 0;) {
        job(c);
        pending_.fetch_sub(1, std::memory_order_release);
      }
    }
  }

  // The next unclaimed chunk of job `generation`, or -1 (none left, or a newer job).
  int64_t Claim(uint64_t generation, int64_t chunks) {
    uint64_t value = next_.load();
    for (;;) {
      if ((value >> 32) != (generation & 0xffffffffu)) return -1;
      int64_t chunk = static_cast<int64_t>(value & 0xffffffffu);
      if (chunk >= chunks) return -1;
      if (next_.compare_exchange_weak(value, value + 1)) return chunk;
    }
  }

  static constexpr std::chrono::microseconds kSpin{100};

  std::mutex call_mutex_, mutex_;
  std::condition_variable wake_;
  std::vector<std::thread> threads_;
  std::function<void(int64_t)> job_;
  std::atomic<int64_t> pending_{0}, sleepers_{0};
  std::atomic<uint64_t> next_{0};
  std::atomic<uint64_t> generation_{0};
  int64_t chunks_ = 0;
};

Workers& Pool() {
  // Never destroyed: workers outlive main's statics.  A forked child has none of its
  // parent's threads, so it starts a pool of its own.
  static Workers* pool = new Workers();
  static pid_t owner = getpid();
  if (getpid() != owner) {
    pool = new Workers();
    owner = getpid();
  }
  return *pool;
}

ffi::Error Run(int64_t kernel, int64_t size, int64_t grain, int64_t threads,
               ffi::RemainingArgs args, ffi::RemainingRets rets) {
  std::vector<const void*> inputs(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    auto buffer = args.get<ffi::AnyBuffer>(i);
    if (buffer.has_error()) return buffer.error();
    inputs[i] = buffer->untyped_data();
  }
  std::vector<void*> outputs(rets.size());
  for (size_t i = 0; i < rets.size(); ++i) {
    auto buffer = rets.get<ffi::AnyBuffer>(i);
    if (buffer.has_error()) return buffer.error();
    outputs[i] = (*buffer)->untyped_data();
  }
  Kernel kernel_fn = reinterpret_cast<Kernel>(kernel);
  int64_t chunks = std::min<int64_t>(std::max<int64_t>(threads, 1),
                                     std::max<int64_t>(1, size / std::max<int64_t>(grain, 1)));
  if (chunks <= 1) {
    kernel_fn(inputs.data(), outputs.data(), 0, size, 1);
    return ffi::Error::Success();
  }
  // Chunk boundaries on multiples of 16 elements (whole cache lines for float32).
  int64_t step = ((size + chunks - 1) / chunks + 15) / 16 * 16;
  // Every chunk computes in the caller's floating-point environment: XLA flushes
  // subnormals to zero while it runs a program, and a worker must round as it does.
  std::fenv_t env;
  std::fegetenv(&env);
  Pool().Run(chunks, [&](int64_t c) {
    if (c != 0) std::fesetenv(&env);
    int64_t lo = std::min(size, c * step), hi = std::min(size, (c + 1) * step);
    if (lo < hi) kernel_fn(inputs.data(), outputs.data(), lo, hi, c == 0);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(AdaptiveJaxElementwise, Run,
                              ffi::Ffi::Bind()
                                  .Attr<int64_t>("kernel")
                                  .Attr<int64_t>("size")
                                  .Attr<int64_t>("grain")
                                  .Attr<int64_t>("threads")
                                  .RemainingArgs()
                                  .RemainingRets());
