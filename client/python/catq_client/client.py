"""A typed client of catq.v1.Quantizer (proto/catq/v1/catq.proto).

It adds to the raw gRPC stub what every caller would otherwise write: the
bearer token on each call, resumable uploads (a manifest of sha256 digests,
GetUpload, then a header and chunks from the offsets the server reports),
resumable verified downloads (FetchResult into ``<path>.part``, sha256, then
rename) and one exception, :class:`CatqError`, for every failed call.

The protocol is the one the C++ client (client/quantizer_client*.cc) speaks,
including its default upload ids, so an upload begun by ``catq upload`` can be
finished from Python and the other way round.

Errors: a failed RPC raises :class:`CatqError` with the server's status code
and message; data that fails verification raises it with DATA_LOSS. Bad
arguments raise ValueError, local file errors OSError. No call retries on its
own: uploads and fetches are made to be rerun.

The client is thread-safe as gRPC channels are; two concurrent fetches into
the same directory, or two concurrent uploads with the same upload id, race.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO, Optional, Union

import grpc
from google.protobuf import json_format

from catq.v1 import catq_pb2, catq_pb2_grpc

#: The most file bytes one UploadChunk carries.
MAX_UPLOAD_CHUNK_BYTES = 4 << 20
#: The receive limit: a 4 MiB FetchResultChunk plus its fields.
MAX_RECEIVE_MESSAGE_BYTES = 8 << 20

#: Called as bytes move: ``done`` of ``total`` bytes of the whole transfer,
#: counting bytes already there from an earlier run.
Progress = Callable[[int, int], None]

_MODEL_FORMATS = {
    "hf": catq_pb2.MODEL_FORMAT_HF,
    "llama2c": catq_pb2.MODEL_FORMAT_LLAMA2C,
}
_CALIBRATION_KINDS = {
    "text": catq_pb2.CALIBRATION_KIND_TEXT,
    "token_ids": catq_pb2.CALIBRATION_KIND_TOKEN_IDS,
    "statistics": catq_pb2.CALIBRATION_KIND_STATISTICS,
}
_FINAL_STATES = frozenset({
    catq_pb2.JOB_STATE_SUCCEEDED,
    catq_pb2.JOB_STATE_FAILED,
    catq_pb2.JOB_STATE_CANCELLED,
})
_HASH_BLOCK_BYTES = 1 << 20


class CatqError(Exception):
    """A failed call: the gRPC status code and the server's message.

    Attributes:
        code: the ``grpc.StatusCode`` (e.g. ``INVALID_ARGUMENT``).
        message: what went wrong; the server's messages name the field,
            file, tensor or offset.
        rpc: the RPC that failed (``"SubmitJob"``), or None for a local check.
    """

    def __init__(self, code: grpc.StatusCode, message: str,
                 rpc: Optional[str] = None) -> None:
        self.code = code
        self.message = message
        self.rpc = rpc
        prefix = f"{rpc}: " if rpc else ""
        super().__init__(f"{prefix}{code.name}: {message}")

    @classmethod
    def from_rpc_error(cls, rpc: str, error: grpc.RpcError) -> CatqError:
        """The CatqError of a failed call's ``grpc.RpcError``."""
        code = error.code() if hasattr(error, "code") else None
        details = error.details() if hasattr(error, "details") else None
        return cls(code or grpc.StatusCode.UNKNOWN, details or str(error), rpc)


@dataclasses.dataclass
class FetchStats:
    """What :meth:`Client.fetch` did.

    Attributes:
        job: the job as GetJob returned it; its result_files were fetched.
        bytes_received: bytes that came over the wire in this call.
        files_already_present: files complete and verified before the call.
    """

    job: catq_pb2.Job
    bytes_received: int = 0
    files_already_present: int = 0


@dataclasses.dataclass(frozen=True)
class _LocalFile:
    """One local file of an upload and the entry the server sees."""

    local_path: str
    entry: catq_pb2.FileEntry


