#!/usr/bin/env python3
"""Split the CPU time of a cold lambda-image push between lambda-image and the two registries.

    python3 bench/cpu_split.py [--runs N] [--app medium] [--binary PATH]

Run bench/run once first: this script reuses the apps and the base layout it prepared in
target/bench. It starts a docker-registry on 127.0.0.1 for the base and, for every run, a new one
for the push, and measures three cold pushes with an empty cache:

- the app, as bench/run's cold scenario pushes it;
- a two-file app, whose push is almost only the copy of the base between the registries;
- the app into the registry that serves the base, where the base layers are mounted, not copied.

For each it reports the wall-clock time, the CPU time of lambda-image, of the registry that
receives the push and of the one that serves the base, and the busy time of the whole machine
from /proc/stat. The `tar | pigz -p2 -6 | sha256sum` pipeline of bench/run is measured alongside.
Standard library only.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from harness import environment
from harness.measure import remove_tree
from harness.registry import Registry
from harness.workspace import REPOSITORY_ROOT, Workspace

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def busy_seconds():
    """Return the CPU time that all CPUs have spent busy since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / CLOCK_TICKS


def process_seconds(pid):
    """Return the user + system CPU time of process PID, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def measure(argv, environment_variables, receiving=None, serving=None):
    """Run ARGV and return its wall time, its CPU time, each given registry's and the machine's.

    RECEIVING is the registry that the command pushes to, and SERVING the one that serves the
    base. A registry that does both is passed once, as RECEIVING.
    """
    registries = [receiving, serving]
    subprocess.run(["sync"], check=True)
    registry_before = [process_seconds(registry.process.pid) if registry else 0.0 for registry in registries]
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before = busy_seconds()
    started = time.perf_counter()
    completed = subprocess.run(argv, env=environment_variables, capture_output=True, text=True)
    wall = time.perf_counter() - started
    busy = busy_seconds() - busy_before
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        sys.exit(f"cpu_split: {' '.join(argv)} failed with status {completed.returncode}:\n{completed.stderr}")
    own = (children.ru_utime - children_before.ru_utime) + (children.ru_stime - children_before.ru_stime)
    registry_cpu = [process_seconds(registry.process.pid) - before if registry else 0.0
                    for registry, before in zip(registries, registry_before)]
    return {"wall": wall, "command": own, "target registry": registry_cpu[0],
            "base registry": registry_cpu[1], "machine busy": busy}


def write_small_app(folder):
    os.makedirs(folder)
    with open(os.path.join(folder, "package.json"), "w") as package:
        package.write('{"name": "small", "version": "1.0.0"}\n')
    with open(os.path.join(folder, "index.js"), "w") as index:
        index.write("exports.handler = async () => ({ statusCode: 200 });\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--app", default="medium", choices=("light", "medium", "large"))
    parser.add_argument("--binary", default=os.path.join(REPOSITORY_ROOT, "target", "release", "lambda-image"))
    parser.add_argument("--work-dir", default=os.path.join(REPOSITORY_ROOT, "target", "bench"))
    args = parser.parse_args()

    workspace = Workspace(args.work_dir)
    app_dir = workspace.app_dir(args.app)
    if not os.path.isdir(app_dir) or not os.path.isdir(workspace.base_layout):
        sys.exit(f"cpu_split: {app_dir} or {workspace.base_layout} is missing; run bench/run first")
    scratch = tempfile.mkdtemp(prefix="cpu-split-", dir=args.work_dir)
    small_app = os.path.join(scratch, "small-app")
    write_small_app(small_app)

    samples = {}
    with Registry(environment.REGISTRY_BINARY, os.path.join(scratch, "base-registry")) as base_registry:
        base = workspace.push_base(base_registry)
        cases = [
            (f"{args.app}, cold push", app_dir, []),
            ("two-file app, cold push", small_app, ["--handler", "index.handler"]),
            (f"{args.app}, cold push into the base's registry", app_dir, []),
        ]
        for run in range(args.runs):
            for name, app, extra in cases:
                mounted = "base's registry" in name
                with Registry(environment.REGISTRY_BINARY, os.path.join(scratch, "target")) as target:
                    cache = tempfile.mkdtemp(prefix="cache-", dir=scratch)
                    host = base_registry.host if mounted else target.host
                    image = f"{host}/run-{run}-{len(samples.get(name, []))}:bench"
                    argv = [args.binary, "push", "--quiet", "--node-modules", "local", *extra, app, image,
                            "--base", base]
                    variables = dict(os.environ, XDG_CACHE_HOME=cache)
                    if mounted:
                        sample = measure(argv, variables, receiving=base_registry)
                    else:
                        sample = measure(argv, variables, receiving=target, serving=base_registry)
                    samples.setdefault(name, []).append(sample)
                    remove_tree(cache)
            pipeline = ["bash", "-c", f"set -o pipefail; tar -cf - -C {app_dir} . | pigz -p2 -6 | sha256sum"]
            samples.setdefault("pipeline", []).append(measure(pipeline, dict(os.environ)))
    remove_tree(scratch)

    columns = ["wall", "command", "target registry", "base registry", "machine busy"]
    print(f"Medians of {args.runs} runs, seconds ({os.cpu_count()} CPUs). `command` is the CPU time of "
          "lambda-image, or of the pipeline's processes.\n")
    print("| case | wall | command CPU | receiving registry CPU | base registry CPU | machine busy |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, runs in samples.items():
        medians = [statistics.median(sample[column] for sample in runs) for column in columns]
        print(f"| {name} | " + " | ".join(f"{value:.2f}" for value in medians) + " |")
    print()
    print(json.dumps(samples))


if __name__ == "__main__":
    main()
