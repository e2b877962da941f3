"""Calibration statistics of a PyTorch Llama, in catq's statistics file format.

:func:`collect_statistics` runs a Hugging Face style Llama (a module tree with
``model.model.layers[i].self_attn.q_proj`` and so on) over calibration
batches and writes what ``catq calibrate`` writes: per layer and site, the
float64 sum ``Sx = sum_t x_t x_t^T`` of the site's inputs, the token count,
the per-token range sums and the channel maxima, as a safetensors file in the
layout of core/cat/site_statistics.h. The file is a calibration of its own:
upload it with ``Client.upload_calibration(path, kind="statistics")`` or pass
it to ``catq quantize --calib-stats``. This is how a model catq cannot run (a
tokenizer, an architecture variant or an attention kernel of its own) is
calibrated where it does run.

The four sites (cat-method.md section 3) are read by forward pre-hooks on the
first linear layer that reads each:

============  ==========================================  ===============
site          input                                       hooked linear
============  ==========================================  ===============
``attn_in``   attention RMSNorm output                    ``q_proj``
``attn_out``  concatenated attention heads                ``o_proj``
``mlp_in``    FFN RMSNorm output                          ``gate_proj``
``mlp_out``   ``silu(gate) * up``                         ``down_proj``
============  ==========================================  ===============

With ``fold_norm_gains`` (catq's default) catq folds the RMSNorm gains into
the weights reading ``attn_in`` and ``mlp_in``, so those sites are the
normalized vectors *without* gain: the collector divides the inputs of
``q_proj`` and ``gate_proj`` by the gain of ``input_layernorm`` and
``post_attention_layernorm``. Pass ``fold_norm_gains=False`` to match a recipe
with ``fold_norm_gains`` off.

Only PyTorch is needed (imported when called); the file is written with the
standard library.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from catq_client.safetensors_file import write_safetensors

#: The four activation sites of a layer, in catq's order.
SITES = ("attn_in", "attn_out", "mlp_in", "mlp_out")

# site -> (attention or MLP submodule, the hooked linear, the RMSNorm whose
# gain the site's input carries, or None)
_SITE_MODULES = {
    "attn_in": ("self_attn", "q_proj", "input_layernorm"),
    "attn_out": ("self_attn", "o_proj", None),
    "mlp_in": ("mlp", "gate_proj", "post_attention_layernorm"),
    "mlp_out": ("mlp", "down_proj", None),
}


def site_key(layer: int, site: str) -> str:
    """The statistics file's key of a site: ``model.layers.{layer}.{site}``."""
    return f"model.layers.{layer}.{site}"


