// The one place that turns n_jobs into a thread count, and a parallel loop that carries a
// worker's exception out of the OpenMP region (an exception escaping it would terminate).
#pragma once
#include <exception>
#include <mutex>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace segfast {

inline bool has_openmp() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

inline int available_threads() {
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

// n_jobs: -1 = all cores, k >= 1 = k threads, at most the machine's cores (per-thread scratch
// is sized by it: n_jobs = 2 * 10^8 once took 1.56 GB and 8 s for 48 rows).
inline int resolve_threads(int n_jobs) {
    const int cores = available_threads() > 0 ? available_threads() : 1;
    if (n_jobs < 0) return cores;
    return n_jobs < 1 ? 1 : (n_jobs < cores ? n_jobs : cores);
}

// Runs body(task, thread) for task in [0, n_tasks) on n_threads threads, dynamic schedule.
// The first exception thrown by any task is rethrown on the calling thread after the join.
template <class Body>
void parallel_for(long n_tasks, int n_threads, Body&& body) {
    std::exception_ptr error;
    std::mutex error_lock;
    if (n_threads > n_tasks) n_threads = static_cast<int>(n_tasks > 0 ? n_tasks : 1);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
#endif
    for (long t = 0; t < n_tasks; ++t) {
        try {
            int thread = 0;
#ifdef _OPENMP
            thread = omp_get_thread_num();
#endif
            body(t, thread);
        } catch (...) {
            std::lock_guard<std::mutex> guard(error_lock);
            if (!error) error = std::current_exception();
        }
    }
    if (error) std::rethrow_exception(error);
}

}  // namespace segfast
