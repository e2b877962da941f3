#!/usr/bin/python3
"""compare_torch.py: catq's per-site work against the same work in PyTorch.

One site task of recipe ``cat`` (block CAT with k = 128, damping 1e-2,
eigenvalue clip 1e-12, no Hadamard on top; RTN W4 symmetric per output
channel with F16 scales; compressed-tensors int4 packing) is run twice on the
same inputs, each in its own process on the same number of threads:

  catq    ``catq_bench_site`` (bench/site_bench.cc): the library functions the
          service runs, stage by stage, and QuantizeSite as a whole;
  torch   this file's ``--torch-worker``: the same stages written the way
          research code writes them in PyTorch (float64, a loop over the
          blocks with ``torch.linalg.eigh``, ``torch.linalg.solve`` per block
          for W T^-1, fake-quant with torch ops, nibbles packed with shifts).

Inputs are synthetic and deterministic (``torch.manual_seed``): a site
statistics file (catq's format, block size 128) and a safetensors file of F32
weights. Sizes are Llama-7B's: attn_in (d = 4096, read by q/k/v_proj, each
4096 x 4096) and mlp_out (d = 11008, read by down_proj, 4096 x 11008);
``--quick`` uses d = 256 and 688 (a tail block of 48) with 256 rows.

The results must agree: W T^-1 within a relative difference (Frobenius, per
linear) of 1e-5, and the packed int4 levels identical except where a value
sits on a rounding tie (within 1e-3 of a step of the midpoint between the two
levels; counted and printed). Disagreement exits with status 1; speed is only
printed. Without PyTorch the script prints why and exits with status 77
(ctest's skip).

    /usr/bin/python3 bench/compare_torch.py --threads 2 --reps 3  # ~90 s
    /usr/bin/python3 bench/compare_torch.py --quick               # seconds

(``--bench`` names the catq_bench_site binary; build/bench/ by default.)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time

SKIP = 77
LAYER = 0
BLOCK = 128
DAMPING = 1e-2
EIGEN_CLIP = 1e-12
BITS = 4
MAX_LEVEL = (1 << (BITS - 1)) - 1  # symmetric grid: q in [-7, 7]
REL_TOLERANCE = 1e-5
TIE_TOLERANCE = 1e-3  # in steps, around the midpoint of two levels

# (site, dim, [(linear module, rows), ...])
FULL_SITES = [
    ("attn_in", 4096, [("self_attn.q_proj", 4096), ("self_attn.k_proj", 4096),
                       ("self_attn.v_proj", 4096)]),
    ("mlp_out", 11008, [("mlp.down_proj", 4096)]),
]
QUICK_SITES = [
    ("attn_in", 256, [("self_attn.q_proj", 256), ("self_attn.k_proj", 256),
                      ("self_attn.v_proj", 256)]),
    ("mlp_out", 688, [("mlp.down_proj", 256)]),
]
STAGES = ["sw", "solve", "transform", "rtn", "pack"]
STAGE_NAMES = {"sw": "Sw", "solve": "solve", "transform": "W T^-1",
               "rtn": "RTN", "pack": "pack", "total": "total"}


def site_key(site):
    return f"model.layers.{LAYER}.{site}"


def module_name(path):
    return f"model.layers.{LAYER}.{path}"


def partition(dim):
    """[(begin, size)] of the diagonal blocks, the last one smaller when
    BLOCK does not divide dim."""
    return [(b, min(BLOCK, dim - b)) for b in range(0, dim, BLOCK)]


def output_specs(sites):
    """(name, dtype, shape) of the result file, in catq_bench_site's order."""
    specs = []
    for site, dim, linears in sites:
        prefix = f"model.layers.{LAYER}.catq.{site}"
        full, tail = dim // BLOCK, dim % BLOCK
        specs.append((prefix + ".blocks", "F32", [full, BLOCK, BLOCK]))
        if tail:
            specs.append((prefix + ".blocks_tail", "F32", [tail, tail]))
        for path, rows in linears:
            m = module_name(path)
            specs += [(m + ".weight_transformed", "F32", [rows, dim]),
                      (m + ".weight_packed", "I32", [rows, (dim + 7) // 8]),
                      (m + ".weight_scale", "F16", [rows, 1]),
                      (m + ".weight_shape", "I64", [2])]
    return specs


# ---------------------------------------------------------------------------
# safetensors, minimal: a header written up front, tensors appended in order
# (so a writer never holds more than one tensor), tensors read one at a time
# straight into a torch buffer.

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "I64": 8, "I32": 4}


class StreamingWriter:
    def __init__(self, path, specs):
        header, offset = {}, 0
        for name, dtype, shape in specs:
            size = DTYPE_BYTES[dtype]
            for n in shape:
                size *= n
            header[name] = {"dtype": dtype, "shape": list(shape),
                            "data_offsets": [offset, offset + size]}
            offset += size
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        self._sizes = [header[name]["data_offsets"][1] -
                       header[name]["data_offsets"][0] for name, _, _ in specs]
        self._names = [name for name, _, _ in specs]
        self._next = 0
        self._file = open(path, "wb")
        self._file.write(struct.pack("<Q", len(text)) + text)

    def append(self, data):
        data = memoryview(data).cast("B")
        name, size = self._names[self._next], self._sizes[self._next]
        if len(data) != size:
            raise ValueError(f"{name}: {len(data)} bytes, expected {size}")
        self._file.write(data)
        self._next += 1

    def close(self):
        if self._next != len(self._names):
            raise ValueError(f"{len(self._names) - self._next} tensors missing")
        self._file.close()


def read_header(path):
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    return header, 8 + size


def read_tensor(torch, path, header, start, name):
    info = header[name]
    dtype = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
             "I64": torch.int64, "I32": torch.int32}[info["dtype"]]
    t = torch.empty(info["shape"], dtype=dtype)
    with open(path, "rb") as f:
        f.seek(start + info["data_offsets"][0])
        view = memoryview(t.numpy()).cast("B") if dtype != torch.float16 \
            else memoryview(t.view(torch.int16).numpy()).cast("B")
        if f.readinto(view) != len(view):
            raise ValueError(f"{path}: {name} is truncated")
    return t


