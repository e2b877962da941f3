"""catq_client against a real server: `catq serve` run as a subprocess.

Needs CATQ_BINARY (the catq executable) in the environment and catq_client
and the generated catq.v1 stubs on PYTHONPATH; ctest sets both
(tests/python/CMakeLists.txt). One server serves every test: a data dir of
its own, two workers and two tenants.
"""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

import grpc

from catq_client import (MAX_UPLOAD_CHUNK_BYTES, CatqError, Client, catq_pb2,
                         default_upload_id, write_token_ids)
from catq_testing import Server, have_catq, run_catq

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                       "client", "python", "examples", "pipeline.py")
TOKEN_A = "tok-a"
TOKEN_B = "tok-b"


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_random_token_ids(path, vocab_size, documents=4, length=40,
                           seed=11):
    """Calibration token ids: each document BOS (1) then random ids."""
    rng = random.Random(seed)
    write_token_ids(path, [[1] + [rng.randrange(3, vocab_size)
                                  for _ in range(length - 1)]
                           for _ in range(documents)])


@unittest.skipUnless(have_catq(),
                     "CATQ_BINARY does not name the catq executable")
class ClientAgainstServerTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="catq_python_test_")
        cls.model_dir = cls.path("model")
        run_catq("synth", "--preset", "tiny", "--out", cls.model_dir)
        with open(os.path.join(cls.model_dir, "config.json")) as f:
            vocab_size = json.load(f)["vocab_size"]
        write_random_token_ids(cls.path("calib.ids"), vocab_size)
        with open(cls.path("tokens"), "w") as f:
            f.write(f"{TOKEN_A} tenant-a\n{TOKEN_B} tenant-b\n")
        cls.server = Server(cls.path("data"), "--tokens", cls.path("tokens"))
        cls.client = Client(cls.server.address, token=TOKEN_A)
        cls._job = None

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        code = cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)
        if code != 0:
            raise AssertionError(f"catq serve exited {code} after SIGTERM:\n"
                                 f"{''.join(cls.server.output)}")

    @classmethod
    def path(cls, *parts):
        return os.path.join(cls.dir, *parts)

    def upload_inputs(self, client=None):
        client = client or self.client
        model = client.upload_model(self.model_dir, "tiny")
        calibration = client.upload_calibration(self.path("calib.ids"),
                                                kind="token_ids")
        return model, calibration

    def finished_cat_job(self):
        """A SUCCEEDED block-CAT job of tenant A (run once, shared)."""
        cls = type(self)
        if cls._job is None:
            model, calibration = self.upload_inputs()
            job = self.client.submit(
                model.model_id,
                {"method": "cat", "block_size": 16, "activation_bits": 4},
                calibration_id=calibration.calibration_id)
            job = self.client.wait(job.job_id)
            self.assertEqual(job.state, catq_pb2.JOB_STATE_SUCCEEDED,
                             job.error)
            cls._job = job
        return cls._job

    def test_upload_submit_watch_fetch(self):
        model = self.client.upload_model(self.model_dir, "tiny")
        self.assertTrue(model.model_id)
        self.assertEqual(model.name, "tiny")
        self.assertEqual(model.num_layers, 2)
        calibration = self.client.upload_calibration(self.path("calib.ids"),
                                                     kind="token_ids")
        self.assertEqual(calibration.kind,
                         catq_pb2.CALIBRATION_KIND_TOKEN_IDS)

        submitted = self.client.submit(
            model.model_id,
            catq_pb2.Recipe(method="cat", block_size=16, activation_bits=4),
            calibration_id=calibration.calibration_id,
            idempotency_key="python-test-cat")
        self.assertEqual(submitted.state, catq_pb2.JOB_STATE_QUEUED)
        again = self.client.submit(
            model.model_id, {"method": "cat", "block_size": 16,
                             "activation_bits": 4},
            calibration_id=calibration.calibration_id,
            idempotency_key="python-test-cat")
        self.assertEqual(again.job_id, submitted.job_id)

        events = list(self.client.watch(submitted.job_id))
        self.assertTrue(events)
        self.assertTrue(all(e.job.job_id == submitted.job_id for e in events))
        last = events[-1].job
        self.assertEqual(last.state, catq_pb2.JOB_STATE_SUCCEEDED, last.error)
        self.assertEqual(last.tasks_total, 2)
        self.assertEqual(last.tasks_done, 2)
        # Every task that finished after the first event (the current
        # state) is announced; one published while joining may come twice.
        finished = sum(e.HasField("task_finished") for e in events)
        self.assertGreaterEqual(events[0].job.tasks_done + finished, 2)
        for event in events:
            if event.HasField("task_finished"):
                self.assertEqual(
                    sorted(s.site for s in event.task_finished.sites),
                    ["attn_in", "attn_out", "mlp_in", "mlp_out"])

        job = self.client.get_job(submitted.job_id)
        self.assertEqual(job.state, catq_pb2.JOB_STATE_SUCCEEDED)
        out = self.path("fetched")
        stats = self.client.fetch(job.job_id, out)
        self.assertEqual(stats.bytes_received,
                         sum(f.size for f in job.result_files))
        self.assertEqual(stats.files_already_present, 0)
        names = {f.path for f in job.result_files}
        self.assertIn("catq_report.json", names)
        self.assertIn("config.json", names)
        for entry in job.result_files:
            local = os.path.join(out, entry.path)
            self.assertEqual(os.path.getsize(local), entry.size, entry.path)
            self.assertEqual(sha256_of(local), entry.sha256, entry.path)
            self.assertFalse(os.path.exists(local + ".part"))
        with open(os.path.join(out, "catq_report.json")) as f:
            report = json.load(f)
        self.assertEqual(report["model"]["name"], "tiny")
        self.assertEqual(len(report["linears"]), 14)

        # Everything is there: a second fetch verifies and sends nothing.
        stats = self.client.fetch(job.job_id, out)
        self.assertEqual(stats.bytes_received, 0)
        self.assertEqual(stats.files_already_present, len(job.result_files))
        # A job that has ended cannot be cancelled, and keeps its state.
        with self.assertRaises(CatqError) as raised:
            self.client.cancel(job.job_id)
        self.assertEqual(raised.exception.code,
                         grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("already", raised.exception.message)
        self.assertEqual(self.client.get_job(job.job_id).state,
                         catq_pb2.JOB_STATE_SUCCEEDED)
        self.assertIn(job.job_id,
                      [j.job_id for j in self.client.list_jobs()])

    def test_rtn_job_equals_in_process_quantize(self):
        model = self.client.upload_model(self.model_dir, "tiny")
        job = self.client.submit(model.model_id, {"method": "rtn"})
        seen = []
        job = self.client.wait(job.job_id, on_event=seen.append)
        self.assertEqual(job.state, catq_pb2.JOB_STATE_SUCCEEDED, job.error)
        self.assertEqual(seen[-1].job.state, catq_pb2.JOB_STATE_SUCCEEDED)
        self.client.fetch(job.job_id, self.path("rtn_remote"))
        run_catq("quantize", "--quiet", "--model", self.model_dir, "--out",
                 self.path("rtn_local"))
        for name in ("model.safetensors", "config.json"):
            self.assertEqual(read_bytes(self.path("rtn_remote", name)),
                             read_bytes(self.path("rtn_local", name)), name)

    def test_large_files_move_in_chunks_and_fetch_resumes(self):
        # About 7 MB of weights: two upload chunks, and an output file over
        # 4 MiB that arrives in more than one FetchResult chunk.
        model_dir = self.path("large_model")
        run_catq("synth", "--preset", "small", "--layers", "1", "--seed",
                 "7", "--out", model_dir)
        sent = []
        model = self.client.upload_model(
            model_dir, progress=lambda done, total: sent.append((done, total)))
        self.assertEqual(model.name, "large_model")
        total = sent[0][1]
        self.assertEqual(sent[0], (0, total))
        self.assertEqual(sent[-1], (total, total))
        steps = [b[0] - a[0] for a, b in zip(sent, sent[1:])]
        self.assertGreaterEqual(len(steps), 2)
        self.assertLessEqual(max(steps), MAX_UPLOAD_CHUNK_BYTES)

        job = self.client.submit(model.model_id, {"method": "rtn"})
        job = self.client.wait(job.job_id)
        self.assertEqual(job.state, catq_pb2.JOB_STATE_SUCCEEDED, job.error)
        out = self.path("resumed")
        self.client.fetch(job.job_id, out)
        entry = max(job.result_files, key=lambda f: f.size)
        self.assertGreater(entry.size, MAX_UPLOAD_CHUNK_BYTES)
        local = os.path.join(out, entry.path)
        whole = read_bytes(local)
        self.assertEqual(sha256_of(local), entry.sha256)

        # A fetch cut off past the first chunk left this .part behind.
        cut = MAX_UPLOAD_CHUNK_BYTES + 1000
        os.remove(local)
        with open(local + ".part", "wb") as f:
            f.write(whole[:cut])
        received = []
        stats = self.client.fetch(
            job.job_id, out,
            progress=lambda done, total: received.append(done))
        self.assertEqual(stats.bytes_received, len(whole) - cut)
        self.assertEqual(stats.files_already_present,
                         len(job.result_files) - 1)
        self.assertEqual(read_bytes(local), whole)
        self.assertFalse(os.path.exists(local + ".part"))
        self.assertEqual(received[-1], sum(f.size for f in job.result_files))

        # A .part whose bytes are wrong is fetched again from byte 0.
        os.remove(local)
        with open(local + ".part", "wb") as f:
            f.write(b"\xff" * cut)
        stats = self.client.fetch(job.job_id, out)
        self.assertEqual(stats.bytes_received, len(whole) - cut + len(whole))
        self.assertEqual(read_bytes(local), whole)

    def test_upload_again_resumes_and_sends_nothing(self):
        model, calibration = self.upload_inputs()
        sent = []
        again = self.client.upload_model(
            self.model_dir, "tiny",
            progress=lambda done, total: sent.append(done))
        self.assertEqual(again.model_id, model.model_id)
        self.assertEqual(sent, [])  # Complete upload: no stream at all.
        self.assertEqual(
            self.client.upload_calibration(self.path("calib.ids"),
                                           kind="token_ids").calibration_id,
            calibration.calibration_id)

    def test_interrupted_upload_resumes_where_the_server_stopped(self):
        model_dir = self.path("interrupted_model")
        run_catq("synth", "--preset", "small", "--layers", "1", "--seed",
                 "8", "--out", model_dir)
        header = catq_pb2.UploadHeader(name="interrupted_model",
                                       format=catq_pb2.MODEL_FORMAT_HF)
        for name in sorted(os.listdir(model_dir)):
            local = os.path.join(model_dir, name)
            header.files.add(path=name, size=os.path.getsize(local),
                             sha256=sha256_of(local))
        upload_id = default_upload_id(header)
        sizes = [f.size for f in header.files]
        total = sum(sizes)

        # The first chunk of the weights is sent, then the client stops (its
        # progress callback raises, as a killed client would stop).
        class Interrupted(Exception):
            pass

        def interrupt(done, total):
            if done >= MAX_UPLOAD_CHUNK_BYTES:
                raise Interrupted()

        with self.assertRaises(Interrupted):
            self.client.upload_model(model_dir, progress=interrupt)
        upload = self.client.get_upload(upload_id)
        self.assertFalse(upload.complete)
        self.assertEqual(list(upload.received_bytes),
                         [sizes[0], MAX_UPLOAD_CHUNK_BYTES])

        sent = []
        model = self.client.upload_model(
            model_dir, progress=lambda done, total: sent.append((done, total)))
        self.assertEqual(sent[0], (sizes[0] + MAX_UPLOAD_CHUNK_BYTES, total))
        self.assertEqual(sent[-1], (total, total))
        upload = self.client.get_upload(upload_id)
        self.assertTrue(upload.complete)
        self.assertEqual(upload.model_id, model.model_id)

    def test_upload_id_matches_the_command_line_client(self):
        output = run_catq("upload", "--server", self.server.address,
                          "--token", TOKEN_B, "--json", "--calib-tokens",
                          self.path("calib.ids"))
        cli = json.loads(output)
        tenant_b = Client(self.server.address, token=TOKEN_B)
        self.addCleanup(tenant_b.close)
        sent = []
        calibration = tenant_b.upload_calibration(
            self.path("calib.ids"), kind="token_ids",
            progress=lambda done, total: sent.append(done))
        # The same upload id: found complete, nothing sent.
        self.assertEqual(sent, [])
        self.assertEqual(calibration.calibration_id, cli["calibration_id"])

    def test_bad_recipe_is_invalid_argument_naming_the_field(self):
        model, calibration = self.upload_inputs()
        with self.assertRaises(CatqError) as raised:
            self.client.submit(model.model_id,
                               {"method": "rtn", "weight_bits": 9},
                               calibration_id=calibration.calibration_id)
        error = raised.exception
        self.assertEqual(error.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(error.rpc, "SubmitJob")
        self.assertIn("recipe.weight_bits", error.message)
        self.assertIn("INVALID_ARGUMENT", str(error))

        with self.assertRaises(CatqError) as raised:
            self.client.submit(model.model_id, {"method": "cat"})
        self.assertEqual(raised.exception.code,
                         grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("calibration_id", raised.exception.message)
        with self.assertRaises(ValueError):
            self.client.submit(model.model_id, {"no_such_field": 1})

    def test_unknown_job_is_not_found(self):
        for call in (self.client.get_job, self.client.cancel,
                     lambda job_id: list(self.client.watch(job_id)),
                     lambda job_id: self.client.fetch(job_id,
                                                      self.path("none"))):
            with self.assertRaises(CatqError) as raised:
                call("no-such-job")
            self.assertEqual(raised.exception.code, grpc.StatusCode.NOT_FOUND)
            self.assertIn("no-such-job", raised.exception.message)

    def test_other_tenant_sees_not_found(self):
        job = self.finished_cat_job()
        tenant_b = Client(self.server.address, token=TOKEN_B)
        self.addCleanup(tenant_b.close)
        with self.assertRaises(CatqError) as raised:
            tenant_b.get_job(job.job_id)
        self.assertEqual(raised.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertNotIn(job.job_id, [j.job_id for j in tenant_b.list_jobs()])

    def test_wrong_or_missing_token_is_unauthenticated(self):
        for token in ("wrong-token", None):
            client = Client(self.server.address, token=token)
            self.addCleanup(client.close)
            with self.assertRaises(CatqError) as raised:
                client.list_jobs()
            self.assertEqual(raised.exception.code,
                             grpc.StatusCode.UNAUTHENTICATED)
            self.assertIn("authorization", raised.exception.message)
            with self.assertRaises(CatqError) as raised:
                client.upload_model(self.model_dir)
            self.assertEqual(raised.exception.code,
                             grpc.StatusCode.UNAUTHENTICATED)

    @unittest.skipUnless(shutil.which("openssl"), "no openssl command")
    def test_tls_with_the_servers_ca(self):
        # A self-signed certificate for localhost: its own CA.
        cert, key = self.path("tls.crt"), self.path("tls.key")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-days", "1", "-subj", "/CN=localhost", "-addext",
             "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key,
             "-out", cert],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        server = Server(self.path("tls_data"), "--tls-cert", cert,
                        "--tls-key", key)
        self.addCleanup(lambda: self.assertEqual(server.stop(), 0))
        port = server.address.rsplit(":", 1)[1]
        for root_cert in (cert, read_bytes(cert)):  # a path or the PEM
            with Client(f"localhost:{port}",
                        tls_root_cert=root_cert) as client:
                self.assertEqual(client.list_jobs(), [])
                model = client.upload_model(self.model_dir)
                self.assertEqual(model.num_layers, 2)
        with Client(f"localhost:{port}", timeout=10) as plaintext:
            with self.assertRaises(CatqError) as raised:
                plaintext.list_jobs()
            self.assertEqual(raised.exception.code,
                             grpc.StatusCode.UNAVAILABLE)

    def test_example_pipeline(self):
        out = self.path("example_out")
        env = dict(os.environ, CATQ_TOKEN=TOKEN_A)
        result = subprocess.run(
            [sys.executable, EXAMPLE, "--server", self.server.address,
             "--model", self.model_dir, "--calib-tokens",
             self.path("calib.ids"), "--recipe", "cat", "--block-size", "16",
             "--a-bits", "4", "--out", out],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env, check=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("succeeded, 2/2 tasks", result.stderr)
        self.assertIn("14 linears quantized (cat)", result.stdout)
        self.assertIn(f"output: {out}", result.stdout)
        self.assertTrue(os.path.isfile(os.path.join(out,
                                                    "model.safetensors")))


if __name__ == "__main__":
    unittest.main()
