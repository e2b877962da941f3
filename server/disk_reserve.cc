#include "server/disk_reserve.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace catq::server {

bool DiskReserve::Ensure() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) >= bytes_) return true;
  const int fd = ::open(path_.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  // posix_fallocate allocates the blocks (a sparse file would free nothing).
  const bool reserved = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes_)) == 0;
  ::close(fd);
  if (!reserved) ::unlink(path_.c_str());
  return reserved;
}

bool DiskReserve::Release() { return ::unlink(path_.c_str()) == 0; }

}  // namespace catq::server
