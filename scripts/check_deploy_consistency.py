"""Deployment files must say what the tests exercise.

tests/traefik.rs runs real traefik on traefik/dynamic.yml; the compose
labels, the Kubernetes ingresses and the drain timeouts are not run here
(no Docker engine, no cluster), so this checks that they agree with it:
the same sticky cookie, the same health check, and grace periods longer
than Rookery's drain. Run by scripts/test.sh after the schema checks.
"""

import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
failures = []


def load(path):
    return yaml.safe_load((ROOT / path).read_text())


def load_all(path):
    return [doc for doc in yaml.safe_load_all((ROOT / path).read_text()) if doc]


def expect(what, actual, wanted):
    if str(actual).lower() != str(wanted).lower():
        failures.append(f"{what}: {actual!r}, but traefik/dynamic.yml (tested) has {wanted!r}")


def seconds(text):
    match = re.fullmatch(r"(\d+)s?", str(text))
    if not match:
        raise ValueError(f"not a duration in seconds: {text!r}")
    return int(match.group(1))


balancer = load("traefik/dynamic.yml")["http"]["services"]["rookery"]["loadBalancer"]
cookie = balancer["sticky"]["cookie"]
health = balancer["healthCheck"]

# Compose: the labels of the replicas behind traefik.
common = load("deploy/compose-common.yaml")["services"]
labels = common["app-replica"]["labels"]
prefix = "traefik.http.services.rookery.loadbalancer."
expect("compose sticky cookie name", labels[prefix + "sticky.cookie.name"], cookie["name"])
expect("compose sticky cookie httpOnly", labels[prefix + "sticky.cookie.httpOnly"], cookie["httpOnly"])
expect("compose sticky cookie sameSite", labels[prefix + "sticky.cookie.sameSite"], cookie["sameSite"])
expect("compose health check path", labels[prefix + "healthcheck.path"], health["path"])
expect("compose health check interval", labels[prefix + "healthcheck.interval"], health["interval"])
for name in ("docker-compose.redis.yaml", "docker-compose.rabbit.yaml", "docker-compose.nats.yaml"):
    app = load(name)["services"]["app"]
    if app.get("extends", {}).get("service") != "app-replica":
        failures.append(f"{name}: app does not extend app-replica (the labelled service)")
    if "ports" in app or "container_name" in app:
        failures.append(f"{name}: app must not publish ports or fix its name, or --scale fails")

# Drain: SHUTDOWN_TIMEOUT (default 10 s) must fit in the grace period.
default_shutdown = 10
grace = seconds(common["app"]["stop_grace_period"])
if grace <= default_shutdown:
    failures.append(f"compose stop_grace_period {grace}s is not above SHUTDOWN_TIMEOUT {default_shutdown}s")

# Kubernetes.
config = next(doc for doc in load_all("k8s/global-config.yaml") if doc["kind"] == "ConfigMap")
k8s_shutdown = int(config["data"]["SHUTDOWN_TIMEOUT"])
deployment = next(doc for doc in load_all("k8s/rookery/rookery.yaml") if doc["kind"] == "Deployment")
pod = deployment["spec"]["template"]["spec"]
if pod["terminationGracePeriodSeconds"] <= k8s_shutdown:
    failures.append("k8s terminationGracePeriodSeconds is not above SHUTDOWN_TIMEOUT")
probes = pod["containers"][0]
expect("k8s readiness probe path", probes["readinessProbe"]["httpGet"]["path"], health["path"])
expect("k8s liveness probe path", probes["livenessProbe"]["httpGet"]["path"], "/healthz")

route = load_all("k8s/ingress/traefik/ingressroute.yaml")[0]
route_cookie = route["spec"]["routes"][0]["services"][0]["sticky"]["cookie"]
for key in ("name", "httpOnly", "sameSite"):
    expect(f"k8s IngressRoute sticky cookie {key}", route_cookie[key], cookie[key])
plain = load_all("k8s/ingress/ingress-nginx.yaml")[0]
tls_docs = load_all("k8s/ingress/tls/ingress-nginx-tls.yaml")
tls = next(doc for doc in tls_docs if doc["kind"] == "Ingress")
for name, ingress in (("ingress-nginx", plain), ("TLS ingress-nginx", tls)):
    nginx = ingress["metadata"]["annotations"]
    expect(f"{name} affinity", nginx["nginx.ingress.kubernetes.io/affinity"], "cookie")
    expect(f"{name} cookie name", nginx["nginx.ingress.kubernetes.io/session-cookie-name"], cookie["name"])
# The TLS example replaces the plain one: the same rules and backend.
expect("TLS ingress rules", tls["spec"]["rules"], plain["spec"]["rules"])
tls_config = next(doc for doc in tls_docs if doc["kind"] == "ConfigMap")
expect("TLS example COOKIE_SECURE", tls_config["data"]["COOKIE_SECURE"], "true")
env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
if {"configMapRef": {"name": tls_config["metadata"]["name"], "optional": True}} not in env_from:
    failures.append("the Deployment does not read the TLS example's ConfigMap (optional)")

if failures:
    print("deployment files disagree with what is tested:", *failures, sep="\n  ")
    sys.exit(1)
print("deployment files agree with traefik/dynamic.yml and the drain timeouts")