def tensor_bytes(torch, t):
    """The little-endian bytes of `t` (NumPy has no view of a float16
    tensor's storage, so those go through int16)."""
    t = t.contiguous()
    if t.dtype == torch.float16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


# ---------------------------------------------------------------------------
# Inputs


def write_inputs(torch, sites, tokens, stats_path, weights_path, seed=0):
    """Activations drawn like catq_bench_site's synthetic ones (channel scales
    over two orders of magnitude, a shared rank-4 component, every 97th
    channel an outlier), reduced to catq's statistics format; weights with
    per-column scales."""
    stats, weights = [], []
    for index, (site, dim, linears) in enumerate(sites):
        g = torch.Generator().manual_seed(seed + index)
        scale = torch.exp(1.15 * torch.randn(dim, generator=g))
        scale[::97] *= 20
        mixing = torch.randn(4, dim, generator=g)
        blocks = partition(dim)
        sums = [torch.zeros(n, n, dtype=torch.float64) for _, n in blocks]
        range_sq = torch.zeros(2, dtype=torch.float64)
        for t0 in range(0, tokens, 256):
            n = min(256, tokens - t0)
            x = ((torch.randn(n, 4, generator=g) @ mixing +
                  torch.randn(n, dim, generator=g)) * scale).double()
            for (begin, size), s in zip(blocks, sums):
                xb = x[:, begin:begin + size]
                s += xb.T @ xb
            hi = x.max(dim=1).values.clamp(min=0)
            lo = x.min(dim=1).values.clamp(max=0)
            range_sq[0] += ((hi - lo) ** 2).sum()
            range_sq[1] += ((2 * x.abs().max(dim=1).values) ** 2).sum()
        sums = [(s + s.T) / 2 for s in sums]  # exactly symmetric
        key = site_key(site)
        full = [s for s in sums if s.shape[0] == BLOCK]
        stats.append((key + ".sx", "F64", [len(full), BLOCK, BLOCK],
                      tensor_bytes(torch, torch.stack(full))))
        if sums[-1].shape[0] != BLOCK:
            tail = sums[-1]
            stats.append((key + ".sx_tail", "F64", list(tail.shape),
                          tensor_bytes(torch, tail)))
        trace = sum(float(s.diagonal().sum()) for s in sums)
        stats += [
            (key + ".tokens", "I64", [1], struct.pack("<q", tokens)),
            (key + ".range_sq_sum", "F64", [2], tensor_bytes(torch, range_sq)),
            (key + ".norm_sq_sum", "F64", [1], struct.pack("<d", trace)),
        ]
        column_scale = 0.02 * torch.exp(0.5 * torch.randn(dim, generator=g))
        for path, rows in linears:
            w = (torch.randn(rows, dim, generator=g) * column_scale).float()
            weights.append((module_name(path) + ".weight", "F32", [rows, dim],
                            tensor_bytes(torch, w)))
    for path, tensors in ((stats_path, stats), (weights_path, weights)):
        writer = StreamingWriter(path, [t[:3] for t in tensors])
        for t in tensors:
            writer.append(t[3])
        writer.close()


