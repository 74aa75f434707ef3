// The thread-pool operators (ops.h): how many threads a parallel_for runs on, and freeing the
// calling thread's OpenMP pool.
#include <ATen/Parallel.h>
#include <omp.h>
#include <vector>

#include "ops.h"

namespace ops {

// How many threads one at::parallel_for of `items` work items ran on: what every op relies on to
// use all cores (1 when the library was built without OpenMP, whatever torch's setting).
int64_t parallel_threads(int64_t items) {
  std::vector<int> used(static_cast<size_t>(at::get_num_threads()) + 1, 0);
  at::parallel_for(0, items, 1, [&](int64_t, int64_t) {
    const int t = at::get_thread_num();
    if (t >= 0 && t < static_cast<int>(used.size())) used[static_cast<size_t>(t)] = 1;
  });
  int64_t n = 0;
  for (int u : used) n += u;
  return n;
}

// Frees the calling thread's OpenMP thread pool (its workers exit; the next parallel region from
// this thread makes a new one). libgomp cuts every team's spin-wait from ~300k to 1,000 rounds
// while it manages more threads than there are CPUs: a pool left behind by the thread that loaded
// the model (on two cores: its one idle worker) makes the engine thread's worker fall asleep
// between the step's ~170 parallel regions, and each region then waits for a futex wake-up.
int64_t release_thread_pool() { return omp_pause_resource_all(omp_pause_soft); }

}  // namespace ops
