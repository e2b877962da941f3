#!/usr/bin/env python3
"""A real Prometheus scraping a real catq server and two remote workers.

`catq serve --workers 0` and two `catq worker`s run on loopback, each with
its /metrics endpoint on a port it picks; Prometheus (Debian's package
`prometheus`) scrapes all three every second while a job runs through the
workers. Then every PromQL expression of every panel of the Grafana dashboard
(deploy/grafana/dashboards/catq.json) is asked of Prometheus's HTTP API until
it returns data, with each label_values() template variable set as Grafana
sets 'All' (the regex of the values Prometheus lists for it, which must not be
empty either); the ones that never return data are reported together.
Every target must be up with no scrape error, and `promtool check config`
accepts deploy/prometheus/prometheus.yml.

The job quantizes a model from `catq synth` with token-id calibration, so the
test needs nothing outside the checkout. The perplexity gauge needs a job
evaluated on text, which needs a model with a tokenizer: stories260K from
../shared (or CATQ_SHARED_DIR); without it the queries naming
catq_job_perplexity are skipped, saying so.

Needs CATQ_BINARY (the catq executable; ctest sets it) and prometheus and
promtool on PATH; skips, saying which is missing, otherwise.
"""

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import yaml

CATQ = os.environ.get("CATQ_BINARY", "")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "dashboards", "catq.json")
DEPLOY_CONFIG = os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")
SHARED = os.environ.get("CATQ_SHARED_DIR") or os.path.join(ROOT, "..", "shared")
STORIES = os.path.join(SHARED, "models", "stories260K")
STORIES_FILES = (os.path.join(STORIES, "stories260K.bin"), os.path.join(STORIES, "tok512.bin"))
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")

SERVER_LISTENING = re.compile(r"^catq serve: listening on (\S+?),")
SERVER_METRICS = re.compile(r"^catq serve: metrics on http://(\S+)/metrics")
WORKER_METRICS = re.compile(r"^catq worker: metrics on http://(\S+)/metrics")
PERPLEXITY = "catq_job_perplexity"
WORKERS_DID_TASKS = 'sum(catq_worker_tasks_total{job="catq-worker", outcome="done"}) > 0'

# Grafana's built-in interval variables, as Grafana would set them for a
# one-second scrape interval over a short range.
BUILTIN_VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m",
                     "__range_s": "300", "__interval_ms": "15000"}

STARTUP_SECONDS = 60      # a process prints its address, Prometheus is ready
TARGETS_SECONDS = 30      # every target scraped and up
QUERIES_SECONDS = 60      # all panel queries together
JOB_SECONDS = 180         # one `catq watch`


def catq_missing():
    if not (os.path.isfile(CATQ) and os.access(CATQ, os.X_OK)):
        return "CATQ_BINARY does not name the catq executable"
    return None