# ---------------------------------------------------------------------------
# The per-site work in PyTorch, as research code writes it.


def cat_block(torch, sx, sw):
    """T_b = C_b^(1/4) Sx_bb^(-1/2), C_b = Sx_bb^(1/2) Sw_bb Sx_bb^(1/2),
    after damping and with eigenvalues clipped (cat-method.md 2.3, 2.4)."""
    n = sx.shape[0]
    eye = torch.eye(n, dtype=torch.float64)
    if sx.diagonal().max() <= 0 or sw.diagonal().max() <= 0:
        return eye
    sx = sx + DAMPING * sx.diagonal().mean() * eye
    sw = sw + DAMPING * sw.diagonal().mean() * eye
    e, u = torch.linalg.eigh(sx)
    e = e.clamp(min=max(0.0, EIGEN_CLIP * float(e.max())))
    sx_half = (u * e.sqrt()) @ u.T
    sx_inv_half = (u * e.rsqrt()) @ u.T
    c = sx_half @ sw @ sx_half
    c = 0.5 * (c + c.T)
    ec, uc = torch.linalg.eigh(c)
    ec = ec.clamp(min=max(0.0, EIGEN_CLIP * float(ec.max())))
    return ((uc * ec.pow(0.25)) @ uc.T) @ sx_inv_half


def round_up_to_f16(torch, scale):
    """The F16 value at or above each float32 scale (catq stores scales
    rounded up, so that every level stays in range)."""
    half = scale.half()
    below = half.float() < scale
    bumped = (half.view(torch.int16) + 1).view(torch.float16)
    return torch.where(below, bumped, half)


def pack_int4(torch, q):
    """compressed-tensors pack-quantized: element k of a row in word k / 8 at
    bits 4 (k % 8), holding q + 8; padding nibbles hold 8."""
    rows, cols = q.shape
    words = (cols + 7) // 8
    nibbles = torch.full((rows, words * 8), 8, dtype=torch.int64)
    nibbles[:, :cols] = q.to(torch.int64) + 8
    nibbles = nibbles.view(rows, words, 8)
    packed = torch.zeros(rows, words, dtype=torch.int64)
    for i in range(8):
        packed |= nibbles[:, :, i] << (4 * i)
    # uint32 bit patterns stored as int32
    packed = torch.where(packed >= 2**31, packed - 2**32, packed)
    return packed.to(torch.int32)


