#!/usr/bin/env python3
"""Checks the deployment files against each other and against the code.

The dashboard's queries name metrics the server and the workers export
(server/server_metrics.cc, server/metrics_endpoint.cc, worker/worker_metrics.cc),
every panel has a data source, Compose and the Kubernetes manifests parse and
name images, ports and probes that exist, Prometheus scrapes the ports the
server and the workers serve metrics on, and the Dockerfile installs packages
only through scripts/setup (scripts/packages.txt, the one list).
test_prometheus.py runs the same dashboard against a real Prometheus.
"""

import json
import os
import re
import shutil
import subprocess
import unittest

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


# The sources that register metric families: the server's, the resident
# memory gauge of every /metrics endpoint, the remote worker's.
METRIC_SOURCES = (("server", "server_metrics.cc"), ("server", "metrics_endpoint.cc"),
                  ("worker", "worker_metrics.cc"))


def exported_metrics():
    """The metric family names the server and the workers register."""
    names = set()
    for parts in METRIC_SOURCES:
        source = read(*parts)
        names |= set(re.findall(r'\.Name\("(catq_[a-z0-9_]+)"\)', source))
        names |= set(re.findall(r'GaugeFamily\(\s*"(catq_[a-z0-9_]+)"', source))
        names |= set(re.findall(r'\.name\s*=\s*"(catq_[a-z0-9_]+)"', source))
    return names


def metric_label_names():
    """Label names the metric sources give their series ({"name", value})."""
    names = set()
    for parts in METRIC_SOURCES:
        names |= set(re.findall(r'\{\s*"([a-z_]+)"\s*,', read(*parts)))
    return names


def compose_metrics_port(service):
    """The port a Compose service's --metrics-listen names."""
    command = service["command"]
    return command[command.index("--metrics-listen") + 1].rsplit(":", 1)[1]


def metric_names_in(expr):
    """catq_ metric names in a PromQL expression, histogram suffixes removed."""
    names = set()
    for name in re.findall(r"\bcatq_[a-z0-9_]+", expr):
        names.add(re.sub(r"_(bucket|count|sum)$", "", name))
    return names


def container_ports(container):
    return {p.get("name"): p["containerPort"] for p in container.get("ports", [])}


class DashboardTest(unittest.TestCase):
    def setUp(self):
        self.dashboard = json.loads(read("deploy", "grafana", "dashboards", "catq.json"))
        self.exported = exported_metrics()

    def test_the_server_exports_the_families_the_test_looks_for(self):
        for name in ("catq_grpc_requests_total", "catq_jobs", "catq_queue_depth",
                     "catq_site_sqnr_db", "catq_task_duration_seconds", "catq_job_perplexity",
                     "catq_process_resident_memory_bytes"):
            self.assertIn(name, self.exported)

    def test_the_worker_exports_its_families(self):
        for name in ("catq_worker_tasks_total", "catq_worker_task_duration_seconds",
                     "catq_worker_read_bytes_total", "catq_worker_busy"):
            self.assertIn(name, self.exported)

    def test_no_metric_label_clashes_with_prometheus_target_labels(self):
        # Prometheus adds `job` and `instance` to every series it scrapes; a
        # metric label of that name would be renamed exported_job.
        labels = metric_label_names()
        self.assertIn("job_id", labels)
        self.assertFalse(labels & {"job", "instance"}, labels)

    def test_every_panel_has_a_datasource_and_queries_exported_metrics(self):
        panels = [p for p in self.dashboard["panels"] if p["type"] != "row"]
        self.assertGreaterEqual(len(panels), 10)
        for panel in panels:
            with self.subTest(panel=panel["title"]):
                self.assertEqual(panel["datasource"]["uid"], "catq-prometheus")
                self.assertTrue(panel["targets"], "no query")
                for target in panel["targets"]:
                    names = metric_names_in(target["expr"])
                    self.assertTrue(names, target["expr"])
                    self.assertLessEqual(names, self.exported, target["expr"])

    def test_the_four_sections_are_there(self):
        rows = [p["title"] for p in self.dashboard["panels"] if p["type"] == "row"]
        self.assertEqual(rows, ["Overview", "Workers and queue", "Latency",
                                "Quality of recent jobs"])

    def test_provisioning_points_at_the_dashboard_and_the_datasource_uid(self):
        sources = yaml.safe_load(read("deploy", "grafana", "provisioning", "datasources",
                                      "prometheus.yml"))
        self.assertEqual(sources["datasources"][0]["uid"], "catq-prometheus")
        providers = yaml.safe_load(read("deploy", "grafana", "provisioning", "dashboards",
                                        "catq.yml"))
        compose = yaml.safe_load(read("deploy", "docker-compose.yml"))
        mounts = compose["services"]["grafana"]["volumes"]
        self.assertIn("./grafana/dashboards:" + providers["providers"][0]["options"]["path"]
                      + ":ro", mounts)