def sha256_of_file(path: Union[str, os.PathLike]) -> str:
    """The lowercase hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def check_relative_path(path: str) -> None:
    """Raises ValueError unless ``path`` is a safe relative path.

    Safe: non-empty, components separated by single '/', none empty, "." or
    "..", no leading '/', no backslash or NUL; what the server accepts and
    what :meth:`Client.fetch` writes.
    """
    if not path:
        raise ValueError(f"path '{path}': is empty")
    if path.startswith("/"):
        raise ValueError(f"path '{path}': is absolute")
    if "\\" in path:
        raise ValueError(f"path '{path}': holds a backslash")
    if "\0" in path:
        raise ValueError(f"path '{path}': holds a NUL byte")
    for component in path.split("/"):
        if component in ("", ".", ".."):
            raise ValueError(
                f"path '{path}': has an empty, '.' or '..' component")


def default_upload_id(header: catq_pb2.UploadHeader) -> str:
    """The upload id the C++ client derives from ``header`` (upload_id unused).

    "model-" or "calib-" (by whether calibration_kind is set) and 40 hex
    digits of a sha256 over the name, format, calibration kind and every
    file's path, size and sha256: the same content under the same name gives
    the same id on every run, so running an upload again resumes it.
    """
    canonical = (f"catq-upload-v1\n{header.name}\n{header.format}\n"
                 f"{header.calibration_kind}\n")
    for entry in header.files:
        canonical += f"{entry.path}\t{entry.size}\t{entry.sha256}\n"
    prefix = ("calib-" if header.calibration_kind
              != catq_pb2.CALIBRATION_KIND_UNSPECIFIED else "model-")
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return prefix + digest[:40]


def _describe(local_path: str, relative_path: str) -> _LocalFile:
    entry = catq_pb2.FileEntry(path=relative_path,
                               size=os.path.getsize(local_path),
                               sha256=sha256_of_file(local_path))
    return _LocalFile(local_path, entry)


def _directory_manifest(directory: Union[str, os.PathLike]
                        ) -> list[_LocalFile]:
    """Every regular file under ``directory``, sorted by relative path.

    Entries whose name starts with '.' are skipped, symlinks to files are
    read through, symlinked directories are not entered (as the C++ client).
    Raises FileNotFoundError for a missing directory, NotADirectoryError for
    a file, ValueError for a directory without files or with a path the
    server would refuse, OSError when listing or reading fails.
    """
    directory = os.fspath(directory)
    if not os.path.exists(directory):
        raise FileNotFoundError(f"{directory}: no such directory")
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"{directory}: not a directory")
    files = []

    def fail(error: OSError) -> None:
        raise error

    for root, dirs, names in os.walk(directory, onerror=fail):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            local = os.path.join(root, name)
            if name.startswith(".") or not os.path.isfile(local):
                continue
            relative = os.path.relpath(local, directory).replace(os.sep, "/")
            check_relative_path(relative)
            files.append(_describe(local, relative))
    if not files:
        raise ValueError(f"{directory}: holds no files")
    return sorted(files, key=lambda f: f.entry.path)


def _enum_value(value: Union[str, int], names: Mapping[str, int],
                what: str) -> int:
    if isinstance(value, int):
        return value
    try:
        return names[value.lower()]
    except KeyError:
        raise ValueError(f"{what} '{value}': expected one of "
                         f"{', '.join(names)}") from None


def _to_message(value: Any, message_type: type, what: str) -> Any:
    """A ``message_type`` from a message of that type, a dict or None."""
    if value is None:
        return message_type()
    if isinstance(value, message_type):
        return value
    if isinstance(value, Mapping):
        try:
            return json_format.ParseDict(dict(value), message_type())
        except json_format.ParseError as e:
            raise ValueError(f"{what}: {e}") from None
    raise TypeError(f"{what}: expected a dict or {message_type.__name__}, "
                    f"got {type(value).__name__}")


class Client:
    """A client of one catq server.

    Example::

        with Client("localhost:50051", token=token) as client:
            model = client.upload_model("models/llama")
            calibration = client.upload_calibration("calib.txt", kind="text")
            job = client.submit(model.model_id, {"method": "cat",
                                                  "block_size": 32},
                                calibration_id=calibration.calibration_id)
            job = client.wait(job.job_id)
            if job.state == catq_pb2.JOB_STATE_SUCCEEDED:
                client.fetch(job.job_id, "out/w4")

    Args:
        address: HOST:PORT of the server.
        token: sent as ``authorization: Bearer <token>`` on every call when
            given; never printed.
        tls_root_cert: TLS when given: the PEM of the CA that signed the
            server's certificate, as bytes, or the path of a PEM file.
            Plaintext when None.
        timeout: deadline of each unary call in seconds. Streams (uploads,
            watch, fetch) have none: they last as long as their work.
        channel_options: extra gRPC channel arguments.
    """

    def __init__(self, address: str, token: Optional[str] = None,
                 tls_root_cert: Union[bytes, str, os.PathLike, None] = None,
                 *, timeout: float = 60.0,
                 channel_options: Optional[list[tuple[str, Any]]] = None
                 ) -> None:
        if not address:
            raise ValueError("no server address (HOST:PORT) given")
        options = [("grpc.max_receive_message_length",
                    MAX_RECEIVE_MESSAGE_BYTES)]
        options += channel_options or []
        if tls_root_cert is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            if not isinstance(tls_root_cert, bytes):
                with open(tls_root_cert, "rb") as f:
                    tls_root_cert = f.read()
            credentials = grpc.ssl_channel_credentials(
                root_certificates=tls_root_cert)
            self._channel = grpc.secure_channel(address, credentials,
                                                options=options)
        self._stub = catq_pb2_grpc.QuantizerStub(self._channel)
        self._metadata = ((("authorization", f"Bearer {token}"),)
                          if token else ())
        self._timeout = timeout

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:  # Never shows the token.
        return f"<catq_client.Client {id(self):#x}>"

    @property
    def stub(self) -> catq_pb2_grpc.QuantizerStub:
        """The raw stub, for calls this class does not wrap."""
        return self._stub

    def _unary(self, rpc: str, request: Any) -> Any:
        try:
            return getattr(self._stub, rpc)(request, timeout=self._timeout,
                                            metadata=self._metadata)
        except grpc.RpcError as e:
            raise CatqError.from_rpc_error(rpc, e) from None

    # Uploads.

    def upload_model(self, directory: Union[str, os.PathLike],
                     name: Optional[str] = None,
                     format: Union[str, int] = "hf",
                     *, upload_id: Optional[str] = None,
                     progress: Optional[Progress] = None) -> catq_pb2.Model:
        """Uploads every file under ``directory`` and returns the stored model.

        Args:
            directory: a Hugging Face Llama directory, or for ``"llama2c"`` a
                directory holding just the checkpoint and tokenizer.
            name: the model's name; the directory's base name by default.
            format: ``"hf"`` or ``"llama2c"`` (or a ModelFormat value).
            upload_id: the id that resumes; by default derived from the
                content (:func:`default_upload_id`), so running the same
                upload again resumes where GetUpload says it stopped, and an
                upload that already completed returns its model without
                sending a byte.
            progress: called with (done, total) bytes as chunks go.

        Raises:
            CatqError: the server's verdict (INVALID_ARGUMENT naming the file),
                FAILED_PRECONDITION when the upload id is known to the server
                with other files, NOT_FOUND when the model that upload became
                was deleted since.
            OSError: a local file could not be read.
        """
        directory = os.fspath(directory)
        files = _directory_manifest(directory)
        if name is None:
            name = os.path.basename(os.path.normpath(directory))
        header = self._header(files, name, upload_id,
                              format=_enum_value(format, _MODEL_FORMATS,
                                                 "model format"))
        upload, offsets = self._resume_point(header)
        if upload is None or not upload.complete:
            response = self._send_upload("UploadModel",
                                         catq_pb2.UploadModelRequest, header,
                                         files, offsets, progress)
            return response.model
        for model in self.list_models():
            if model.model_id == upload.model_id:
                return model
        raise CatqError(grpc.StatusCode.NOT_FOUND,
                        f"upload '{header.upload_id}' became model "
                        f"'{upload.model_id}', which no longer exists; "
                        "choose another upload id")

    def upload_calibration(self, path: Union[str, os.PathLike],
                           kind: Union[str, int] = "text",
                           name: Optional[str] = None,
                           *, upload_id: Optional[str] = None,
                           progress: Optional[Progress] = None
                           ) -> catq_pb2.Calibration:
        """Uploads the one file ``path`` as a calibration; resumable.

        Args:
            path: the file.
            kind: ``"text"`` (documents), ``"token_ids"`` (little-endian
                int32, documents separated by -1) or ``"statistics"`` (the
                SiteStatistics safetensors file), or a CalibrationKind value.
            name: the calibration's name; the file's base name by default.
            upload_id, progress: as for :meth:`upload_model`.

        An upload that already completed returns a Calibration built from
        GetUpload's record (id, this name, kind and file).

        Raises:
            CatqError: the server's verdict, or FAILED_PRECONDITION as for
                :meth:`upload_model`.
            OSError: the file could not be read.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path}: no such file")
            raise ValueError(f"{path}: not a regular file")
        base = os.path.basename(path)
        files = [_describe(path, base)]
        kind_value = _enum_value(kind, _CALIBRATION_KINDS, "calibration kind")
        header = self._header(files, base if name is None else name,
                              upload_id, calibration_kind=kind_value)
        upload, offsets = self._resume_point(header)
        if upload is None or not upload.complete:
            response = self._send_upload(
                "UploadCalibration", catq_pb2.UploadCalibrationRequest, header,
                files, offsets, progress)
            return response.calibration
        return catq_pb2.Calibration(calibration_id=upload.calibration_id,
                                    name=header.name, kind=kind_value,
                                    file=files[0].entry)

    def get_upload(self, upload_id: str) -> catq_pb2.Upload:
        """Where an upload stands; NOT_FOUND for an id the server never saw."""
        return self._unary("GetUpload",
                           catq_pb2.GetUploadRequest(upload_id=upload_id))

    @staticmethod
    def _header(files: list[_LocalFile], name: str,
                upload_id: Optional[str], **kwargs: int
                ) -> catq_pb2.UploadHeader:
        header = catq_pb2.UploadHeader(name=name,
                                       files=[f.entry for f in files],
                                       **kwargs)
        header.upload_id = upload_id or default_upload_id(header)
        return header

    def _resume_point(self, header: catq_pb2.UploadHeader
                      ) -> tuple[Optional[catq_pb2.Upload], list[int]]:
        """The server's record of the upload (None when absent) and the
        offset each file resumes from."""
        offsets = [0] * len(header.files)
        try:
            upload = self.get_upload(header.upload_id)
        except CatqError as e:
            if e.code == grpc.StatusCode.NOT_FOUND:
                return None, offsets
            raise
        same = len(upload.files) == len(header.files) and all(
            (a.path, a.size, a.sha256) == (b.path, b.size, b.sha256)
            for a, b in zip(header.files, upload.files))
        if not same:
            raise CatqError(grpc.StatusCode.FAILED_PRECONDITION,
                            f"upload '{header.upload_id}' is known to the "
                            "server with other files; choose another "
                            "upload id")
        for i, received in enumerate(upload.received_bytes[:len(offsets)]):
            entry = header.files[i]
            if received > entry.size:
                raise CatqError(grpc.StatusCode.DATA_LOSS,
                                f"upload '{header.upload_id}' reports "
                                f"{received} bytes received of {entry.path}, "
                                f"which has {entry.size}", "GetUpload")
            offsets[i] = received
        return upload, offsets

    def _send_upload(self, rpc: str, request_type: type,
                     header: catq_pb2.UploadHeader, files: list[_LocalFile],
                     offsets: list[int], progress: Optional[Progress]) -> Any:
        """One client stream: the header, then every file's bytes from its
        offset in chunks of at most MAX_UPLOAD_CHUNK_BYTES."""
        local_error: list[BaseException] = []

        def requests() -> Iterator[Any]:
            try:
                yield request_type(header=header)
                total = sum(f.entry.size for f in files)
                done = sum(offsets)
                if progress:
                    progress(done, total)
                for index, (file, offset) in enumerate(zip(files, offsets)):
                    size = file.entry.size
                    if offset >= size:
                        continue
                    with open(file.local_path, "rb") as f:
                        now = os.fstat(f.fileno()).st_size
                        if now != size:
                            raise CatqError(
                                grpc.StatusCode.FAILED_PRECONDITION,
                                f"{file.local_path}: changed while "
                                f"uploading ({size} bytes when hashed, "
                                f"{now} now)")
                        f.seek(offset)
                        while offset < size:
                            data = f.read(min(MAX_UPLOAD_CHUNK_BYTES,
                                              size - offset))
                            if not data:
                                raise CatqError(
                                    grpc.StatusCode.FAILED_PRECONDITION,
                                    f"{file.local_path}: shorter than when "
                                    f"hashed at offset {offset}")
                            chunk = catq_pb2.UploadChunk(file_index=index,
                                                         offset=offset,
                                                         data=data)
                            yield request_type(chunk=chunk)
                            offset += len(data)
                            done += len(data)
                            if progress:
                                progress(done, total)
            except Exception as e:
                # The stream ends here, as a killed client's would: what the
                # server received stays resumable, and the local error is the
                # one to report (raising here would make gRPC log it).
                local_error.append(e)

        try:
            response = getattr(self._stub, rpc)(requests(),
                                                metadata=self._metadata)
        except grpc.RpcError as e:
            if local_error:
                raise local_error[0] from None
            raise CatqError.from_rpc_error(rpc, e) from None
        if local_error:
            raise local_error[0]
        return response

    # Jobs.

    def submit(self, model_id: str,
               recipe: Union[Mapping[str, Any], catq_pb2.Recipe, None] = None,
               calibration_id: str = "",
               *, idempotency_key: str = "",
               eval_calibration_id: str = "",
               calibration_options: Union[Mapping[str, Any],
                                          catq_pb2.CalibrationOptions,
                                          None] = None,
               max_shard_bytes: int = 0) -> catq_pb2.Job:
        """Submits a quantization job and returns it at once (QUEUED).

        Args:
            model_id: an uploaded model.
            recipe: a Recipe or a dict of its fields, e.g.
                ``{"method": "cat", "block_size": 32, "activation_bits": 4}``;
                absent fields take catq's defaults (None: rtn).
            calibration_id: required unless the recipe needs none.
            idempotency_key: a second submit with the same key returns the
                first job.
            eval_calibration_id: a text calibration whose perplexity goes
                into the report.
            calibration_options: CalibrationOptions or a dict of its fields.
            max_shard_bytes: the largest output shard (0: 2 GiB).

        Raises:
            CatqError: e.g. INVALID_ARGUMENT naming the field
                ("recipe.weight_bits: ..."), NOT_FOUND for an unknown model.
            ValueError: a dict names a field the message lacks.
        """
        request = catq_pb2.SubmitJobRequest(
            model_id=model_id,
            calibration_id=calibration_id,
            recipe=_to_message(recipe, catq_pb2.Recipe, "recipe"),
            calibration_options=_to_message(calibration_options,
                                            catq_pb2.CalibrationOptions,
                                            "calibration_options"),
            eval_calibration_id=eval_calibration_id,
            idempotency_key=idempotency_key,
            max_shard_bytes=max_shard_bytes)
        return self._unary("SubmitJob", request).job

    def get_job(self, job_id: str) -> catq_pb2.Job:
        """The job now; NOT_FOUND for an id this tenant does not own."""
        return self._unary("GetJob", catq_pb2.GetJobRequest(job_id=job_id))

    def list_jobs(self, limit: int = 0) -> list[catq_pb2.Job]:
        """This tenant's jobs, newest first; limit 0: the server's default."""
        return list(self._unary("ListJobs",
                                catq_pb2.ListJobsRequest(limit=limit)).jobs)

    def cancel(self, job_id: str) -> catq_pb2.Job:
        """Asks to cancel the job and returns it after the request.

        Raises:
            CatqError: FAILED_PRECONDITION for a job that has already ended
                (it keeps its state), NOT_FOUND for an unknown job.
        """
        return self._unary("CancelJob",
                           catq_pb2.CancelJobRequest(job_id=job_id))

    def list_models(self) -> list[catq_pb2.Model]:
        """This tenant's models."""
        return list(self._unary("ListModels",
                                catq_pb2.ListModelsRequest()).models)

    def delete_model(self, model_id: str) -> None:
        """Deletes a model."""
        self._unary("DeleteModel",
                    catq_pb2.DeleteModelRequest(model_id=model_id))

    def watch(self, job_id: str, timeout: Optional[float] = None
              ) -> Iterator[catq_pb2.JobEvent]:
        """The job's events: its current state first, then every change.

        The iterator ends after the event whose job has ended (SUCCEEDED,
        FAILED or CANCELLED; a failed job is not an error). Leaving the loop
        early cancels the stream.

        Raises:
            CatqError: the stream's status (NOT_FOUND for an unknown job,
                DEADLINE_EXCEEDED past ``timeout`` seconds), and UNAVAILABLE
                when the stream ends before the job has ended: watching again
                picks up from the current state.
        """
        call = self._stub.WatchJob(catq_pb2.WatchJobRequest(job_id=job_id),
                                   timeout=timeout, metadata=self._metadata)
        last: Optional[catq_pb2.Job] = None
        try:
            for event in call:
                last = event.job
                yield event
        except grpc.RpcError as e:
            raise CatqError.from_rpc_error("WatchJob", e) from None
        finally:
            call.cancel()  # No effect once the stream has ended.
        if last is None:
            raise CatqError(grpc.StatusCode.UNAVAILABLE,
                            f"the stream of job '{job_id}' ended before its "
                            "first event", "WatchJob")
        if last.state not in _FINAL_STATES:
            raise CatqError(grpc.StatusCode.UNAVAILABLE,
                            f"the stream of job '{job_id}' ended while it is "
                            f"{catq_pb2.JobState.Name(last.state)}; "
                            "watch again", "WatchJob")

    def wait(self, job_id: str,
             on_event: Optional[Callable[[catq_pb2.JobEvent], None]] = None,
             timeout: Optional[float] = None) -> catq_pb2.Job:
        """Watches the job until it ends and returns it (check its state).

        ``on_event`` is called with each event in order. Raises as
        :meth:`watch`.
        """
        job = None
        for event in self.watch(job_id, timeout=timeout):
            job = event.job
            if on_event:
                on_event(event)
        return job

    # Results.

    def fetch(self, job_id: str, out_dir: Union[str, os.PathLike],
              progress: Optional[Progress] = None) -> FetchStats:
        """Downloads every result file of a SUCCEEDED job into ``out_dir``.

        Files land at their relative paths (``out_dir`` is created when
        absent). A file already there with the right size and sha256 is kept;
        otherwise bytes go to ``<path>.part``, resuming from its current size,
        and the .part is renamed over ``<path>`` only after its size and
        sha256 match GetJob's entry. A fetch interrupted and run again
        continues from the .part files.

        Raises:
            CatqError: FAILED_PRECONDITION when the job has not SUCCEEDED;
                INVALID_ARGUMENT for a result path that is absolute or holds
                ".." (all are checked before anything is written); DATA_LOSS
                when a chunk is not the one asked for or the finished file's
                sha256 differs (a corrupt .part is discarded and fetched once
                more from byte 0 before that); the stream's status.
            OSError: a local write failed.
        """
        out_dir = os.fspath(out_dir)
        stats = FetchStats(job=self.get_job(job_id))
        job = stats.job
        if job.state != catq_pb2.JOB_STATE_SUCCEEDED:
            raise CatqError(grpc.StatusCode.FAILED_PRECONDITION,
                            f"job '{job_id}' is "
                            f"{catq_pb2.JobState.Name(job.state)}, not "
                            "JOB_STATE_SUCCEEDED: nothing to fetch")
        for entry in job.result_files:
            try:
                check_relative_path(entry.path)
            except ValueError as e:
                raise CatqError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"job '{job_id}' result: {e}") from None
        total = sum(entry.size for entry in job.result_files)
        os.makedirs(out_dir, exist_ok=True)
        done = 0
        if progress:
            progress(done, total)
        for entry in job.result_files:
            path = os.path.join(out_dir, *entry.path.split("/"))
            if _is_complete(path, entry):
                stats.files_already_present += 1
            else:
                stats.bytes_received += self._fetch_file(
                    job_id, entry, path, done, total, progress)
            done += entry.size
            if progress:
                progress(done, total)
        return stats

    def _fetch_file(self, job_id: str, entry: catq_pb2.FileEntry, path: str,
                    done_before: int, total: int,
                    progress: Optional[Progress]) -> int:
        """One result file into ``path`` through ``path``.part, verified;
        returns the bytes received."""
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        part = path + ".part"
        received = 0
        # A second pass from byte 0 when a resumed .part turns out corrupt.
        for attempt in range(2):
            offset = 0
            if attempt == 0 and os.path.isfile(part):
                have = os.path.getsize(part)
                offset = have if have <= entry.size else 0
            with open(part, "ab" if offset else "wb") as out:
                if offset < entry.size:
                    received += self._stream_result_file(
                        job_id, entry, offset, out, done_before, total,
                        progress)
                out.flush()
                os.fsync(out.fileno())
            if sha256_of_file(part) == entry.sha256:
                os.replace(part, path)
                _sync_directory(directory)
                return received
            if offset == 0:
                break  # Fetched whole and still wrong: not a stale .part.
        raise CatqError(grpc.StatusCode.DATA_LOSS,
                        f"{entry.path}: received bytes hash to another "
                        f"sha256 than '{entry.sha256}'", "FetchResult")

    def _stream_result_file(self, job_id: str, entry: catq_pb2.FileEntry,
                            offset: int, out: BinaryIO, done_before: int,
                            total: int, progress: Optional[Progress]) -> int:
        """FetchResult of one file from ``offset`` appended to ``out``;
        returns the bytes received."""
        request = catq_pb2.FetchResultRequest(job_id=job_id, path=entry.path,
                                              offset=offset)
        call = self._stub.FetchResult(request, metadata=self._metadata)
        at = offset
        first = True
        try:
            for chunk in call:
                _check_chunk(chunk, entry, at, first)
                first = False
                out.write(chunk.data)
                at += len(chunk.data)
                if progress:
                    progress(done_before + at, total)
        except grpc.RpcError as e:
            raise CatqError.from_rpc_error("FetchResult", e) from None
        finally:
            call.cancel()  # After a local error; no effect on an ended call.
        if at != entry.size:
            raise CatqError(grpc.StatusCode.DATA_LOSS,
                            f"{entry.path}: the stream ended at byte {at} of "
                            f"{entry.size}", "FetchResult")
        return at - offset


