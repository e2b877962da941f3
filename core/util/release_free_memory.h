// File: core/util/release_free_memory.h
//
// ReleaseFreeMemory: hands the allocator's free pages back to the operating
// system (glibc's malloc_trim(0)). glibc keeps freed small and medium blocks
// (the 128 KB statistics blocks, Eigen temporaries) inside its heaps, and a
// heap returns memory only from its top; after a stage that allocated and
// freed gigabytes in such blocks, the process stays that much larger until
// those exact sizes are asked for again. The service calls this after each
// stage that frees a lot (a job's calibration, each layer task), so its
// resident memory follows what it holds.
//
// Thread-safety: thread-safe (malloc_trim locks each arena in turn).
#ifndef CATQ_CORE_UTIL_RELEASE_FREE_MEMORY_H_
#define CATQ_CORE_UTIL_RELEASE_FREE_MEMORY_H_

namespace catq {

void ReleaseFreeMemory();

}  // namespace catq

#endif  // CATQ_CORE_UTIL_RELEASE_FREE_MEMORY_H_