def torch_site(torch, stats_path, stats_header, stats_start, weights_path,
               weights_header, weights_start, site, dim, linears, writer):
    seconds = dict.fromkeys(STAGES, 0.0)
    key = site_key(site)
    ws = [read_tensor(torch, weights_path, weights_header, weights_start,
                      module_name(path) + ".weight") for path, _ in linears]
    tokens = int(read_tensor(torch, stats_path, stats_header, stats_start,
                             key + ".tokens")[0])
    sx_sum = list(read_tensor(torch, stats_path, stats_header, stats_start,
                              key + ".sx"))
    if key + ".sx_tail" in stats_header:
        sx_sum.append(read_tensor(torch, stats_path, stats_header, stats_start,
                                  key + ".sx_tail"))
    blocks = partition(dim)

    start = time.perf_counter()
    sw = [torch.zeros(n, n, dtype=torch.float64) for _, n in blocks]
    for w in ws:
        w64 = w.double()
        for (begin, n), s in zip(blocks, sw):
            wb = w64[:, begin:begin + n]
            s += wb.T @ wb
        del w64
    seconds["sw"] = time.perf_counter() - start

    start = time.perf_counter()
    t = [cat_block(torch, s / tokens, s_w) for s, s_w in zip(sx_sum, sw)]
    # Stored as float32; W T^-1 inverts the stored T.
    t32 = [b.float() for b in t]
    t = [b.double() for b in t32]
    seconds["solve"] = time.perf_counter() - start
    full = [b for b in t32 if b.shape[0] == BLOCK]
    writer.append(tensor_bytes(torch, torch.stack(full)))
    if t32[-1].shape[0] != BLOCK:
        writer.append(tensor_bytes(torch, t32[-1]))

    for w, (_, rows) in zip(ws, linears):
        start = time.perf_counter()
        w64 = w.double()
        out = torch.empty_like(w64)
        for (begin, n), b in zip(blocks, t):
            out[:, begin:begin + n] = torch.linalg.solve(
                b, w64[:, begin:begin + n], left=False)
        del w64
        wt = out.float()
        del out
        seconds["transform"] += time.perf_counter() - start

        start = time.perf_counter()
        scale = wt.abs().amax(dim=1, keepdim=True) / MAX_LEVEL
        scale16 = round_up_to_f16(torch, scale)
        step = scale16.float()
        q = torch.where(step > 0,
                        torch.clamp(torch.round(wt / step), -MAX_LEVEL,
                                    MAX_LEVEL),
                        torch.zeros_like(wt)).to(torch.int8)
        seconds["rtn"] += time.perf_counter() - start

        start = time.perf_counter()
        packed = pack_int4(torch, q)
        seconds["pack"] += time.perf_counter() - start

        writer.append(tensor_bytes(torch, wt))
        writer.append(tensor_bytes(torch, packed))
        writer.append(tensor_bytes(torch, scale16))
        writer.append(struct.pack("<2q", rows, dim))
        del wt, q, packed
    seconds["total"] = sum(seconds[s] for s in STAGES)
    return seconds


