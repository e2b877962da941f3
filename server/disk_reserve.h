// File: server/disk_reserve.h
//
// A file of a fixed size kept beside the metadata database so that, when the
// data dir's disk fills up, the one write that must not fail still has room:
// recording that a job failed (otherwise its watchers would wait for an end
// that never gets stored). Releasing the reserve deletes the file; Ensure
// puts it back once there is space again.
//
//   DiskReserve reserve(data_dir + "/catq.db.reserve", 512 << 10);
//   reserve.Ensure();                       // at open; false on a full disk
//   if (IsResourceExhausted(s) && reserve.Release()) s = RetryTheWrite();
//
// Thread-safety: not thread-safe; the metadata store calls it under its lock.
#ifndef CATQ_SERVER_DISK_RESERVE_H_
#define CATQ_SERVER_DISK_RESERVE_H_

#include <cstdint>
#include <string>
#include <utility>

namespace catq::server {

class DiskReserve {
 public:
  DiskReserve(std::string path, uint64_t bytes) : path_(std::move(path)), bytes_(bytes) {}

  // Ensure: the reserve file exists with its full size afterwards, or false
  // (no room yet; nothing is left behind).
  bool Ensure();
  // Release: deletes the reserve; false when there was none to free.
  bool Release();

 private:
  const std::string path_;
  const uint64_t bytes_;
};

}  // namespace catq::server

#endif  // CATQ_SERVER_DISK_RESERVE_H_
