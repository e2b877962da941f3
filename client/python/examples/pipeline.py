#!/usr/bin/env python3
"""Quantizes a model on a catq server: collect, upload, submit, watch, fetch.

    PYTHONPATH=build/python python3 client/python/examples/pipeline.py \\
        --server localhost:50051 --model models/llama \\
        --calib-text calib.txt --recipe cat --block-size 32 --a-bits 4 \\
        --out out/w4

The calibration is one of --calib-text (catq tokenizes it), --calib-tokens
(token ids: little-endian int32, -1 between documents), --calib-stats (site
statistics already collected) or --collect-tokens: token ids the statistics
are collected from here, with PyTorch, before anything is uploaded:

    PYTHONPATH=build/python python3 client/python/examples/pipeline.py \\
        --server localhost:50051 --model models/llama \\
        --collect-tokens calib.ids --collect-block-size 32 \\
        --recipe cat --block-size 32 --a-bits 4 --out out/w4

For --collect-tokens the model (a Hugging Face layout directory) is loaded
in float32 with transformers.AutoModelForCausalLM when transformers is
installed, else with catq_client.torch_llama.load_llama (--collect-loader
picks one). Each document is cut to max_position_embeddings and those left
with fewer than two tokens are skipped, as catq does. collect_statistics
writes all four sites of every layer (only the K x K diagonal blocks of each
Sx with --collect-block-size K, enough for --block-size K; the RMSNorm gains
divided out unless --no-fold-norm-gains, which also turns the recipe's
fold_norm_gains off) to --stats-out, by default OUT.statistics.safetensors
beside the output directory, and that file is uploaded as the calibration
(kind "statistics").

The token comes from --token or CATQ_TOKEN; --tls-ca names the PEM of the CA
that signed the server's certificate. Rerunning the same command resumes the
uploads, finds the same job (its idempotency key is derived from the inputs)
and resumes the fetch. Statistics are collected again on a rerun; they come
out the same on the same machine, so the rerun finds the same job there too.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import sys

from catq_client import (CatqError, Client, calibration_sequences, catq_pb2,
                         collect_statistics, read_token_ids)


def print_transfer(what):
    """A progress callback printing ``what: done/total MiB (percent)`` on
    stderr whenever the percentage changes, and a newline once done."""
    last = None

    def progress(done, total):
        nonlocal last
        percent = 100 * done // total if total else 100
        if percent == last:
            return
        last = percent
        end = "\n" if done == total else "\r"
        print(f"{what}: {done / 2**20:.1f}/{total / 2**20:.1f} MiB "
              f"({percent}%)", end=end, file=sys.stderr, flush=True)
    return progress


def print_event(event):
    """Prints each job event: state and tasks, or what a task measured."""
    job = event.job
    state = catq_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_")
    line = f"job {job.job_id}: {state.lower()}, {job.tasks_done}/" \
           f"{job.tasks_total} tasks"
    if event.HasField("task_finished"):
        task = event.task_finished
        sqnr = ", ".join(f"{s.site} {s.weight_sqnr_db_mean:.2f} dB"
                         for s in task.sites)
        line += f" (layer {task.layer} in {task.seconds:.2f} s: {sqnr})"
    elif event.HasField("message"):
        line += f" ({event.message})"
    print(line, file=sys.stderr, flush=True)


def number(mapping, key):
    """The number at ``key``, nan when absent or null."""
    value = mapping.get(key)
    return float("nan") if value is None else float(value)


def print_summary(report, out_dir):
    """The report's summary: mean weight SQNR per layer and site, totals."""
    sites = ["attn_in", "attn_out", "mlp_in", "mlp_out"]
    by_layer = {}
    for linear in report.get("linears", []):
        # A null weight SQNR is an exact weight.
        sqnr = linear.get("weight_sqnr_db")
        by_layer.setdefault(linear["layer"], {}).setdefault(
            linear["site"], []).append(float("inf") if sqnr is None else sqnr)
    print(f"{'layer':<6}" + "".join(f" {s:>10}" for s in sites)
          + "   (weight SQNR, dB)")
    for layer, by_site in sorted(by_layer.items()):
        line = f"{layer:<6}"
        for site in sites:
            values = by_site.get(site, [])
            mean = sum(values) / len(values) if values else float("nan")
            line += f" {mean:10.2f}"
        print(line)
    totals = report.get("totals", {})
    print(f"{len(report.get('linears', []))} linears quantized "
          f"({report.get('recipe', {}).get('method')}), "
          f"{totals.get('input_bytes')} -> {totals.get('output_bytes')} "
          f"bytes ({number(totals, 'compression_ratio'):.2f}x), "
          f"weight SQNR mean {number(totals, 'weight_sqnr_db_mean'):.2f} dB, "
          f"min {number(totals, 'weight_sqnr_db_min'):.2f} dB")
    evaluation = report.get("evaluation")
    if evaluation:
        print(f"perplexity {number(evaluation, 'perplexity'):.4f} "
              f"(FP {number(evaluation, 'fp_perplexity'):.4f}), KL to FP "
              f"{number(evaluation, 'kl_to_fp'):.4f} nats/token")
    print(f"output: {out_dir}")