def torch_worker(args):
    import torch  # noqa: the worker runs only where main() found it
    torch.set_num_threads(args.threads)
    stats_header, stats_start = read_header(args.stats)
    weights_header, weights_start = read_header(args.weights)
    sites = QUICK_SITES if args.quick else FULL_SITES
    writer = StreamingWriter(args.out, output_specs(sites))
    figures = {"threads": torch.get_num_threads(), "sites": []}
    for site, dim, linears in sites:
        best = None
        for _ in range(args.reps):
            seconds = torch_site(torch, args.stats, stats_header, stats_start,
                                 args.weights, weights_header, weights_start,
                                 site, dim, linears,
                                 writer if best is None else _NullWriter())
            best = seconds if best is None else \
                {k: min(best[k], v) for k, v in seconds.items()}
        figures["sites"].append({"key": site_key(site), "parts": best})
        print(f"{site_key(site)}: torch {best['total']:.3f} s", file=sys.stderr)
    writer.close()
    figures["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(args.json, "w") as f:
        json.dump(figures, f)


class _NullWriter:
    def append(self, data):
        pass


# ---------------------------------------------------------------------------
# Comparison


def unpack_levels(torch, packed, cols):
    words = packed.to(torch.int64) & 0xFFFFFFFF
    shifts = torch.arange(0, 32, 4, dtype=torch.int64)
    nibbles = (words.unsqueeze(-1) >> shifts) & 0xF
    return (nibbles.reshape(packed.shape[0], -1)[:, :cols] - 8).to(torch.int8)


def compare(torch, catq_path, torch_path, sites):
    """Prints the agreement figures; returns the list of failures."""
    ch, cs = read_header(catq_path)
    th, ts = read_header(torch_path)
    failures = []
    print("\nagreement (catq vs torch)")
    for site, dim, linears in sites:
        prefix = f"model.layers.{LAYER}.catq.{site}"
        names = [prefix + ".blocks"] + \
            ([prefix + ".blocks_tail"] if dim % BLOCK else [])
        for name in names:
            a = read_tensor(torch, catq_path, ch, cs, name).double()
            b = read_tensor(torch, torch_path, th, ts, name).double()
            rel = float((a - b).norm() / b.norm())
            print(f"  {name:44s} T blocks rel. diff {rel:.2e}")
        for path, rows in linears:
            m = module_name(path)
            a = read_tensor(torch, catq_path, ch, cs, m + ".weight_transformed")
            b = read_tensor(torch, torch_path, th, ts, m + ".weight_transformed")
            rel = float((a.double() - b.double()).norm() / b.double().norm())
            sa = read_tensor(torch, catq_path, ch, cs, m + ".weight_scale")
            sb = read_tensor(torch, torch_path, th, ts, m + ".weight_scale")
            scale_rows = int((sa.view(torch.int16) !=
                              sb.view(torch.int16)).sum())
            qa = unpack_levels(torch, read_tensor(torch, catq_path, ch, cs,
                                                  m + ".weight_packed"), dim)
            qb = unpack_levels(torch, read_tensor(torch, torch_path, th, ts,
                                                  m + ".weight_packed"), dim)
            differ = qa != qb
            # A level may differ only where catq's W T^-1 / step sits within
            # TIE_TOLERANCE of the midpoint of the two levels (a tie that the
            # 1e-7 differences of W T^-1 tip either way), or in a row whose
            # scale differs by one F16 step.
            same_scale = (sa == sb).expand_as(differ)
            x = a / sa.float()
            mid = (qa.float() + qb.float()) / 2
            near_tie = ((qa.int() - qb.int()).abs() == 1) & \
                ((x - mid).abs() <= TIE_TOLERANCE)
            unexplained = differ & same_scale & ~near_tie
            adjacent = (sa.view(torch.int16).int() -
                        sb.view(torch.int16).int()).abs() <= 1
            bad_scales = int((~adjacent).sum())
            ties = int((differ & same_scale & near_tie).sum())
            in_scale_rows = int((differ & ~same_scale).sum())
            print(f"  {m:44s} W T^-1 rel. diff {rel:.2e}; levels differ at "
                  f"{int(differ.sum())} of {differ.numel()} ({ties} on a "
                  f"rounding tie, {in_scale_rows} in {scale_rows} rows whose "
                  f"F16 scale differs by one step)")
            if not rel < REL_TOLERANCE:
                failures.append(f"{m}: W T^-1 relative difference {rel:.2e} "
                                f">= {REL_TOLERANCE:g}")
            if int(unexplained.sum()):
                failures.append(f"{m}: {int(unexplained.sum())} levels differ "
                                "away from a rounding tie")
            if bad_scales:
                failures.append(f"{m}: {bad_scales} scales differ by more "
                                "than one F16 step")
    return failures


def print_table(catq, torch_figures):
    print(f"\nseconds per stage, {catq['threads']} threads each "
          "(catq: best of its reps; torch: the same)")
    print(f"{'site':24s} {'stage':8s} {'catq':>9s} {'torch':>9s} "
          f"{'torch/catq':>11s}")
    totals = {"catq": 0.0, "torch": 0.0}
    for c, t in zip(catq["sites"], torch_figures["sites"]):
        for stage in STAGES + ["total"]:
            a, b = c["parts"][stage], t["parts"][stage]
            ratio = f"{b / a:10.2f}x" if a > 0 else f"{'-':>11s}"
            print(f"{c['key']:24s} {STAGE_NAMES[stage]:8s} {a:9.3f} {b:9.3f} "
                  f"{ratio}")
            if stage == "solve":
                eig = c["parts"]["solve_eigen"]
                print(f"{'':24s} {'  eigh':8s} {eig:9.3f} {'':9s} "
                      f"{'':11s} (catq: the two dsyevd eigensolves per block "
                      "alone)")
        totals["catq"] += c["parts"]["total"]
        totals["torch"] += t["parts"]["total"]
        qs = c["quantize_site"]["total"]
        print(f"{c['key']:24s} {'QuantizeSite (with its report)':33s} "
              f"{qs:.3f}  ({t['parts']['total'] / qs:.2f}x)")
    print(f"{'all sites':24s} {'total':8s} {totals['catq']:9.3f} "
          f"{totals['torch']:9.3f} {totals['torch'] / totals['catq']:10.2f}x")
    print(f"\npeak resident memory (ru_maxrss): catq "
          f"{catq['peak_rss_parts_kib'] / 1024:.0f} MiB after the parts runs "
          f"({catq['peak_rss_kib'] / 1024:.0f} MiB with QuantizeSite), torch "
          f"{torch_figures['peak_rss_kib'] / 1024:.0f} MiB")


def run(cmd, env):
    print("+ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, env=env)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--bench", default=os.path.join(
        here, "..", "build", "bench", "catq_bench_site"),
        help="the catq_bench_site binary")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=1,
                        help="runs per site on each side, best kept")
    parser.add_argument("--tokens", type=int, default=2048,
                        help="synthetic calibration tokens per site")
    parser.add_argument("--quick", action="store_true",
                        help="d = 256 and 688, 256 rows per linear")
    parser.add_argument("--workdir", help="keep inputs and results here")
    parser.add_argument("--write-inputs", action="store_true",
                        help=argparse.SUPPRESS)
    parser.add_argument("--torch-worker", action="store_true",
                        help=argparse.SUPPRESS)
    parser.add_argument("--stats", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sites = QUICK_SITES if args.quick else FULL_SITES
    if args.write_inputs:
        import torch
        write_inputs(torch, sites, args.tokens, args.stats, args.weights)
        return 0
    if args.torch_worker:
        torch_worker(args)
        return 0

    # This process imports torch only after both measured processes ran: a
    # child's ru_maxrss starts from its parent's resident size at the fork
    # (Linux keeps the high-water mark across exec).
    if importlib.util.find_spec("torch") is None:
        print("SKIPPED: PyTorch is not installed (Debian's python3-torch)")
        return SKIP
    if not os.path.exists(args.bench):
        print(f"{args.bench} does not exist: build catq_bench_site first",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="compare_torch.") as tmp:
        work = args.workdir or tmp
        os.makedirs(work, exist_ok=True)
        paths = {name: os.path.join(work, name) for name in (
            "stats.safetensors", "weights.safetensors", "catq.safetensors",
            "catq.json", "torch.safetensors", "torch.json")}
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads),
                   OMP_NUM_THREADS=str(args.threads))
        quick = ["--quick"] if args.quick else []
        run([sys.executable, os.path.abspath(__file__), "--write-inputs",
             f"--stats={paths['stats.safetensors']}",
             f"--weights={paths['weights.safetensors']}",
             f"--tokens={args.tokens}"] + quick, env)
        run([args.bench, f"--stats={paths['stats.safetensors']}",
             f"--weights={paths['weights.safetensors']}",
             f"--out={paths['catq.safetensors']}",
             f"--json={paths['catq.json']}", f"--threads={args.threads}",
             f"--reps={args.reps}"], env)
        run([sys.executable, os.path.abspath(__file__), "--torch-worker",
             f"--stats={paths['stats.safetensors']}",
             f"--weights={paths['weights.safetensors']}",
             f"--out={paths['torch.safetensors']}",
             f"--json={paths['torch.json']}", f"--threads={args.threads}",
             f"--reps={args.reps}"] + quick, env)
        import torch
        with open(paths["catq.json"]) as f:
            catq = json.load(f)
        with open(paths["torch.json"]) as f:
            torch_figures = json.load(f)
        print_table(catq, torch_figures)
        failures = compare(torch, paths["catq.safetensors"],
                           paths["torch.safetensors"], sites)
    if failures:
        print("\nDISAGREE:\n  " + "\n  ".join(failures))
        return 1
    print(f"\nagree: W T^-1 within {REL_TOLERANCE:g}, packed levels equal "
          "but for rounding ties")
    return 0


if __name__ == "__main__":
    sys.exit(main())