def _is_complete(path: str, entry: catq_pb2.FileEntry) -> bool:
    return (os.path.isfile(path) and os.path.getsize(path) == entry.size
            and sha256_of_file(path) == entry.sha256)


def _check_chunk(chunk: catq_pb2.FetchResultChunk, entry: catq_pb2.FileEntry,
                 expected_offset: int, first: bool) -> None:
    """A chunk must continue exactly what was asked for; the first one of a
    file must describe the file as GetJob did."""
    def loss(message: str) -> CatqError:
        return CatqError(grpc.StatusCode.DATA_LOSS, message, "FetchResult")

    if chunk.path != entry.path:
        raise loss(f"got a chunk of '{chunk.path}' while fetching "
                   f"'{entry.path}'")
    if chunk.offset != expected_offset:
        raise loss(f"{entry.path}: chunk at offset {chunk.offset}, expected "
                   f"{expected_offset}")
    if first and (chunk.file_size != entry.size
                  or chunk.sha256 != entry.sha256):
        raise loss(f"{entry.path}: first chunk gives {chunk.file_size} "
                   f"bytes, sha256 '{chunk.sha256}'; GetJob gives "
                   f"{entry.size} bytes, sha256 '{entry.sha256}'")
    if len(chunk.data) > entry.size - expected_offset:
        raise loss(f"{entry.path}: chunk at offset {chunk.offset} runs past "
                   f"the file's {entry.size} bytes")


def _sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
