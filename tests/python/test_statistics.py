"""catq_client.collect_statistics against catq's own calibration.

The package's PyTorch Llama (catq_client.torch_llama: RMSNorm, rotate-half
RoPE, grouped-query attention, SwiGLU) runs stories260K, imported to the
Hugging Face layout with `catq import-llama2c`, over the first 16 documents
of tinystories_197k.txt, tokenized here with the llama2.c tokenizer. Then:

- the Python statistics equal `catq calibrate --calib-tokens` on the same ids
  (same tensors, dtypes, shapes and token counts; every Sx within 1e-6
  relative Frobenius distance), and `--calib-text` on the text gives the same
  file as the ids (the tokenizer here is catq's);
- through a real `catq serve`, a block-CAT W4A4 job calibrated with the
  Python statistics (CALIBRATION_KIND_STATISTICS) and one with the token ids
  (CALIBRATION_KIND_TOKEN_IDS) store int4 weights that differ in at most
  0.01% of positions, each by at most one step;
- client/python/examples/pipeline.py --collect-tokens with the same ids
  collects 32 x 32 diagonal blocks, uploads them, runs a block-32 CAT W4A4
  job, prints its report and fetches int4 weights within the same bar of
  the job calibrated server-side with the ids.

Needs CATQ_BINARY, catq_client on PYTHONPATH (ctest sets both), PyTorch and
NumPy (Debian's python3-torch) and ../shared beside the checkout (or
CATQ_SHARED_DIR); skips, saying which is missing, otherwise.
"""

import glob
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

try:
    import numpy as np
    import torch
except ImportError as error:  # pragma: no cover: depends on the machine
    np = torch = None
    MISSING_TORCH = f"PyTorch or NumPy is not installed ({error})"
else:
    MISSING_TORCH = None

from catq_client import SITES, site_key, write_token_ids
from catq_client.safetensors_file import read_safetensors as read_raw
from catq_testing import Server, have_catq, run_catq

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SHARED = (os.environ.get("CATQ_SHARED_DIR")
          or os.path.join(ROOT, "..", "shared"))
STORIES = os.path.join(SHARED, "models", "stories260K")
TEXT = os.path.join(SHARED, "data", "tinystories_197k.txt")
EXAMPLE = os.path.join(ROOT, "client", "python", "examples", "pipeline.py")
DOCUMENTS = 16


def skip_reason():
    if MISSING_TORCH:
        return MISSING_TORCH
    if not have_catq():
        return "CATQ_BINARY does not name the catq executable"
    for path in (os.path.join(STORIES, "stories260K.bin"),
                 os.path.join(STORIES, "tok512.bin"), TEXT):
        if not os.path.isfile(path):
            return f"{path} is absent (the shared models and data)"
    return None


NP_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8",
             "I32": "<i4", "U8": "u1"}


def read_safetensors(path):
    """(header without __metadata__, {name: numpy array})."""
    header, raw = read_raw(path)
    return header, {name: np.frombuffer(raw[name],
                                        dtype=NP_DTYPES[info["dtype"]]
                                        ).reshape(info["shape"])
                    for name, info in header.items()}


# ---------------------------------------------------------------------------
# The llama2.c tokenizer (llama2.c's encode: BOS, dummy prefix, UTF-8
# characters or byte fallback, then the best-scoring merge until none)

def load_tokenizer(path):
    with open(path, "rb") as f:
        data = f.read()
    offset = 4  # max_token_length
    pieces, scores = [], []
    while offset < len(data):
        score, length = struct.unpack_from("<fi", data, offset)
        offset += 8
        pieces.append(data[offset:offset + length])
        scores.append(score)
        offset += length
    index = {}
    for i, piece in enumerate(pieces):
        index.setdefault(piece, i)
    return pieces, scores, index


def encode(tokenizer, text):
    pieces, scores, index = tokenizer
    ids = [1]
    raw = text.encode("utf-8")
    if raw:
        ids.append(index[b" "])
    start = 0
    while start < len(raw):
        end = start + 1
        while end < len(raw) and raw[end] & 0xC0 == 0x80 and end - start < 4:
            end += 1
        char = raw[start:end]
        ids += [index[char]] if char in index else [b + 3 for b in char]
        start = end
    while True:
        best = None
        for i in range(len(ids) - 1):
            merged = index.get(pieces[ids[i]] + pieces[ids[i + 1]])
            if merged is not None and scores[merged] > -1e10 and (
                    best is None or scores[merged] > scores[best[1]]):
                best = (i, merged)
        if best is None:
            return ids
        ids[best[0]:best[0] + 2] = [best[1]]


