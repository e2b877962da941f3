#!/usr/bin/env python3
"""Quantizes a model on a catq server: upload, submit, watch, fetch, summary.

    PYTHONPATH=build/python python3 client/python/examples/pipeline.py \\
        --server localhost:50051 --model models/llama \\
        --calib-text calib.txt --recipe cat --block-size 32 --a-bits 4 \\
        --out out/w4

The token comes from --token or CATQ_TOKEN; --tls-ca names the PEM of the CA
that signed the server's certificate. Rerunning the same command resumes the
uploads, finds the same job (its idempotency key is derived from the inputs)
and resumes the fetch.
"""

import argparse
import hashlib
import json
import os
import sys

from catq_client import CatqError, Client, catq_pb2


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
    parser.add_argument("--recipe", default="rtn",
                        choices=["rtn", "smoothquant", "hadamard", "cat"])
    parser.add_argument("--block-size", type=int)
    parser.add_argument("--a-bits", type=int, help="activation bits")
    parser.add_argument("--w-bits", type=int, help="weight bits")
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args()

    recipe = {"method": args.recipe}
    for field, value in [("block_size", args.block_size),
                         ("activation_bits", args.a_bits),
                         ("weight_bits", args.w_bits)]:
        if value is not None:
            recipe[field] = value

    with Client(args.server, token=args.token,
                tls_root_cert=args.tls_ca) as client:
        model = client.upload_model(args.model, format=args.format,
                                    progress=print_transfer("model"))
        print(f"model {model.model_id}: {model.num_layers} layers, hidden "
              f"{model.hidden_size}", file=sys.stderr)
        calibration_id = ""
        for kind, path in [("text", args.calib_text),
                           ("token_ids", args.calib_tokens),
                           ("statistics", args.calib_stats)]:
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
