#include "core/tensor/tensor_view.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/io/env.h"
#include "core/tensor/safetensors_file.h"
#include "core/tensor/safetensors_writer.h"
#include "tests/tensor/safetensors_test_util.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::catq::testing::ValueBytes;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr float kInf = std::numeric_limits<float>::infinity();

TensorInfo Info(DType dtype, std::vector<int64_t> shape, uint64_t bytes) {
  TensorInfo info;
  info.name = "w";
  info.dtype = dtype;
  info.shape = std::move(shape);
  info.data_end = bytes;
  return info;
}

// Aligned storage, so that a view of it (or of it plus one byte) has a known
// alignment.
class Storage {
 public:
  explicit Storage(const std::string& bytes, size_t shift = 0)
      : words_((bytes.size() + shift + 7) / 8 + 1), shift_(shift), size_(bytes.size()) {
    if (!bytes.empty()) std::memcpy(data(), bytes.data(), bytes.size());
  }
  char* data() { return reinterpret_cast<char*>(words_.data()) + shift_; }
  absl::string_view view() { return absl::string_view(data(), size_); }

 private:
  std::vector<uint64_t> words_;
  size_t shift_;
  size_t size_;
};

TEST(TensorView, Accessors) {
  Storage storage(ValueBytes(std::vector<int32_t>{1, 2, 3, 4, 5, 6}));
  const TensorInfo info = Info(DType::kI32, {2, 3}, 24);
  TensorView view(info, storage.view());
  EXPECT_EQ(view.name(), "w");
  EXPECT_EQ(view.dtype(), DType::kI32);
  EXPECT_THAT(view.shape(), ElementsAre(2, 3));
  EXPECT_EQ(view.NumElements(), 6);
  EXPECT_EQ(view.bytes().size(), 24u);
  EXPECT_EQ(&view.info(), &info);
}

TEST(TensorView, AsGivesTheElementsWithoutCopying) {
  Storage storage(ValueBytes(std::vector<int32_t>{1, -2, 3}));
  const TensorInfo info = Info(DType::kI32, {3}, 12);
  TensorView view(info, storage.view());
  absl::StatusOr<absl::Span<const int32_t>> values = view.As<int32_t>();
  ASSERT_OK(values);
  EXPECT_THAT(*values, ElementsAre(1, -2, 3));
  EXPECT_EQ(static_cast<const void*>(values->data()), static_cast<const void*>(storage.data()));
}

TEST(TensorView, AsOfTheWrongDTypeIsFailedPrecondition) {
  Storage storage(std::string(8, '\0'));
  const TensorInfo f16 = Info(DType::kF16, {4}, 8);
  TensorView view(f16, storage.view());
  EXPECT_STATUS(view.As<float>(), absl::StatusCode::kFailedPrecondition,
                "tensor \"w\": dtype is F16, not F32");
  EXPECT_STATUS(view.As<uint8_t>(), absl::StatusCode::kFailedPrecondition,
                "tensor \"w\": dtype is F16, not U8");
  const TensorInfo i8 = Info(DType::kI8, {8}, 8);
  EXPECT_STATUS(TensorView(i8, storage.view()).As<uint8_t>(), absl::StatusCode::kFailedPrecondition,
                "dtype is I8, not U8");
  EXPECT_OK(TensorView(i8, storage.view()).As<int8_t>());
}

TEST(TensorView, AsOfMisalignedDataIsFailedPrecondition) {
  Storage storage(ValueBytes(std::vector<float>{1.0f, 2.0f}), 1);
  TensorInfo info = Info(DType::kF32, {2}, 8);
  info.data_begin = 1;
  info.data_end = 9;
  TensorView view(info, storage.view());
  EXPECT_STATUS(view.As<float>(), absl::StatusCode::kFailedPrecondition,
                "tensor \"w\": data at offset 1 is not aligned to 4 bytes");
  // ToFloat works at any alignment.
  absl::StatusOr<std::vector<float>> values = view.ToFloat();
  ASSERT_OK(values);
  EXPECT_THAT(*values, ElementsAre(1.0f, 2.0f));
}