def first_documents(path, count):
    """catq's documents of a text without <|endoftext|>: stripped non-empty
    lines."""
    documents = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip(" \t\r\n")
            if line:
                documents.append(line)
                if len(documents) == count:
                    break
    return documents


# ---------------------------------------------------------------------------

def unpack_int4(words):
    """compressed-tensors pack-quantized: nibble k % 8 of int32 word k / 8
    holds q + 8."""
    u = words.astype("<i4").view("<u4")
    nibbles = (u[..., None] >> (4 * np.arange(8, dtype=np.uint32))) & 0xF
    return nibbles.reshape(*u.shape[:-1], -1).astype(np.int16) - 8


def packed_weights(out_dir):
    weights = {}
    for file in sorted(glob.glob(os.path.join(out_dir, "*.safetensors"))):
        for name, array in read_safetensors(file)[1].items():
            if name.endswith(".weight_packed"):
                weights[name] = unpack_int4(array)
    return weights


@unittest.skipIf(skip_reason(), skip_reason())
class CollectStatisticsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from catq_client import collect_statistics
        from catq_client.torch_llama import load_llama

        cls.dir = tempfile.mkdtemp(prefix="catq_statistics_test_")
        cls.model_dir = cls.path("stories260K")
        run_catq("import-llama2c", "--model",
                 os.path.join(STORIES, "stories260K.bin"),
                 "--tokenizer", os.path.join(STORIES, "tok512.bin"),
                 "--out", cls.model_dir)
        cls.model = load_llama(cls.model_dir)
        cls.config = cls.model.config
        context = cls.config.max_position_embeddings

        tokenizer = load_tokenizer(os.path.join(STORIES, "tok512.bin"))
        cls.documents = first_documents(TEXT, DOCUMENTS)
        cls.text_path = cls.path("calib.txt")
        with open(cls.text_path, "w", encoding="utf-8") as f:
            f.write("\n".join(cls.documents) + "\n")
        cls.ids = [encode(tokenizer, d)[:context] for d in cls.documents]
        cls.ids_path = cls.path("calib.ids")
        write_token_ids(cls.ids_path, cls.ids)

        # Half the documents one by one, the rest as right-padded batches of
        # four whose attention_mask leaves the padding out.
        def batches():
            half = len(cls.ids) // 2
            yield from cls.ids[:half]
            rest = cls.ids[half:]
            for b in range(0, len(rest), 4):
                group = rest[b:b + 4]
                width = max(len(d) for d in group)
                yield {"input_ids": torch.tensor(
                           [d + [0] * (width - len(d)) for d in group]),
                       "attention_mask": torch.tensor(
                           [[1] * len(d) + [0] * (width - len(d))
                            for d in group])}

        cls.python_stats = cls.path("python.safetensors")
        torch.set_num_threads(1)
        cls.tokens = collect_statistics(cls.model, batches(),
                                        cls.python_stats)
        cls._server = None

    @classmethod
    def tearDownClass(cls):
        code = cls._server.stop() if cls._server else 0
        shutil.rmtree(cls.dir, ignore_errors=True)
        if code != 0:
            raise AssertionError(f"catq serve exited {code} after SIGTERM:\n"
                                 f"{''.join(cls._server.output)}")

    @classmethod
    def path(cls, *parts):
        return os.path.join(cls.dir, *parts)

    @classmethod
    def server(cls):
        """One `catq serve` for the tests that need it, started once."""
        if cls._server is None:
            cls._server = Server(cls.path("data"))
        return cls._server

    def cat_job_weights(self, calibration_path, kind, block_size):
        """The int4 weights of a block-CAT W4A4 job on stories260K,
        calibrated with ``calibration_path`` (of ``kind``)."""
        from catq_client import Client, catq_pb2

        with Client(self.server().address) as client:
            model = client.upload_model(self.model_dir, "stories260K")
            calibration = client.upload_calibration(calibration_path,
                                                    kind=kind)
            job = client.submit(
                model.model_id,
                {"method": "cat", "block_size": block_size,
                 "activation_bits": 4},
                calibration_id=calibration.calibration_id)
            job = client.wait(job.job_id)
            self.assertEqual(job.state, catq_pb2.JOB_STATE_SUCCEEDED,
                             job.error)
            out = self.path(f"out_{kind}_{block_size}")
            client.fetch(job.job_id, out)
        return packed_weights(out)

    def assert_int4_weights_agree(self, got, want):
        """The bar: at most 0.01% of the int4 values differ, each by one
        step."""
        self.assertEqual(sorted(got), sorted(want))
        self.assertEqual(len(want), 7 * self.config.num_hidden_layers)
        differing = total = 0
        for name, q in want.items():
            diff = np.abs(got[name] - q)
            self.assertLessEqual(int(diff.max()), 1, name)
            differing += int((diff != 0).sum())
            total += q.size
        print(f"\nint4 weights differing: {differing} of {total} "
              f"({100.0 * differing / total:.4f}%)")
        self.assertLessEqual(differing, 1e-4 * total)

    def test_tokenizer_matches_catq(self):
        from_ids = self.path("from_ids.safetensors")
        from_text = self.path("from_text.safetensors")
        run_catq("calibrate", "--model", self.model_dir, "--calib-tokens",
                 self.ids_path, "--out", from_ids, "--threads", "1")
        run_catq("calibrate", "--model", self.model_dir, "--calib-text",
                 self.text_path, "--out", from_text, "--threads", "1")
        with open(from_ids, "rb") as a, open(from_text, "rb") as b:
            self.assertEqual(
                a.read(), b.read(),
                "the ids tokenized here differ from catq's tokenization")

    def test_statistics_equal_catq_calibrate(self):
        catq_stats = self.path("catq.safetensors")
        run_catq("calibrate", "--model", self.model_dir, "--calib-tokens",
                 self.ids_path, "--out", catq_stats)
        want_header, want = read_safetensors(catq_stats)
        got_header, got = read_safetensors(self.python_stats)
        # The same layout: names, order, dtypes, shapes and offsets.
        self.assertEqual(list(got_header.items()), list(want_header.items()))
        self.assertEqual(len(self.tokens),
                         4 * self.config.num_hidden_layers)
        total = sum(len(d) for d in self.ids)
        worst = 0.0
        for key, tokens in self.tokens.items():
            self.assertEqual(tokens, total, key)
            self.assertEqual(int(want[key + ".tokens"][0]), total, key)
            self.assertEqual(int(got[key + ".tokens"][0]), total, key)
            a, b = want[key + ".sx"], got[key + ".sx"]
            relative = np.linalg.norm(b - a) / np.linalg.norm(a)
            worst = max(worst, relative)
            self.assertLess(relative, 1e-6, key)
            for name in (".range_sq_sum", ".norm_sq_sum", ".absmax"):
                np.testing.assert_allclose(got[key + name], want[key + name],
                                           rtol=1e-5, err_msg=key + name)
        print(f"\nmax relative Frobenius difference of Sx over "
              f"{len(self.tokens)} sites: {worst:.3g}")

    def test_unfolded_statistics_equal_catq_calibrate(self):
        from catq_client import collect_statistics

        got_path = self.path("python_unfolded.safetensors")
        want_path = self.path("catq_unfolded.safetensors")
        collect_statistics(self.model, self.ids, got_path,
                           fold_norm_gains=False)
        run_catq("calibrate", "--model", self.model_dir, "--calib-tokens",
                 self.ids_path, "--no-fold-norm-gains", "--out", want_path)
        _, got = read_safetensors(got_path)
        _, want = read_safetensors(want_path)
        _, folded = read_safetensors(self.python_stats)
        self.assertEqual(sorted(got), sorted(want))
        for name in want:
            if name.endswith(".sx"):
                a, b = want[name], got[name]
                self.assertLess(np.linalg.norm(b - a) / np.linalg.norm(a),
                                1e-6, name)
        # The gains matter: folded and unfolded attn_in differ.
        name = "model.layers.0.attn_in.sx"
        self.assertGreater(np.linalg.norm(got[name] - folded[name])
                           / np.linalg.norm(got[name]), 1e-2)

    def test_block_statistics_are_the_diagonal_blocks_and_serve_catq(self):
        from catq_client import collect_statistics

        # The same batches both times (batching changes the forward's
        # rounding).
        blocks_path = self.path("python_blocks16.safetensors")
        full_path = self.path("python_full.safetensors")
        collect_statistics(self.model, self.ids, blocks_path, block_size=16)
        collect_statistics(self.model, self.ids, full_path)
        header, blocks = read_safetensors(blocks_path)
        _, full = read_safetensors(full_path)
        d, h = self.config.hidden_size, self.config.intermediate_size
        self.assertEqual(header["model.layers.0.attn_in.sx"]["shape"],
                         [d // 16, 16, 16])
        self.assertEqual(header["model.layers.0.mlp_out.sx"]["shape"],
                         [h // 16, 16, 16])
        self.assertEqual(header["model.layers.0.mlp_out.sx_tail"]["shape"],
                         [h % 16, h % 16])
        for name, array in full.items():
            if name.endswith(".sx"):
                n = array.shape[0]
                for b in range(n // 16):
                    np.testing.assert_allclose(
                        blocks[name][b],
                        array[16 * b:16 * b + 16, 16 * b:16 * b + 16],
                        rtol=1e-12, atol=0, err_msg=f"{name} block {b}")
                if n % 16:
                    np.testing.assert_allclose(
                        blocks[name + "_tail"],
                        array[n - n % 16:, n - n % 16:],
                        rtol=1e-12, atol=0, err_msg=name + "_tail")
            else:
                np.testing.assert_allclose(blocks[name], array, rtol=1e-12,
                                           err_msg=name)
        # catq reads it (every check of site_statistics.h) and quantizes.
        run_catq("quantize", "--quiet", "--model", self.model_dir, "--out",
                 self.path("out_blocks16"), "--recipe", "cat",
                 "--block-size", "16", "--a-bits", "4", "--calib-stats",
                 blocks_path)

    def test_cat_jobs_from_python_statistics_and_token_ids_agree(self):
        self.assert_int4_weights_agree(
            self.cat_job_weights(self.python_stats, "statistics", 16),
            self.cat_job_weights(self.ids_path, "token_ids", 16))

    def test_example_pipeline_collects_uploads_and_agrees(self):
        layers = self.config.num_hidden_layers
        total = sum(len(d) for d in self.ids)
        out = self.path("pipeline_out")
        result = subprocess.run(
            [sys.executable, EXAMPLE, "--server", self.server().address,
             "--model", self.model_dir, "--collect-tokens", self.ids_path,
             "--collect-block-size", "32", "--collect-loader", "torch_llama",
             "--recipe", "cat", "--block-size", "32", "--a-bits", "4",
             "--out", out],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            check=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("loaded with catq_client.torch_llama.load_llama "
                      f"(float32); {DOCUMENTS} of {DOCUMENTS} documents, "
                      f"{total} tokens", result.stderr)
        self.assertIn(f"collect: {4 * layers} sites ({layers} layers x 4), "
                      f"{total} tokens each, 32x32 diagonal blocks",
                      result.stderr)
        self.assertIn(f"succeeded, {layers}/{layers} tasks", result.stderr)
        self.assertIn(f"{7 * layers} linears quantized (cat)", result.stdout)
        self.assertIn(f"output: {out}", result.stdout)

        # The statistics it wrote beside the output: every site of every
        # layer, each over every token, kept as 32 x 32 diagonal blocks.
        header, stats = read_safetensors(out + ".statistics.safetensors")
        keys = {name.rsplit(".", 1)[0] for name in header}
        self.assertEqual(keys, {site_key(layer, site)
                                for layer in range(layers)
                                for site in SITES})
        for key in keys:
            self.assertEqual(int(stats[key + ".tokens"][0]), total, key)
        d = self.config.hidden_size
        self.assertEqual(header["model.layers.0.attn_in.sx"]["shape"],
                         [d // 32, 32, 32])
        # The job used them.
        with open(os.path.join(out, "catq_report.json")) as f:
            self.assertEqual(json.load(f)["calibration"]["source"],
                             "statistics")

        self.assert_int4_weights_agree(
            packed_weights(out),
            self.cat_job_weights(self.ids_path, "token_ids", 32))


if __name__ == "__main__":
    unittest.main()
