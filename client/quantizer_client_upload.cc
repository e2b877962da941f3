// QuantizerClient uploads: manifest, resume point from GetUpload, then one
// client stream of a header and chunks from the resume offsets.
#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/quantizer_client.h"
#include "client/rpc_status.h"
#include "core/util/status_macros.h"

namespace catq::client {
namespace {

// Where an upload stands on the server: absent (all offsets 0), partial, or
// complete (upload.complete()).
struct ResumePoint {
  v1::Upload upload;
  std::vector<uint64_t> offsets;
};

v1::UploadHeader MakeHeader(const Manifest& manifest, absl::string_view name) {
  v1::UploadHeader header;
  header.set_name(std::string(name));
  for (const ManifestFile& file : manifest) *header.add_files() = file.entry;
  return header;
}

void SetUploadId(absl::string_view upload_id, v1::UploadHeader& header) {
  header.set_upload_id(upload_id.empty() ? DefaultUploadId(header) : std::string(upload_id));
}

bool SameFile(const v1::FileEntry& a, const v1::FileEntry& b) {
  return a.path() == b.path() && a.size() == b.size() && a.sha256() == b.sha256();
}

absl::Status CheckSameFiles(const v1::UploadHeader& header, const v1::Upload& upload) {
  const bool same =
      header.files_size() == upload.files_size() &&
      std::equal(header.files().begin(), header.files().end(), upload.files().begin(), SameFile);
  if (same) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("upload '", header.upload_id(),
                   "' is known to the server with other files; choose another upload id"));
}

absl::StatusOr<ResumePoint> FindResumePoint(QuantizerClient& client,
                                            const v1::UploadHeader& header) {
  ResumePoint point;
  point.offsets.assign(header.files_size(), 0);
  absl::StatusOr<v1::Upload> upload = client.GetUpload(header.upload_id());
  if (absl::IsNotFound(upload.status())) return point;
  CATQ_RETURN_IF_ERROR(upload.status());
  CATQ_RETURN_IF_ERROR(CheckSameFiles(header, *upload));
  for (int i = 0; i < upload->received_bytes_size() && i < header.files_size(); ++i) {
    if (upload->received_bytes(i) > header.files(i).size()) {
      return absl::DataLossError(absl::StrCat(
          "GetUpload: upload '", header.upload_id(), "' reports ", upload->received_bytes(i),
          " bytes received of ", header.files(i).path(), ", which has ", header.files(i).size()));
    }
    point.offsets[i] = upload->received_bytes(i);
  }
  point.upload = *std::move(upload);
  return point;
}

// Writes the header, then every file's bytes from its offset in chunks of at
// most kMaxUploadChunkBytes. A false Write means the server has ended the
// call: writing stops and OK is returned, since Finish says why. Only local
// errors (a file that cannot be read or has changed) are returned.
template <typename Request>
absl::Status WriteUpload(Env* env, grpc::ClientWriter<Request>& writer,
                         const v1::UploadHeader& header, const Manifest& manifest,
                         const std::vector<uint64_t>& offsets, const TransferProgress& progress) {
  Request request;
  *request.mutable_header() = header;
  if (!writer.Write(request)) return absl::OkStatus();
  const uint64_t total = TotalBytes(manifest);
  uint64_t done = 0;
  for (uint64_t offset : offsets) done += offset;
  if (progress) progress(done, total);
  for (size_t i = 0; i < manifest.size(); ++i) {
    const uint64_t size = manifest[i].entry.size();
    if (offsets[i] >= size) continue;
    CATQ_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, env->MapFile(manifest[i].local_path));
    if (file->bytes().size() != size) {
      return absl::FailedPreconditionError(
          absl::StrCat(manifest[i].local_path, ": changed while uploading (", size,
                       " bytes when hashed, ", file->bytes().size(), " now)"));
    }
    for (uint64_t offset = offsets[i]; offset < size; offset += kMaxUploadChunkBytes) {
      const size_t length =
          static_cast<size_t>(std::min<uint64_t>(kMaxUploadChunkBytes, size - offset));
      request.Clear();
      v1::UploadChunk& chunk = *request.mutable_chunk();
      chunk.set_file_index(static_cast<uint32_t>(i));
      chunk.set_offset(offset);
      chunk.set_data(file->bytes().substr(offset, length).data(), length);
      if (!writer.Write(request)) return absl::OkStatus();
      file->Release(file->bytes().substr(offset, length));  // sent: memory stays at a chunk
      done += length;
      if (progress) progress(done, total);
    }
  }
  writer.WritesDone();  // False only when the call has ended; Finish says how.
  return absl::OkStatus();
}