// What a reader of a catq output needs: an I64 after an odd count of F32
// values starts off 8-byte alignment, and CopyAs reads it anyway.
TEST(TensorView, CopyAsReadsMisalignedDataAndChecksTheDType) {
  Storage storage(ValueBytes(std::vector<int64_t>{172, -64}), 4);
  TensorInfo info = Info(DType::kI64, {2}, 16);
  info.data_begin = 4;
  info.data_end = 20;
  TensorView view(info, storage.view());
  EXPECT_STATUS(view.As<int64_t>(), absl::StatusCode::kFailedPrecondition,
                "not aligned to 8 bytes");
  absl::StatusOr<std::vector<int64_t>> values = view.CopyAs<int64_t>();
  ASSERT_OK(values);
  EXPECT_THAT(*values, ElementsAre(172, -64));
  EXPECT_STATUS(view.CopyAs<int32_t>(), absl::StatusCode::kFailedPrecondition, "tensor \"w\"");
}

TEST(TensorView, AsOfNoElementsIsEmpty) {
  const TensorInfo info = Info(DType::kF64, {0, 3}, 0);
  TensorView view(info, absl::string_view());
  absl::StatusOr<absl::Span<const double>> values = view.As<double>();
  ASSERT_OK(values);
  EXPECT_THAT(*values, IsEmpty());
}

TEST(TensorView, ToFloatOfF32IsACopy) {
  const std::vector<float> input = {1.5f, -0.0f, kInf, 3e-40f};
  Storage storage(ValueBytes(input));
  const TensorInfo info = Info(DType::kF32, {4}, 16);
  absl::StatusOr<std::vector<float>> values = TensorView(info, storage.view()).ToFloat();
  ASSERT_OK(values);
  EXPECT_EQ(ValueBytes(*values), ValueBytes(input));
}

TEST(TensorView, ToFloatOfF16) {
  Storage storage(ValueBytes(
      std::vector<uint16_t>{0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8000, 0x7C00, 0xFC00, 0x7E00}));
  const TensorInfo info = Info(DType::kF16, {2, 4}, 16);
  absl::StatusOr<std::vector<float>> values = TensorView(info, storage.view()).ToFloat();
  ASSERT_OK(values);
  ASSERT_EQ(values->size(), 8u);
  EXPECT_EQ((*values)[0], 1.0f);
  EXPECT_EQ((*values)[1], -2.0f);
  EXPECT_EQ((*values)[2], 65504.0f);
  EXPECT_EQ((*values)[3], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::signbit((*values)[4]) && (*values)[4] == 0.0f);
  EXPECT_EQ((*values)[5], kInf);
  EXPECT_EQ((*values)[6], -kInf);
  EXPECT_TRUE(std::isnan((*values)[7]));
}

TEST(TensorView, ToFloatOfBF16) {
  Storage storage(ValueBytes(std::vector<uint16_t>{0x3F80, 0xC049, 0x0001, 0x7F80, 0xFFC0}));
  const TensorInfo info = Info(DType::kBF16, {5}, 10);
  absl::StatusOr<std::vector<float>> values = TensorView(info, storage.view()).ToFloat();
  ASSERT_OK(values);
  ASSERT_EQ(values->size(), 5u);
  EXPECT_EQ((*values)[0], 1.0f);
  EXPECT_EQ((*values)[1], -3.140625f);
  EXPECT_EQ((*values)[2], std::bit_cast<float>(0x00010000u));
  EXPECT_EQ((*values)[3], kInf);
  EXPECT_TRUE(std::isnan((*values)[4]) && std::signbit((*values)[4]));
}