class ComposeAndPrometheusTest(unittest.TestCase):
    def setUp(self):
        self.compose = yaml.safe_load(read("deploy", "docker-compose.yml"))
        self.prometheus = yaml.safe_load(read("deploy", "prometheus", "prometheus.yml"))

    def test_services_name_images_and_commands_that_exist(self):
        services = self.compose["services"]
        self.assertEqual(set(services), {"catq-server", "catq-worker-1", "catq-worker-2",
                                         "prometheus", "grafana"})
        for name, service in services.items():
            with self.subTest(service=name):
                self.assertTrue(service.get("image"))
        server = services["catq-server"]["command"]
        self.assertEqual(server[0], "serve")
        for worker in ("catq-worker-1", "catq-worker-2"):
            command = services[worker]["command"]
            self.assertEqual(command[0], "worker")
            self.assertEqual(command[command.index("--server") + 1], "catq-server:50051")
        self.assertIn("0.0.0.0:50051", server)

    def scrape_targets(self):
        """The static targets of each scrape job."""
        jobs = {}
        for config in self.prometheus["scrape_configs"]:
            self.assertNotIn(config["job_name"], jobs)
            self.assertFalse(config.get("honor_labels", False), config["job_name"])
            jobs[config["job_name"]] = sorted(
                target for static in config["static_configs"] for target in static["targets"])
        return jobs

    def test_prometheus_scrapes_the_ports_the_server_and_workers_serve_metrics_on(self):
        services = self.compose["services"]
        workers = sorted(name for name, service in services.items()
                         if service.get("command", [""])[0] == "worker")
        self.assertEqual(workers, ["catq-worker-1", "catq-worker-2"])
        self.assertEqual(self.scrape_targets(), {
            "catq-server": [f"catq-server:{compose_metrics_port(services['catq-server'])}"],
            "catq-worker": [f"{name}:{compose_metrics_port(services[name])}"
                            for name in workers],
        })
        # The ports a container listens on, not loopback.
        for name in ["catq-server"] + workers:
            command = services[name]["command"]
            self.assertTrue(command[command.index("--metrics-listen") + 1].startswith("0.0.0.0:"),
                            name)

    def test_promtool_accepts_the_config(self):
        promtool = shutil.which("promtool")
        if promtool is None:
            self.skipTest("promtool is absent (Debian package prometheus)")
        subprocess.run([promtool, "check", "config",
                        os.path.join(DEPLOY, "prometheus", "prometheus.yml")], check=True)


class KubernetesTest(unittest.TestCase):
    def setUp(self):
        self.docs = [d for d in yaml.safe_load_all(read("deploy", "k8s", "catq.yaml")) if d]
        self.by_kind = {}
        for doc in self.docs:
            self.by_kind.setdefault(doc["kind"], []).append(doc)

    def test_every_manifest_has_kind_version_and_name(self):
        for doc in self.docs:
            self.assertTrue(doc.get("apiVersion"))
            self.assertTrue(doc["metadata"]["name"])
        for kind in ("StatefulSet", "Deployment", "Service", "HorizontalPodAutoscaler",
                     "ConfigMap", "Secret"):
            self.assertIn(kind, self.by_kind)

    def test_containers_name_images_and_probes_use_their_ports(self):
        for workload in self.by_kind["StatefulSet"] + self.by_kind["Deployment"]:
            for container in workload["spec"]["template"]["spec"]["containers"]:
                with self.subTest(workload=workload["metadata"]["name"]):
                    self.assertTrue(container["image"])
                    ports = set(container_ports(container).values())
                    for probe in ("readinessProbe", "livenessProbe"):
                        if probe in container:
                            self.assertIn(container[probe]["grpc"]["port"], ports)
        server = self.by_kind["StatefulSet"][0]["spec"]["template"]["spec"]["containers"][0]
        self.assertIn("readinessProbe", server)
        self.assertIn("livenessProbe", server)

    def test_the_service_targets_the_server_ports(self):
        service = self.by_kind["Service"][0]
        server = self.by_kind["StatefulSet"][0]["spec"]["template"]["spec"]["containers"][0]
        names = container_ports(server)
        for port in service["spec"]["ports"]:
            self.assertIn(port["targetPort"], names)
        args = server["args"]
        self.assertEqual(args[args.index("--metrics-listen") + 1].rsplit(":", 1)[1],
                         str(names["metrics"]))

    def test_the_autoscaler_scales_the_workers_on_an_exported_metric(self):
        hpa = self.by_kind["HorizontalPodAutoscaler"][0]
        workers = self.by_kind["Deployment"][0]["metadata"]["name"]
        self.assertEqual(hpa["spec"]["scaleTargetRef"]["name"], workers)
        metric = hpa["spec"]["metrics"][0]["external"]["metric"]["name"]
        self.assertIn(metric, exported_metrics())
        adapter = [d for d in self.by_kind["ConfigMap"] if d["metadata"]["name"] == "adapter-config"]
        self.assertIn(metric, adapter[0]["data"]["config.yaml"])

    def test_secret_keys_the_pods_read_exist(self):
        secret = self.by_kind["Secret"][0]
        keys = set(secret["stringData"])
        for workload in self.by_kind["Deployment"]:
            for container in workload["spec"]["template"]["spec"]["containers"]:
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        self.assertIn(ref["key"], keys)

    def test_pods_run_as_the_images_user(self):
        dockerfile = read("Dockerfile")
        uid = int(re.search(r"^USER (\d+)$", dockerfile, re.M).group(1))
        for workload in self.by_kind["StatefulSet"] + self.by_kind["Deployment"]:
            context = workload["spec"]["template"]["spec"]["securityContext"]
            self.assertTrue(context["runAsNonRoot"])
            self.assertEqual(context["runAsUser"], uid)


class DockerfileTest(unittest.TestCase):
    def test_packages_come_only_from_scripts_setup(self):
        dockerfile = read("Dockerfile")
        self.assertNotIn("apt-get install", dockerfile)
        self.assertIn("scripts/packages.txt", dockerfile)
        stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
        self.assertEqual(len(stages), 2, "a build and a runtime stage")
        self.assertIn("RUN scripts/setup\n", stages[0])
        self.assertIn("scripts/setup --runtime", stages[1])
        packages = read("scripts", "packages.txt")
        self.assertIn("[runtime]", packages)
        self.assertIn("libprometheus-cpp-pull1.0", packages)


if __name__ == "__main__":
    unittest.main()