def load_model(model_dir, loader):
    """``(model, what loaded it)``: a float32 PyTorch Llama in eval mode."""
    import torch

    if loader in (None, "auto"):
        found = importlib.util.find_spec("transformers") is not None
        loader = "transformers" if found else "torch_llama"
    if loader == "transformers":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            model_dir, torch_dtype=torch.float32)
        return model.eval(), "transformers.AutoModelForCausalLM"
    from catq_client.torch_llama import load_llama

    return load_llama(model_dir), "catq_client.torch_llama.load_llama"


def collect(args, stats_path):
    """Collects the site statistics of --collect-tokens into ``stats_path``;
    prints what they cover on stderr."""
    with open(os.path.join(args.model, "config.json")) as f:
        config = json.load(f)
    documents = read_token_ids(args.collect_tokens, config["vocab_size"])
    sequences = calibration_sequences(documents,
                                      config["max_position_embeddings"])
    if not sequences:
        raise ValueError(f"{args.collect_tokens}: no document with at least "
                         "two tokens to calibrate on")
    model, loader = load_model(args.model, args.collect_loader)
    tokens = sum(len(s) for s in sequences)
    print(f"collect: {args.model} loaded with {loader} (float32); "
          f"{len(sequences)} of {len(documents)} documents, {tokens} tokens",
          file=sys.stderr, flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(stats_path)), exist_ok=True)
    counts = collect_statistics(model, sequences, stats_path,
                                fold_norm_gains=args.fold_norm_gains,
                                block_size=args.collect_block_size)
    layers = len({key.rsplit(".", 1)[0] for key in counts})
    if set(counts.values()) == {tokens}:
        covered = f"{tokens} tokens each"
    else:  # Not expected: every site sees every token.
        covered = ", ".join(f"{k} {n} tokens" for k, n in counts.items())
    k = args.collect_block_size
    kept = f"{k}x{k} diagonal blocks" if k else "full Sx"
    gains = "divided out" if args.fold_norm_gains else "kept"
    print(f"collect: {len(counts)} sites ({layers} layers x 4), {covered}, "
          f"{kept}, norm gains {gains} -> {stats_path}",
          file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="HOST:PORT")
    parser.add_argument("--token", default=os.environ.get("CATQ_TOKEN"),
                        help="bearer token (default: $CATQ_TOKEN)")
    parser.add_argument("--tls-ca", help="PEM of the server's CA (TLS)")
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--format", default="hf", choices=["hf", "llama2c"])
    calibration = parser.add_mutually_exclusive_group()
    calibration.add_argument("--calib-text", help="calibration text")
    calibration.add_argument("--calib-tokens",
                             help="calibration token ids (int32, -1 "
                                  "between documents)")
    calibration.add_argument("--calib-stats",
                             help="precomputed site statistics")
    calibration.add_argument("--collect-tokens", metavar="FILE",
                             help="token ids (as --calib-tokens) to collect "
                                  "the site statistics from here, with "
                                  "PyTorch, and upload those")
    parser.add_argument("--collect-block-size", type=int, metavar="K",
                        help="keep only the K x K diagonal blocks of each "
                             "site's Sx (enough for --block-size K; "
                             "default: full matrices)")
    parser.add_argument("--collect-loader",
                        choices=["auto", "transformers", "torch_llama"],
                        help="what loads the model for --collect-tokens "
                             "(default auto: transformers when installed)")
    parser.add_argument("--stats-out", metavar="PATH",
                        help="where --collect-tokens writes the statistics "
                             "(default: OUT.statistics.safetensors)")
    parser.add_argument("--no-fold-norm-gains", dest="fold_norm_gains",
                        action="store_false",
                        help="recipe fold_norm_gains off (statistics are "
                             "collected with the RMSNorm gains in)")
    parser.add_argument("--recipe", default="rtn",
                        choices=["rtn", "smoothquant", "hadamard", "cat"])
    parser.add_argument("--block-size", type=int)
    parser.add_argument("--a-bits", type=int, help="activation bits")
    parser.add_argument("--w-bits", type=int, help="weight bits")
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args()
    if not args.collect_tokens:
        for flag, value in [("--collect-block-size", args.collect_block_size),
                            ("--collect-loader", args.collect_loader),
                            ("--stats-out", args.stats_out)]:
            if value is not None:
                parser.error(f"{flag} needs --collect-tokens")
    elif args.format != "hf":
        parser.error("--collect-tokens needs a model in the hf format")
    if args.collect_block_size is not None and args.collect_block_size < 1:
        parser.error("--collect-block-size must be at least 1")

    recipe = {"method": args.recipe}
    if not args.fold_norm_gains:
        recipe["fold_norm_gains"] = False
    for field, value in [("block_size", args.block_size),
                         ("activation_bits", args.a_bits),
                         ("weight_bits", args.w_bits)]:
        if value is not None:
            recipe[field] = value

    stats_path = None
    if args.collect_tokens:
        stats_path = args.stats_out or (os.path.normpath(args.out)
                                        + ".statistics.safetensors")
        try:
            collect(args, stats_path)
        except (ImportError, OSError, ValueError) as e:
            hint = ""
            if isinstance(e, ImportError) and e.name == "torch":
                hint = " (--collect-tokens needs PyTorch: python3-torch)"
            print(f"error: collect: {e}{hint}", file=sys.stderr)
            return 1

    with Client(args.server, token=args.token,
                tls_root_cert=args.tls_ca) as client:
        model = client.upload_model(args.model, format=args.format,
                                    progress=print_transfer("model"))
        print(f"model {model.model_id}: {model.num_layers} layers, hidden "
              f"{model.hidden_size}", file=sys.stderr)
        calibration_id = ""
        for kind, path in [("text", args.calib_text),
                           ("token_ids", args.calib_tokens),
                           ("statistics", args.calib_stats or stats_path)]:
            if path:
                calibration_id = client.upload_calibration(
                    path, kind=kind,
                    progress=print_transfer("calibration")).calibration_id
        # The same inputs give the same key: a rerun finds the first job.
        key = hashlib.sha256(json.dumps(
            [model.model_id, calibration_id, recipe],
            sort_keys=True).encode()).hexdigest()[:32]
        job = client.submit(model.model_id, recipe,
                            calibration_id=calibration_id,
                            idempotency_key=f"pipeline-{key}")
        job = client.wait(job.job_id, on_event=print_event)
        if job.state != catq_pb2.JOB_STATE_SUCCEEDED:
            print(f"job {job.job_id}: "
                  f"{catq_pb2.JobState.Name(job.state)}: {job.error}",
                  file=sys.stderr)
            return 1
        client.fetch(job.job_id, args.out, progress=print_transfer("fetch"))
    with open(os.path.join(args.out, "catq_report.json")) as f:
        print_summary(json.load(f), args.out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CatqError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