class _SiteAccumulator:
    """The running sums of one site, as catq's SiteStatistics keeps them."""

    def __init__(self, key: str, block_size: Optional[int]) -> None:
        self.key = key
        self.block_size = block_size
        self.dim = 0
        self.blocks: list = []  # float64 [k, k] tensors (one [d, d] when full)
        self.tokens = 0
        self.asymmetric = 0.0  # sum_t (max(x, 0) - min(x, 0))^2
        self.symmetric = 0.0  # sum_t (2 max|x|)^2
        self.absmax = None  # float64 [d]

    def add(self, x) -> None:
        """x: float64 [tokens, d]."""
        import torch

        if x.shape[0] == 0:
            return
        if not bool(torch.isfinite(x).all()):
            row, col = (~torch.isfinite(x)).nonzero()[0].tolist()
            raise ValueError(f"{self.key}: token {self.tokens + row}, "
                             f"channel {col} is {x[row, col].item()}")
        if not self.blocks:
            self.dim = x.shape[1]
            k = self.block_size
            if k is None or k >= self.dim:
                self.block_size = k = self.dim
            self.blocks = [
                torch.zeros(min(k, self.dim - b), min(k, self.dim - b),
                            dtype=torch.float64, device=x.device)
                for b in range(0, self.dim, k)
            ]
            self.absmax = torch.zeros(self.dim, dtype=torch.float64,
                                      device=x.device)
        elif x.shape[1] != self.dim:
            raise ValueError(f"{self.key}: input has {x.shape[1]} channels, "
                             f"earlier inputs had {self.dim}")
        k = self.block_size
        for b, block in enumerate(self.blocks):
            part = x[:, b * k:b * k + block.shape[0]]
            block.addmm_(part.T, part)
        hi = x.max(dim=1).values.clamp(min=0.0)
        lo = x.min(dim=1).values.clamp(max=0.0)
        self.asymmetric += float(((hi - lo) ** 2).sum())
        self.symmetric += float(((2.0 * torch.maximum(hi, -lo)) ** 2).sum())
        self.absmax = torch.maximum(self.absmax, x.abs().max(dim=0).values)
        self.tokens += x.shape[0]

    def tensors(self) -> list:
        """(name, dtype, shape, little-endian bytes) in catq's order."""
        import torch

        blocks = [((b + b.T) * 0.5).cpu().contiguous() for b in self.blocks]
        k = self.block_size
        out = []
        if k == self.dim:
            out.append((f"{self.key}.sx", "F64", [k, k],
                        _f64_bytes(blocks[0])))
        else:
            full = [b for b in blocks if b.shape[0] == k]
            out.append((f"{self.key}.sx", "F64", [len(full), k, k],
                        b"".join(_f64_bytes(b) for b in full)))
            if len(full) < len(blocks):
                r = blocks[-1].shape[0]
                out.append((f"{self.key}.sx_tail", "F64", [r, r],
                            _f64_bytes(blocks[-1])))
        norm_sq = float(sum(torch.diagonal(b).sum() for b in blocks))
        out.append((f"{self.key}.tokens", "I64", [1],
                    struct.pack("<q", self.tokens)))
        out.append((f"{self.key}.range_sq_sum", "F64", [2],
                    struct.pack("<2d", self.asymmetric, self.symmetric)))
        out.append((f"{self.key}.norm_sq_sum", "F64", [1],
                    struct.pack("<d", norm_sq)))
        out.append((f"{self.key}.absmax", "F64", [self.dim],
                    _f64_bytes(self.absmax.cpu())))
        return out


def _f64_bytes(tensor) -> bytes:
    """Little-endian float64 bytes of a CPU tensor, row-major."""
    import torch

    tensor = tensor.detach().to(torch.float64).contiguous()
    try:
        return tensor.numpy().astype("<f8", copy=False).tobytes()
    except (ImportError, RuntimeError):  # a torch built without NumPy
        values = tensor.flatten().tolist()
        return struct.pack(f"<{len(values)}d", *values)


def _decoder_layers(model):
    """``model.model.layers`` of a causal LM, or ``model.layers`` of the bare
    decoder."""
    for owner in (getattr(model, "model", None), model):
        layers = getattr(owner, "layers", None)
        if layers is not None:
            return layers
    raise ValueError("model has neither model.layers nor layers: not a "
                     "Hugging Face style Llama module tree")


def _submodule(layer, index: int, *names: str):
    module = layer
    for name in names:
        module = getattr(module, name, None)
        if module is None:
            raise ValueError(f"model.layers.{index}.{'.'.join(names)}: "
                             "no such module")
    return module


