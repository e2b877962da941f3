"""catq_client: a Python client of the catq quantization service.

    from catq_client import Client, CatqError, catq_pb2

    with Client("localhost:50051", token="...") as client:
        model = client.upload_model("models/llama")
        job = client.submit(model.model_id, {"method": "rtn"})
        job = client.wait(job.job_id)
        client.fetch(job.job_id, "out/w4")

The messages (catq_pb2) and the stub (catq_pb2_grpc) are generated from
proto/catq/v1/catq.proto at build time into the package ``catq.v1`` beside
this one.

``collect_statistics`` (catq_client.statistics) writes catq's calibration
statistics from a PyTorch Llama; it imports PyTorch only when called.
catq_client.torch_llama (``load_llama``), a Llama in the Hugging Face module
layout for it to run where ``transformers`` is not installed, imports PyTorch
when imported itself, so it is not imported here. ``read_token_ids`` and
``write_token_ids`` (catq_client.token_ids) handle catq's token-id
calibration files.
"""

from catq.v1 import catq_pb2, catq_pb2_grpc

from catq_client.client import (
    MAX_RECEIVE_MESSAGE_BYTES,
    MAX_UPLOAD_CHUNK_BYTES,
    CatqError,
    Client,
    FetchStats,
    Progress,
    check_relative_path,
    default_upload_id,
    sha256_of_file,
)
from catq_client.statistics import SITES, collect_statistics, site_key
from catq_client.token_ids import (
    calibration_sequences,
    read_token_ids,
    write_token_ids,
)

__all__ = [
    "MAX_RECEIVE_MESSAGE_BYTES",
    "MAX_UPLOAD_CHUNK_BYTES",
    "CatqError",
    "Client",
    "FetchStats",
    "Progress",
    "SITES",
    "calibration_sequences",
    "catq_pb2",
    "catq_pb2_grpc",
    "check_relative_path",
    "collect_statistics",
    "default_upload_id",
    "read_token_ids",
    "sha256_of_file",
    "site_key",
    "write_token_ids",
]
