#include "core/util/release_free_memory.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace catq {

void ReleaseFreeMemory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace catq
