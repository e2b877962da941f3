"""catq_client.collect_statistics against catq's own calibration.

A small PyTorch Llama written here (RMSNorm, rotate-half RoPE, grouped-query
attention, SwiGLU) runs stories260K, imported to the Hugging Face layout with
`catq import-llama2c`, over the first 16 documents of tinystories_197k.txt,
tokenized here with the llama2.c tokenizer. Then:

- the Python statistics equal `catq calibrate --calib-tokens` on the same ids
  (same tensors, dtypes, shapes and token counts; every Sx within 1e-6
  relative Frobenius distance), and `--calib-text` on the text gives the same
  file as the ids (the tokenizer here is catq's);
- through a real `catq serve`, a block-CAT W4A4 job calibrated with the
  Python statistics (CALIBRATION_KIND_STATISTICS) and one with the token ids
  (CALIBRATION_KIND_TOKEN_IDS) store int4 weights that differ in at most
  0.01% of positions, each by at most one step.

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
import tempfile
import unittest

try:
    import numpy as np
    import torch
    from torch import nn
    import torch.nn.functional as F
except ImportError as error:  # pragma: no cover: depends on the machine
    np = torch = F = None

    class nn:  # noqa: N801: lets the model classes below be defined; every test skips
        Module = object

    MISSING_TORCH = f"PyTorch or NumPy is not installed ({error})"
else:
    MISSING_TORCH = None

CATQ = os.environ.get("CATQ_BINARY", "")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SHARED = os.environ.get("CATQ_SHARED_DIR") or os.path.join(ROOT, "..", "shared")
STORIES = os.path.join(SHARED, "models", "stories260K")
TEXT = os.path.join(SHARED, "data", "tinystories_197k.txt")
DOCUMENTS = 16
LISTENING = "catq serve: listening on "


def skip_reason():
    if MISSING_TORCH:
        return MISSING_TORCH
    if not (os.path.isfile(CATQ) and os.access(CATQ, os.X_OK)):
        return "CATQ_BINARY does not name the catq executable"
    for path in (os.path.join(STORIES, "stories260K.bin"),
                 os.path.join(STORIES, "tok512.bin"), TEXT):
        if not os.path.isfile(path):
            return f"{path} is absent (the shared models and data)"
    return None


def run_catq(*args):
    result = subprocess.run([CATQ, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"catq {' '.join(args)} exited "
                             f"{result.returncode}:\n{result.stdout}")
    return result.stdout


# ---------------------------------------------------------------------------
# safetensors, read by hand

NP_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8",
             "I32": "<i4", "U8": "u1"}


def read_safetensors(path):
    """(header without __metadata__, {name: numpy array})."""
    with open(path, "rb") as f:
        data = f.read()
    (size,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8:8 + size])
    header.pop("__metadata__", None)
    base = 8 + size
    arrays = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        arrays[name] = np.frombuffer(data[base + begin:base + end],
                                     dtype=NP_DTYPES[info["dtype"]]
                                     ).reshape(info["shape"])
    return header, arrays


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
# A PyTorch Llama in the Hugging Face module layout

class RMSNorm(nn.Module):
    def __init__(self, weight, eps):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.eps = eps

    def forward(self, x):
        # The mean square in float64, as catq takes it.
        inv = torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + self.eps)
        return x * inv.float() * self.weight


def rotate_half_rope(x, cos, sin):
    """x [batch, heads, tokens, head_dim]; (a, b) halves turn by the angle."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads = c["num_attention_heads"]
        self.kv_heads = c["num_key_value_heads"]
        self.head_dim = c["hidden_size"] // self.heads
        d, kv = c["hidden_size"], self.kv_heads * self.head_dim
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, kv, bias=False)
        self.v_proj = nn.Linear(d, kv, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin):
        batch, tokens, _ = x.shape

        def heads(y, n):
            return y.view(batch, tokens, n, self.head_dim).transpose(1, 2)

        q = rotate_half_rope(heads(self.q_proj(x), self.heads), cos, sin)
        k = rotate_half_rope(heads(self.k_proj(x), self.kv_heads), cos, sin)
        v = heads(self.v_proj(x), self.kv_heads)
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = q @ k.transpose(-1, -2) / self.head_dim ** 0.5
        causal = torch.ones(tokens, tokens, dtype=torch.bool).triu(1)
        weights = scores.masked_fill(causal, float("-inf")).softmax(-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, tokens, -1)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, h = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(d, h, bias=False)
        self.up_proj = nn.Linear(d, h, bias=False)
        self.down_proj = nn.Linear(h, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, eps = c["hidden_size"], c.get("rms_norm_eps", 1e-6)
        self.input_layernorm = RMSNorm(torch.ones(d), eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(torch.ones(d), eps)
        self.mlp = MLP(c)

    def forward(self, h, cos, sin):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(torch.ones(c["hidden_size"]), c.get("rms_norm_eps", 1e-6))


class LlamaForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.model = Decoder(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def forward(self, input_ids, attention_mask=None):
        # Right padding only: causal attention keeps the real tokens from
        # seeing it, so attention_mask needs no other use here.
        tokens = input_ids.shape[1]
        head_dim = self.config["hidden_size"] // self.config["num_attention_heads"]
        theta = self.config.get("rope_theta", 10000.0)
        i = torch.arange(head_dim // 2, dtype=torch.float64)
        angle = torch.arange(tokens, dtype=torch.float64)[:, None] * theta ** (-2 * i / head_dim)
        cos, sin = angle.cos().float(), angle.sin().float()
        h = self.model.embed_tokens(input_ids)
        for layer in self.model.layers:
            h = layer(h, cos, sin)
        return self.lm_head(self.model.norm(h))

    @classmethod
    def from_directory(cls, path):
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        model = cls(config)
        tensors = {}
        for file in sorted(glob.glob(os.path.join(path, "*.safetensors"))):
            tensors.update(read_safetensors(file)[1])
        if "lm_head.weight" not in tensors:  # tied embeddings
            tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
        state = {name: torch.from_numpy(array.astype(np.float32))
                 for name, array in tensors.items()}
        model.load_state_dict(state, strict=True)
        return model.eval()


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


class Server:
    """`catq serve` on a free loopback port, until stop()."""

    def __init__(self, data_dir):
        self.process = subprocess.Popen(
            [CATQ, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir,
             "--workers", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = []
        self.address = None
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith(LISTENING):
                self.address = line[len(LISTENING):].split(",")[0].strip()
                break
        if self.address is None:
            self.process.wait()
            raise RuntimeError(f"catq serve exited {self.process.returncode} "
                               f"before listening:\n{''.join(self.output)}")

    def stop(self):
        self.process.terminate()
        rest, _ = self.process.communicate(timeout=120)
        self.output.append(rest)
        return self.process.returncode


@unittest.skipIf(skip_reason(), skip_reason())
class CollectStatisticsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        from catq_client import collect_statistics

        cls.dir = tempfile.mkdtemp(prefix="catq_statistics_test_")
        cls.model_dir = cls.path("stories260K")
        run_catq("import-llama2c", "--model", os.path.join(STORIES, "stories260K.bin"),
                 "--tokenizer", os.path.join(STORIES, "tok512.bin"),
                 "--out", cls.model_dir)
        cls.model = LlamaForCausalLM.from_directory(cls.model_dir)
        context = cls.model.config["max_position_embeddings"]

        tokenizer = load_tokenizer(os.path.join(STORIES, "tok512.bin"))
        cls.documents = first_documents(TEXT, DOCUMENTS)
        cls.text_path = cls.path("calib.txt")
        with open(cls.text_path, "w", encoding="utf-8") as f:
            f.write("\n".join(cls.documents) + "\n")
        cls.ids = [encode(tokenizer, d)[:context] for d in cls.documents]
        cls.ids_path = cls.path("calib.ids")
        flat = []
        for doc in cls.ids:
            flat += ([-1] if flat else []) + doc
        with open(cls.ids_path, "wb") as f:
            f.write(struct.pack(f"<{len(flat)}i", *flat))

        # Half the documents one by one, the rest as right-padded batches of
        # four whose attention_mask leaves the padding out.
        def batches():
            half = len(cls.ids) // 2
            yield from cls.ids[:half]
            rest = cls.ids[half:]
            for b in range(0, len(rest), 4):
                group = rest[b:b + 4]
                width = max(len(d) for d in group)
                yield {"input_ids": torch.tensor([d + [0] * (width - len(d)) for d in group]),
                       "attention_mask": torch.tensor(
                           [[1] * len(d) + [0] * (width - len(d)) for d in group])}

        cls.python_stats = cls.path("python.safetensors")
        torch.set_num_threads(1)
        cls.tokens = collect_statistics(cls.model, batches(), cls.python_stats)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def path(cls, *parts):
        return os.path.join(cls.dir, *parts)

    def test_tokenizer_matches_catq(self):
        from_ids = self.path("from_ids.safetensors")
        from_text = self.path("from_text.safetensors")
        run_catq("calibrate", "--model", self.model_dir, "--calib-tokens", self.ids_path,
                 "--out", from_ids, "--threads", "1")
        run_catq("calibrate", "--model", self.model_dir, "--calib-text", self.text_path,
                 "--out", from_text, "--threads", "1")
        with open(from_ids, "rb") as a, open(from_text, "rb") as b:
            self.assertEqual(a.read(), b.read(),
                             "the ids tokenized here differ from catq's tokenization")

    def test_statistics_equal_catq_calibrate(self):
        catq_stats = self.path("catq.safetensors")
        run_catq("calibrate", "--model", self.model_dir, "--calib-tokens", self.ids_path,
                 "--out", catq_stats)
        want_header, want = read_safetensors(catq_stats)
        got_header, got = read_safetensors(self.python_stats)
        # The same layout: names, order, dtypes, shapes and offsets.
        self.assertEqual(list(got_header.items()), list(want_header.items()))
        layers = self.model.config["num_hidden_layers"]
        self.assertEqual(len(self.tokens), 4 * layers)
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
        print(f"\nmax relative Frobenius difference of Sx over {len(self.tokens)} sites: "
              f"{worst:.3g}")

    def test_unfolded_statistics_equal_catq_calibrate(self):
        from catq_client import collect_statistics

        got_path = self.path("python_unfolded.safetensors")
        want_path = self.path("catq_unfolded.safetensors")
        collect_statistics(self.model, self.ids, got_path, fold_norm_gains=False)
        run_catq("calibrate", "--model", self.model_dir, "--calib-tokens", self.ids_path,
                 "--no-fold-norm-gains", "--out", want_path)
        _, got = read_safetensors(got_path)
        _, want = read_safetensors(want_path)
        _, folded = read_safetensors(self.python_stats)
        self.assertEqual(sorted(got), sorted(want))
        for name in want:
            if name.endswith(".sx"):
                a, b = want[name], got[name]
                self.assertLess(np.linalg.norm(b - a) / np.linalg.norm(a), 1e-6, name)
        # The gains matter: folded and unfolded attn_in differ.
        name = "model.layers.0.attn_in.sx"
        self.assertGreater(np.linalg.norm(got[name] - folded[name]) / np.linalg.norm(got[name]),
                           1e-2)

    def test_block_statistics_are_the_diagonal_blocks_and_serve_catq(self):
        from catq_client import collect_statistics

        # The same batches both times (batching changes the forward's rounding).
        blocks_path = self.path("python_blocks16.safetensors")
        full_path = self.path("python_full.safetensors")
        collect_statistics(self.model, self.ids, blocks_path, block_size=16)
        collect_statistics(self.model, self.ids, full_path)
        header, blocks = read_safetensors(blocks_path)
        _, full = read_safetensors(full_path)
        d, h = self.model.config["hidden_size"], self.model.config["intermediate_size"]
        self.assertEqual(header["model.layers.0.attn_in.sx"]["shape"], [d // 16, 16, 16])
        self.assertEqual(header["model.layers.0.mlp_out.sx"]["shape"], [h // 16, 16, 16])
        self.assertEqual(header["model.layers.0.mlp_out.sx_tail"]["shape"],
                         [h % 16, h % 16])
        for name, array in full.items():
            if name.endswith(".sx"):
                n = array.shape[0]
                for b in range(n // 16):
                    np.testing.assert_allclose(
                        blocks[name][b], array[16 * b:16 * b + 16, 16 * b:16 * b + 16],
                        rtol=1e-12, atol=0, err_msg=f"{name} block {b}")
                if n % 16:
                    np.testing.assert_allclose(blocks[name + "_tail"],
                                               array[n - n % 16:, n - n % 16:],
                                               rtol=1e-12, atol=0, err_msg=name + "_tail")
            else:
                np.testing.assert_allclose(blocks[name], array, rtol=1e-12, err_msg=name)
        # catq reads it (every check of site_statistics.h) and quantizes.
        run_catq("quantize", "--quiet", "--model", self.model_dir, "--out",
                 self.path("out_blocks16"), "--recipe", "cat", "--block-size", "16",
                 "--a-bits", "4", "--calib-stats", blocks_path)

    def test_cat_jobs_from_python_statistics_and_token_ids_agree(self):
        from catq_client import Client, catq_pb2

        server = Server(self.path("data"))
        try:
            with Client(server.address) as client:
                model = client.upload_model(self.model_dir, "stories260K")
                outputs = []
                for path, kind in ((self.python_stats, "statistics"),
                                   (self.ids_path, "token_ids")):
                    calibration = client.upload_calibration(path, kind=kind)
                    job = client.submit(
                        model.model_id,
                        {"method": "cat", "block_size": 16, "activation_bits": 4},
                        calibration_id=calibration.calibration_id)
                    job = client.wait(job.job_id)
                    self.assertEqual(job.state, catq_pb2.JOB_STATE_SUCCEEDED, job.error)
                    out = self.path(f"out_{kind}")
                    client.fetch(job.job_id, out)
                    outputs.append(packed_weights(out))
        finally:
            code = server.stop()
        self.assertEqual(code, 0, "".join(server.output))

        from_stats, from_ids = outputs
        self.assertEqual(sorted(from_stats), sorted(from_ids))
        self.assertEqual(len(from_ids), 7 * self.model.config["num_hidden_layers"])
        differing = total = 0
        for name, q in from_ids.items():
            diff = np.abs(from_stats[name] - q)
            self.assertLessEqual(int(diff.max()), 1, name)
            differing += int((diff != 0).sum())
            total += q.size
        print(f"\nint4 weights differing between the two jobs: {differing} of {total} "
              f"({100.0 * differing / total:.4f}%)")
        self.assertLessEqual(differing, 1e-4 * total)


if __name__ == "__main__":
    unittest.main()
