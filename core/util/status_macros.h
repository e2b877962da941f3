// File: core/util/status_macros.h
//
// Early-return helpers for absl::Status and absl::StatusOr. Abseil 20220623
// (Debian 12) has no RETURN_IF_ERROR / ASSIGN_OR_RETURN, so catq defines its own.
//
//   absl::StatusOr<Shard> OpenShard(const std::string& path) {
//     CATQ_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path));
//     CATQ_RETURN_IF_ERROR(CheckShard(file));
//     return Shard(std::move(file));
//   }
#ifndef CATQ_CORE_UTIL_STATUS_MACROS_H_
#define CATQ_CORE_UTIL_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace catq {

// Prefix
//
// Returns `status` with `context + ": "` put in front of its message, keeping
// the code. OK stays OK. Used to say which file or tensor an error is about.
absl::Status Prefix(absl::string_view context, const absl::Status& status);

}  // namespace catq

#define CATQ_STATUS_CONCAT_INNER_(a, b) a##b
#define CATQ_STATUS_CONCAT_(a, b) CATQ_STATUS_CONCAT_INNER_(a, b)

// CATQ_RETURN_IF_ERROR(expr): returns the status of `expr` when it is not OK.
#define CATQ_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status catq_status_ = (expr);        \
    if (!catq_status_.ok()) return catq_status_; \
  } while (false)

// CATQ_ASSIGN_OR_RETURN(lhs, expr): evaluates the StatusOr `expr`; returns its
// status on error, else moves the value into `lhs` (which may be a declaration).
#define CATQ_ASSIGN_OR_RETURN(lhs, expr) \
  CATQ_ASSIGN_OR_RETURN_IMPL_(CATQ_STATUS_CONCAT_(catq_statusor_, __LINE__), lhs, expr)

#define CATQ_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)   \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // CATQ_CORE_UTIL_STATUS_MACROS_H_