def run_catq(*args, expect_ok=True):
    """Runs the catq binary; returns its output. With expect_ok, a non-zero
    exit fails the test; otherwise a zero exit does."""
    result = subprocess.run([CATQ, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, check=False, timeout=JOB_SECONDS)
    if (result.returncode == 0) != expect_ok:
        raise AssertionError(f"catq {' '.join(args)} exited {result.returncode}"
                             f"{'' if expect_ok else ' (expected a failure)'}:\n{result.stdout}")
    return result.stdout.strip()


def write_token_ids(path, vocab_size, documents=4, length=40):
    """Calibration token ids: little-endian int32, -1 between documents,
    each document BOS (1) then ids counting through the vocabulary."""
    ids = []
    for d in range(documents):
        if d:
            ids.append(-1)
        ids.append(1)
        ids += [3 + (d * 7 + i * 13) % (vocab_size - 3) for i in range(length - 1)]
    with open(path, "wb") as f:
        f.write(struct.pack(f"<{len(ids)}i", *ids))


EVAL_TEXT = """Once upon a time, there was a little girl named Lily. She loved to play
outside in the sunshine. One day, she saw a big red ball in the park. She ran to
get it and kicked it high into the sky. Her friend Tom came to play with her.

Tom had a small dog. The dog liked to run and jump. Lily and Tom threw the ball
and the dog ran after it. They laughed and played all day until the sun went
down. Then they went home, happy and tired.
"""


def free_port():
    """A loopback port nothing listens on now (Prometheus cannot announce
    a port it picked itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A subprocess whose merged output a thread keeps reading."""

    def __init__(self, name, argv):
        self.name = name
        self.argv = argv
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.lines = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def output(self, last=60):
        with self.changed:
            return "".join(self.lines[-last:])

    def wait_for(self, pattern, seconds=STARTUP_SECONDS):
        """The first group of the first output line matching pattern; fails
        when the process exits or the deadline passes first."""
        deadline = time.monotonic() + seconds
        seen = 0
        with self.changed:
            while True:
                for line in self.lines[seen:]:
                    match = pattern.search(line)
                    if match:
                        return match.group(1)
                seen = len(self.lines)
                if not self.reader.is_alive():
                    self.process.wait()
                    raise AssertionError(f"{self.name} exited {self.process.returncode} before "
                                         f"printing /{pattern.pattern}/:\n{self.output()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name} printed no /{pattern.pattern}/ in "
                                         f"{seconds} s:\n{self.output()}")
                self.changed.wait(left)

    def stop(self):
        """SIGTERM, then SIGKILL if it has not exited within 30 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=10)
        self.process.stdout.close()


def template_variables(dashboard, chosen=None):
    """A value for every template variable: from chosen (name -> value),
    else `.*`; Grafana's interval variables by durations."""
    values = dict(BUILTIN_VARIABLES)
    for variable in dashboard.get("templating", {}).get("list", []):
        values.setdefault(variable["name"], (chosen or {}).get(variable["name"], ".*"))
    return values


def all_values_regex(values):
    """What Grafana puts for 'All' of a multi-value variable in a Prometheus
    query: the values as a regex alternation, each escaped (within a PromQL
    string, so the backslash is doubled)."""
    escaped = [re.sub(r"([\\.^$*+?()\[\]{}|])", r"\\\\\1", v) for v in sorted(values)]
    return "(" + "|".join(escaped) + ")"


def substitute(expr, values):
    """expr with $name, ${name}, ${name:format} and [[name]] replaced."""
    def replace(match):
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in values:
            raise AssertionError(f"unknown template variable {match.group(0)} in {expr}")
        return values[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", replace, expr)


def panel_queries(dashboard, chosen=None):
    """(panel title, PromQL) of every target of every panel, template
    variables replaced (template_variables); rows are not panels, but a
    collapsed row holds its panels."""
    values = template_variables(dashboard, chosen)
    queries = []

    def walk(panels):
        for panel in panels:
            if panel.get("type") == "row":
                walk(panel.get("panels", []))
                continue
            for target in panel.get("targets", []):
                if target.get("expr"):
                    queries.append((panel.get("title", "?"), substitute(target["expr"], values)))

    walk(dashboard["panels"])
    return queries


def label_value_queries(dashboard):
    """(variable name, metric, label) of each label_values(metric, label)
    template variable: Grafana fills its drop-down from that label."""
    found = []
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        match = re.fullmatch(r"\s*label_values\(\s*([^,\s]+)\s*,\s*(\w+)\s*\)\s*", query or "")
        if match:
            found.append((variable["name"], match.group(1), match.group(2)))
    return found


class Prometheus:
    """Prometheus on a free loopback port with its own storage, until stop()."""

    def __init__(self, config, storage):
        for _ in range(3):  # another process may take the port in between
            self.address = f"127.0.0.1:{free_port()}"
            self.child = Child("prometheus", [
                PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={storage}",
                f"--web.listen-address={self.address}", "--log.level=warn",
                "--storage.tsdb.retention.time=1h"])
            if self._wait_ready():
                return
            output = self.child.output()
            self.child.stop()
            if "address already in use" not in output:
                raise AssertionError(f"prometheus exited {self.child.process.returncode} before "
                                     f"it was ready:\n{output}")
        raise AssertionError("prometheus found no free port in three tries")

    def _wait_ready(self):
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.child.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://{self.address}/-/ready", timeout=5) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready in {STARTUP_SECONDS} s:\n"
                             f"{self.child.output()}")

    def api(self, path, params=None):
        """The data of an /api/v1 answer; raises ValueError with Prometheus's
        error for a refused query."""
        url = (f"http://{self.address}/api/v1/{path}?"
               + urllib.parse.urlencode(params or {}, doseq=True))
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as e:
            try:
                answer = json.load(e)
            except ValueError:
                raise ValueError(f"HTTP {e.code} from {url}") from e
        if answer.get("status") != "success":
            raise ValueError(f"{answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def targets(self):
        with urllib.request.urlopen(f"http://{self.address}/api/v1/targets?state=active",
                                    timeout=10) as response:
            return json.load(response)["data"]["activeTargets"]

    def stop(self):
        self.child.stop()


@unittest.skipIf(PROMTOOL is None, "promtool is absent (Debian package prometheus)")
class DeployConfigTest(unittest.TestCase):
    def test_promtool_accepts_the_deploy_config(self):
        result = subprocess.run([PROMTOOL, "check", "config", DEPLOY_CONFIG],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                check=False)
        self.assertEqual(result.returncode, 0, result.stdout)


class DashboardQueryParsingTest(unittest.TestCase):
    """The query extraction itself, on the real dashboard."""

    def test_every_panel_has_queries_and_no_variable_is_left(self):
        with open(DASHBOARD, encoding="utf-8") as f:
            queries = panel_queries(json.load(f))
        self.assertGreaterEqual(len(queries), 10)
        for title, expr in queries:
            self.assertNotIn("$", expr, title)
            self.assertNotIn("[[", expr, title)

    def test_all_values_regex(self):
        self.assertEqual(all_values_regex(["b1", "a0"]), "(a0|b1)")
        self.assertEqual(all_values_regex(["a.b", "c|d"]), r"(a\\.b|c\\|d)")

    def test_substitution(self):
        values = {"job_id": ".*", "__rate_interval": "1m"}
        self.assertEqual(substitute('x{job_id=~"$job_id"}[$__rate_interval]', values),
                         'x{job_id=~".*"}[1m]')
        self.assertEqual(substitute('x{job_id=~"${job_id:regex}"}', values), 'x{job_id=~".*"}')
        self.assertEqual(substitute('x{job_id=~"[[job_id]]"}', values), 'x{job_id=~".*"}')


def prometheus_missing():
    if PROMETHEUS is None or PROMTOOL is None:
        return "prometheus or promtool is absent (Debian package prometheus)"
    return catq_missing()


@unittest.skipIf(prometheus_missing(), prometheus_missing())
class PanelsReturnDataTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="catq_prometheus_test_")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.children = []
        self.addCleanup(self._stop_children)
        with open(DASHBOARD, encoding="utf-8") as f:
            self.dashboard = json.load(f)

    def _stop_children(self):
        # Prometheus first (it scrapes the others), then workers, then server.
        for child in reversed(self.children):
            child.stop()

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def start(self, name, *args):
        child = Child(name, [CATQ, *args])
        self.children.append(child)
        return child

    def start_catq(self):
        """The server (no in-process workers) and two remote workers, each
        with a metrics endpoint; returns the server's gRPC address and the
        scrape targets by job."""
        server = self.start("catq serve", "serve", "--listen", "127.0.0.1:0", "--data-dir",
                            self.path("data"), "--workers", "0", "--metrics-listen",
                            "127.0.0.1:0", "--lease-seconds", "30")
        address = server.wait_for(SERVER_LISTENING)
        targets = {"catq-server": [server.wait_for(SERVER_METRICS)], "catq-worker": []}
        for n in (1, 2):
            worker = self.start(f"catq worker {n}", "worker", "--server", address, "--cache-dir",
                                self.path(f"cache-{n}"), "--id", f"worker-{n}",
                                "--poll-seconds", "1", "--metrics-listen", "127.0.0.1:0")
            targets["catq-worker"].append(worker.wait_for(WORKER_METRICS))
        return address, targets

    def start_prometheus(self, targets):
        config = self.path("prometheus.yml")
        with open(config, "w", encoding="utf-8") as f:
            yaml.safe_dump({
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                           "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": job, "metrics_path": "/metrics",
                     "static_configs": [{"targets": hosts}]}
                    for job, hosts in targets.items()],
            }, f)
        result = subprocess.run([PROMTOOL, "check", "config", config], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, check=False)
        self.assertEqual(result.returncode, 0, result.stdout)
        prometheus = Prometheus(config, self.path("tsdb"))
        self.children.append(prometheus)
        return prometheus

    def run_jobs(self, address):
        """Failing calls (so gRPC error series exist), then a block-CAT job
        on a synthetic model through the remote workers, and, with
        stories260K, a job evaluated on text (the perplexity gauge). Returns
        whether the evaluated job ran, and the job ids."""
        server = ["--server", address]
        run_catq("watch", "no-such-job", "--quiet", *server, expect_ok=False)
        run_catq("submit", "--model-id", "no-such-model", "--recipe", "rtn", *server,
                 expect_ok=False)

        model_dir = self.path("model")
        run_catq("synth", "--preset", "tiny", "--out", model_dir)
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            vocab_size = json.load(f)["vocab_size"]
        write_token_ids(self.path("calib.ids"), vocab_size)
        model_id = run_catq("upload", "--model", model_dir, "--name", "tiny", "--quiet", *server)
        calib_id = run_catq("upload", "--calib-tokens", self.path("calib.ids"), "--quiet",
                            *server)
        jobs = [run_catq("submit", "--model-id", model_id, "--calib-id", calib_id,
                         "--recipe", "cat", "--block-size", "16", "--a-bits", "4", *server)]

        evaluated = all(os.path.isfile(p) for p in STORIES_FILES)
        if evaluated:
            text = self.path("eval.txt")
            with open(text, "w", encoding="utf-8") as f:
                f.write(EVAL_TEXT)
            stories_id = run_catq("upload", "--model", STORIES_FILES[0], "--tokenizer",
                                  STORIES_FILES[1], "--name", "stories260K", "--quiet", *server)
            text_id = run_catq("upload", "--calib-text", text, "--quiet", *server)
            jobs.append(run_catq("submit", "--model-id", stories_id, "--calib-id", text_id,
                                 "--eval-calib-id", text_id, "--recipe", "cat",
                                 "--block-size", "16", *server))
        for job in jobs:
            run_catq("watch", job, "--quiet", *server)
        run_catq("fetch", jobs[0], "--out", self.path("fetched"), "--quiet", *server)
        return evaluated, jobs

    def wait_for_every_job(self, prometheus, jobs, deadline):
        """Polls until each label_values() variable on job_id lists every job.
        Grafana reads a drop-down once, and so does this test: read before a
        scrape has seen the last job's series, $job_id would leave that job out
        and its panels (the perplexity gauge) would never return data."""
        for name, metric, label in label_value_queries(self.dashboard):
            if label != "job_id":
                continue
            while True:
                listed = set(prometheus.api(f"label/{label}/values", {"match[]": metric}))
                missing = sorted(set(jobs) - listed)
                if not missing:
                    break
                if time.monotonic() > deadline:
                    self.fail(f"variable ${name}: label_values({metric}, {label}) still lacks "
                              f"{missing} after {QUERIES_SECONDS} s")
                time.sleep(0.5)

    def wait_for_targets(self, prometheus, expected):
        """Polls until every expected target has been scraped healthy; fails
        naming each one that is not."""
        deadline = time.monotonic() + TARGETS_SECONDS
        while True:
            problems = []
            seen = {}
            for target in prometheus.targets():
                seen[(target["labels"]["job"], target["labels"]["instance"])] = target
            for job, hosts in expected.items():
                for host in hosts:
                    target = seen.get((job, host))
                    if target is None:
                        problems.append(f"{job} {host}: not a target")
                    elif target["health"] != "up" or target["lastError"]:
                        problems.append(f"{job} {host}: health {target['health']}, "
                                        f"last error {target['lastError']!r}")
            if not problems:
                return
            if time.monotonic() > deadline:
                self.fail("Prometheus targets not up after "
                          f"{TARGETS_SECONDS} s:\n" + "\n".join(problems))
            time.sleep(0.5)

    def poll_for_data(self, prometheus, pending, deadline, failed):
        """Asks Prometheus each (API path, parameters) of pending, again
        each second, until it returns data or the deadline passes. Returns
        key -> data (the result list, or the label values); adds the others
        to failed, key -> why."""
        answers = {}
        pending = dict(pending)
        while True:
            for key, (path, params) in list(pending.items()):
                try:
                    data = prometheus.api(path, params)
                except ValueError as error:  # refused: asking again will not help
                    failed[key] = f"refused: {error}"
                    del pending[key]
                    continue
                result = data["result"] if isinstance(data, dict) else data
                if result:
                    answers[key] = result
                    del pending[key]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1)
        for key in pending:
            failed[key] = "no data"
        return answers

    def test_every_panel_query_returns_data_after_a_job(self):
        address, targets = self.start_catq()
        prometheus = self.start_prometheus(targets)
        self.wait_for_targets(prometheus, targets)
        evaluated, jobs = self.run_jobs(address)

        # First the label_values() variables (Grafana's drop-downs), then
        # every panel expression with each variable set to 'All' of its
        # values, as Grafana queries it; each polled until it returns data.
        deadline = time.monotonic() + QUERIES_SECONDS
        self.wait_for_every_job(prometheus, jobs, deadline)
        failed = {}
        variables = {f"variable ${name}: label_values({metric}, {label})":
                     (name, f"label/{label}/values", {"match[]": metric})
                     for name, metric, label in label_value_queries(self.dashboard)}
        answers = self.poll_for_data(prometheus, {key: (path, params) for key, (_, path, params)
                                                  in variables.items()}, deadline, failed)
        chosen = {name: all_values_regex(answers[key])
                  for key, (name, _, _) in variables.items() if key in answers}

        pending = {}
        for title, expr in panel_queries(self.dashboard, chosen):
            if PERPLEXITY in expr and not evaluated:
                with self.subTest(panel=title, expr=expr):
                    self.skipTest(f"{' and '.join(STORIES_FILES)} absent (../shared or "
                                  "CATQ_SHARED_DIR): no job evaluated on text, so no "
                                  f"{PERPLEXITY}")
                continue
            pending[f"panel {title!r}: {expr}"] = ("query", {"query": expr})
        self.assertTrue(pending)
        # And the scrapes saw the remote workers run the job's layer tasks.
        pending["the workers' finished tasks: " + WORKERS_DID_TASKS] = (
            "query", {"query": WORKERS_DID_TASKS})
        self.poll_for_data(prometheus, pending, deadline, failed)
        if failed:
            self.fail(f"{len(failed)} dashboard queries returned no data in "
                      f"{QUERIES_SECONDS} s:\n" +
                      "\n".join(f"  {key}\n    -> {why}" for key, why in sorted(failed.items())))

        # Scrapes went on cleanly all along (a label clash or a malformed
        # exposition shows as a scrape error).
        self.wait_for_targets(prometheus, targets)


if __name__ == "__main__":
    unittest.main()