def collect_statistics(model, batches: Iterable[Any], out_path: str,
                       sites: Sequence[str] = SITES,
                       fold_norm_gains: bool = True,
                       block_size: Optional[int] = None) -> dict:
    """Runs ``model`` over ``batches`` and writes the site statistics to
    ``out_path`` (safetensors, core/cat/site_statistics.h).

    Args:
        model: a Hugging Face style Llama (``LlamaForCausalLM`` or the bare
            ``LlamaModel``): ``layers[i]`` with ``self_attn.q_proj``,
            ``self_attn.o_proj``, ``mlp.gate_proj``, ``mlp.down_proj``,
            ``input_layernorm`` and ``post_attention_layernorm``. Any dtype
            and device: inputs are converted to float64 where they are.
        batches: each one a tensor or nested list of token ids ([tokens] or
            [batch, tokens]), called as ``model(ids)``, or a mapping of
            keyword arguments called as ``model(**batch)``; a mapping's
            ``attention_mask`` leaves the masked (padding) positions out of
            the statistics. Ids are taken as they are: begin each document
            with the BOS the model expects, as catq does.
        out_path: the file to write (atomically).
        sites: which of ``attn_in``, ``attn_out``, ``mlp_in``, ``mlp_out`` to
            collect; catq needs all four of every layer.
        fold_norm_gains: statistics of ``attn_in`` and ``mlp_in`` without the
            RMSNorm gain (divided out), what catq's default recipe transforms.
            Raises ValueError when a gain has a zero entry.
        block_size: None (default) keeps each full d x d ``Sx`` matrix;
            ``k`` keeps only its k x k diagonal blocks (what block CAT with
            that k needs: d*k instead of d*d doubles per site).

    Returns:
        the token count of each site key (``model.layers.{i}.{site}``).

    Raises:
        ValueError: an unknown site, a missing module, a non-positive block
            size, a zero norm gain with fold_norm_gains, a NaN or infinite
            input, or no tokens at all.
    """
    import torch

    unknown = [s for s in sites if s not in _SITE_MODULES]
    if unknown or not sites:
        raise ValueError(f"sites must be a non-empty subset of {SITES}, "
                         f"got {tuple(sites)}")
    if block_size is not None and (isinstance(block_size, bool) or
                                   not isinstance(block_size, int) or
                                   block_size < 1):
        raise ValueError("block_size must be None (full) or an int >= 1, "
                         f"got {block_size!r}")

    state = {"mask": None}
    accumulators = {}
    handles = []

    def make_hook(acc, gain):
        def hook(_module, args):
            x = args[0].detach()
            mask = state["mask"]
            if mask is not None:
                if tuple(mask.shape) != tuple(x.shape[:-1]):
                    raise ValueError(
                        f"{acc.key}: attention_mask shape "
                        f"{tuple(mask.shape)} does not match the input's "
                        f"{tuple(x.shape[:-1])}")
                x = x[mask.to(device=x.device, dtype=torch.bool)]
            x = x.reshape(-1, x.shape[-1]).to(torch.float64)
            if gain is not None:
                x = x / gain.to(device=x.device)
            acc.add(x)
        return hook

    try:
        for index, layer in enumerate(_decoder_layers(model)):
            for site in SITES:
                if site not in sites:
                    continue
                block, linear_name, norm_name = _SITE_MODULES[site]
                linear = _submodule(layer, index, block, linear_name)
                gain = None
                if fold_norm_gains and norm_name is not None:
                    norm = _submodule(layer, index, norm_name)
                    gain = norm.weight.detach().to(torch.float64)
                    if bool((gain == 0).any()):
                        zero = int((gain == 0).nonzero()[0])
                        raise ValueError(
                            f"model.layers.{index}.{norm_name}.weight"
                            f"[{zero}] is 0: the gain cannot be divided out "
                            "(fold_norm_gains)")
                acc = _SiteAccumulator(site_key(index, site), block_size)
                accumulators[acc.key] = acc
                handles.append(linear.register_forward_pre_hook(
                    make_hook(acc, gain)))

        with torch.no_grad():
            for batch in batches:
                if isinstance(batch, Mapping):
                    mask = batch.get("attention_mask")
                    state["mask"] = (None if mask is None
                                     else torch.as_tensor(mask))
                    model(**batch)
                else:
                    ids = torch.as_tensor(batch, dtype=torch.long)
                    if ids.dim() == 1:
                        ids = ids.unsqueeze(0)
                    state["mask"] = None
                    model(ids)
    finally:
        for handle in handles:
            handle.remove()

    empty = [key for key, acc in accumulators.items() if acc.tokens == 0]
    if empty:
        raise ValueError(f"no tokens reached {empty[0]}: nothing to write")
    tensors = []
    for key in sorted(accumulators):  # catq stores sites in key order
        tensors += accumulators[key].tensors()
    write_safetensors(out_path, tensors)
    return {key: accumulators[key].tokens for key in sorted(accumulators)}