// Finishes an upload stream with the server's status, or after a local
// error cancels the call (so the server never takes a partial upload as
// finished) and returns that error.
template <typename Request>
absl::Status FinishUpload(absl::string_view rpc, const absl::Status& written,
                          grpc::ClientContext& context, grpc::ClientWriter<Request>& writer) {
  if (!written.ok()) {
    context.TryCancel();
    writer.Finish();  // CANCELLED; the local error is the one to report.
    return written;
  }
  return RpcStatus(rpc, writer.Finish());
}

}  // namespace

absl::StatusOr<v1::Model> QuantizerClient::UploadModel(const std::string& dir,
                                                       absl::string_view name,
                                                       v1::ModelFormat format,
                                                       absl::string_view upload_id,
                                                       const TransferProgress& progress) {
  CATQ_ASSIGN_OR_RETURN(Manifest manifest, BuildDirectoryManifest(env_, dir));
  return UploadModelManifest(manifest, name, format, upload_id, progress);
}

absl::StatusOr<v1::Model> QuantizerClient::UploadModelFiles(const std::vector<std::string>& files,
                                                            absl::string_view name,
                                                            v1::ModelFormat format,
                                                            absl::string_view upload_id,
                                                            const TransferProgress& progress) {
  CATQ_ASSIGN_OR_RETURN(Manifest manifest, BuildFilesManifest(env_, files));
  return UploadModelManifest(manifest, name, format, upload_id, progress);
}

absl::StatusOr<v1::Model> QuantizerClient::UploadModelManifest(const Manifest& manifest,
                                                               absl::string_view name,
                                                               v1::ModelFormat format,
                                                               absl::string_view upload_id,
                                                               const TransferProgress& progress) {
  if (manifest.empty()) return absl::InvalidArgumentError("UploadModel: no files to upload");
  v1::UploadHeader header = MakeHeader(manifest, name);
  header.set_format(format);
  SetUploadId(upload_id, header);
  CATQ_ASSIGN_OR_RETURN(ResumePoint resume, FindResumePoint(*this, header));
  if (!resume.upload.complete()) {
    return SendModelUpload(header, manifest, resume.offsets, progress);
  }
  CATQ_ASSIGN_OR_RETURN(std::vector<v1::Model> models, ListModels());
  for (const v1::Model& model : models) {
    if (model.model_id() == resume.upload.model_id()) return model;
  }
  return absl::NotFoundError(absl::StrCat("upload '", header.upload_id(), "' became model '",
                                          resume.upload.model_id(),
                                          "', which no longer exists; choose another upload id"));
}

absl::StatusOr<v1::Calibration> QuantizerClient::UploadCalibration(
    const std::string& file, v1::CalibrationKind kind, absl::string_view name,
    absl::string_view upload_id, const TransferProgress& progress) {
  CATQ_ASSIGN_OR_RETURN(Manifest manifest, BuildFilesManifest(env_, {file}));
  v1::UploadHeader header = MakeHeader(manifest, name);
  header.set_calibration_kind(kind);
  SetUploadId(upload_id, header);
  CATQ_ASSIGN_OR_RETURN(ResumePoint resume, FindResumePoint(*this, header));
  if (!resume.upload.complete()) {
    return SendCalibrationUpload(header, manifest, resume.offsets, progress);
  }
  v1::Calibration calibration;
  calibration.set_calibration_id(resume.upload.calibration_id());
  calibration.set_name(std::string(name));
  calibration.set_kind(kind);
  *calibration.mutable_file() = manifest[0].entry;
  return calibration;
}

absl::StatusOr<v1::Model> QuantizerClient::SendModelUpload(const v1::UploadHeader& header,
                                                           const Manifest& manifest,
                                                           const std::vector<uint64_t>& offsets,
                                                           const TransferProgress& progress) {
  std::unique_ptr<grpc::ClientContext> context = NewContext(/*unary=*/false);
  v1::UploadModelResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::UploadModelRequest>> writer =
      stub_->UploadModel(context.get(), &response);
  const absl::Status written = WriteUpload(env_, *writer, header, manifest, offsets, progress);
  CATQ_RETURN_IF_ERROR(FinishUpload("UploadModel", written, *context, *writer));
  return response.model();
}

absl::StatusOr<v1::Calibration> QuantizerClient::SendCalibrationUpload(
    const v1::UploadHeader& header, const Manifest& manifest, const std::vector<uint64_t>& offsets,
    const TransferProgress& progress) {
  std::unique_ptr<grpc::ClientContext> context = NewContext(/*unary=*/false);
  v1::UploadCalibrationResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::UploadCalibrationRequest>> writer =
      stub_->UploadCalibration(context.get(), &response);
  const absl::Status written = WriteUpload(env_, *writer, header, manifest, offsets, progress);
  CATQ_RETURN_IF_ERROR(FinishUpload("UploadCalibration", written, *context, *writer));
  return response.calibration();
}

}  // namespace catq::client