TEST(TensorView, ToFloatOfF64RoundsToNearestAndSaturatesToInfinity) {
  constexpr double kFloatMax = std::numeric_limits<float>::max();
  const std::vector<double> input = {
      1.5,
      1.0 + 0x1p-24,  // A tie: rounds to even, 1.0.
      1.0 + 0x1p-23,  // Exactly representable.
      1e300,          // Past the float range.
      -1e300,
      0x1.ffffffp127,   // FLT_MAX plus half an ulp: the tie goes to infinity.
      0x1.fffffefp127,  // Just above FLT_MAX, below the tie: FLT_MAX.
      1e-50,            // Underflows to zero.
      -1e-50,
      std::numeric_limits<double>::infinity(),
      -std::numeric_limits<double>::quiet_NaN(),
      kFloatMax,
  };
  Storage storage(ValueBytes(input));
  const TensorInfo info = Info(DType::kF64, {12}, 96);
  absl::StatusOr<std::vector<float>> values = TensorView(info, storage.view()).ToFloat();
  ASSERT_OK(values);
  ASSERT_EQ(values->size(), 12u);
  const std::vector<float>& v = *values;
  EXPECT_EQ(v[0], 1.5f);
  EXPECT_EQ(v[1], 1.0f);
  EXPECT_EQ(v[2], 1.0f + 0x1p-23f);
  EXPECT_EQ(v[3], kInf);
  EXPECT_EQ(v[4], -kInf);
  EXPECT_EQ(v[5], kInf);
  EXPECT_EQ(v[6], static_cast<float>(kFloatMax));
  EXPECT_EQ(v[7], 0.0f);
  EXPECT_FALSE(std::signbit(v[7]));
  EXPECT_TRUE(v[8] == 0.0f && std::signbit(v[8]));
  EXPECT_EQ(v[9], kInf);
  EXPECT_TRUE(std::isnan(v[10]) && std::signbit(v[10]));
  EXPECT_EQ(v[11], static_cast<float>(kFloatMax));
}

TEST(TensorView, ToFloatOfIntegerDTypesIsInvalidArgument) {
  Storage storage(std::string(8, '\x01'));
  const struct {
    DType dtype;
    std::vector<int64_t> shape;
    const char* fragment;
  } kCases[] = {{DType::kI8, {8}, "tensor \"w\": dtype I8 is not a float type"},
                {DType::kU8, {8}, "dtype U8 is not a float type"},
                {DType::kI32, {2}, "dtype I32 is not a float type"},
                {DType::kI64, {1}, "dtype I64 is not a float type"}};
  for (const auto& c : kCases) {
    const TensorInfo info = Info(c.dtype, c.shape, 8);
    TensorView view(info, storage.view());
    EXPECT_STATUS(view.ToFloat(), absl::StatusCode::kInvalidArgument, c.fragment);
    std::vector<float> out(8);
    EXPECT_STATUS(view.CopyToFloat(absl::MakeSpan(out)), absl::StatusCode::kInvalidArgument,
                  c.fragment);
  }
}

TEST(TensorView, CopyToFloatChecksTheOutputSize) {
  Storage storage(ValueBytes(std::vector<uint16_t>{0x3C00, 0x4000}));
  const TensorInfo info = Info(DType::kF16, {2}, 4);
  TensorView view(info, storage.view());
  std::vector<float> small(1);
  EXPECT_STATUS(view.CopyToFloat(absl::MakeSpan(small)), absl::StatusCode::kInvalidArgument,
                "tensor \"w\": output holds 1 floats, tensor has 2 elements");
  std::vector<float> exact(2);
  ASSERT_OK(view.CopyToFloat(absl::MakeSpan(exact)));
  EXPECT_THAT(exact, ElementsAre(1.0f, 2.0f));
}

// Through a real file: a U8 tensor first leaves the F32 tensor after it at an
// odd offset, where As<float> refuses and ToFloat still works.
TEST(TensorView, MisalignedTensorInAFile) {
  catq::testing::TempDir dir;
  const std::string path = dir.Join("odd.safetensors");
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer = SafetensorsWriter::Create(
      Env::Default(), path, {{"byte", DType::kU8, {1}}, {"w", DType::kF32, {2}}});
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Append("\x07"));
  ASSERT_OK((*writer)->Append(ValueBytes(std::vector<float>{0.25f, -8.0f})));
  ASSERT_OK((*writer)->Finish());
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_OK(file);
  absl::StatusOr<TensorView> view = file->Get("w");
  ASSERT_OK(view);
  EXPECT_STATUS(view->As<float>(), absl::StatusCode::kFailedPrecondition,
                "tensor \"w\": data at offset 1 is not aligned to 4 bytes");
  absl::StatusOr<std::vector<float>> values = view->ToFloat();
  ASSERT_OK(values);
  EXPECT_THAT(*values, ElementsAre(0.25f, -8.0f));
  EXPECT_STATUS(file->Get("nope"), absl::StatusCode::kNotFound, path + ": no tensor \"nope\"");
}

}  // namespace
}  // namespace catq
