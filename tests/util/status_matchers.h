// File: tests/util/status_matchers.h
//
// EXPECT_OK / ASSERT_OK for absl::Status and absl::StatusOr (Abseil 20220623
// has no status matchers), plus a helper that checks code and message fragment.
#ifndef CATQ_TESTS_UTIL_STATUS_MATCHERS_H_
#define CATQ_TESTS_UTIL_STATUS_MATCHERS_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace catq::testing {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

}  // namespace catq::testing

// Each evaluates `expr` once.
#define EXPECT_OK(expr)                                              \
  do {                                                               \
    const ::absl::Status catq_s_ = ::catq::testing::GetStatus(expr); \
    EXPECT_TRUE(catq_s_.ok()) << #expr << ": " << catq_s_;           \
  } while (false)
#define ASSERT_OK(expr)                                              \
  do {                                                               \
    const ::absl::Status catq_s_ = ::catq::testing::GetStatus(expr); \
    ASSERT_TRUE(catq_s_.ok()) << #expr << ": " << catq_s_;           \
  } while (false)

// EXPECT_STATUS(expr, code, fragment): `expr` failed with `code` and its
// message contains `fragment`.
#define EXPECT_STATUS(expr, expected_code, fragment)                             \
  do {                                                                           \
    const ::absl::Status catq_s_ = ::catq::testing::GetStatus(expr);             \
    EXPECT_EQ(catq_s_.code(), (expected_code)) << catq_s_;                       \
    EXPECT_THAT(std::string(catq_s_.message()), ::testing::HasSubstr(fragment)); \
  } while (false)

#endif  // CATQ_TESTS_UTIL_STATUS_MATCHERS_H_
