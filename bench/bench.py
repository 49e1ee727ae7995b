#!/usr/bin/env python3
"""Benchmark lambda-image against buildah, umoci + skopeo and a tar | pigz pipeline.

Run it through bench/run, which installs the tools and builds the release binary first.
Everything runs on this machine: two docker-registry processes on 127.0.0.1 (one serves the
synthetic Lambda base image, one receives the pushes), and no command is aimed at another host.

Prints one Markdown table per app and writes every measurement to bench/results/<timestamp>.json.
Standard library only.
"""

import argparse
import datetime
import json
import os
import sys

from harness import environment, report
from harness.measure import StepFailed, log
from harness.registry import Registry
from harness.tools import Buildah, Context, LambdaImage, Pipeline, UmociSkopeo, lambda_image_extra_arguments
from harness.workspace import APPS, BENCH_DIR, REPOSITORY_ROOT, Workspace, app_statistics, base_statistics

DEFAULT_RUNS = 5
# One run of the large app with every tool took about 7 minutes on 2 CPUs, about 5 of them in
# buildah, so by default the large app gets fewer runs and buildah fewer still.
DEFAULT_LARGE_RUNS = 2
DEFAULT_LARGE_BUILDAH_RUNS = 1


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                        help=f"runs of every scenario for the light and medium apps (default: {DEFAULT_RUNS})")
    parser.add_argument("--large-runs", type=int,
                        help=f"runs of every tool for the large app (default: {DEFAULT_LARGE_RUNS}, and "
                             f"{DEFAULT_LARGE_BUILDAH_RUNS} for buildah, each at most --runs)")
    parser.add_argument("--apps", default=",".join(APPS),
                        help=f"comma-separated apps to measure, from {', '.join(APPS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="one run of the light and medium apps only")
    parser.add_argument("--binary", default=os.path.join(REPOSITORY_ROOT, "target", "release", "lambda-image"),
                        help="the lambda-image binary to measure (default: target/release/lambda-image)")
    parser.add_argument("--work-dir", default=os.path.join(REPOSITORY_ROOT, "target", "bench"),
                        help="folder for installed apps, the base layout and scratch files (default: target/bench)")
    args = parser.parse_args(argv)

    if args.quick:
        args.runs = 1
        args.apps = "light,medium"
    args.apps = [name.strip() for name in args.apps.split(",") if name.strip()]
    unknown = [name for name in args.apps if name not in APPS]
    if unknown or not args.apps:
        parser.error(f"--apps: unknown app {', '.join(unknown) or '(none given)'}; choose from {', '.join(APPS)}")
    if args.runs < 1 or (args.large_runs is not None and args.large_runs < 1):
        parser.error("--runs and --large-runs must be at least 1")
    if not os.access(args.binary, os.X_OK):
        parser.error(f"{args.binary} is not an executable file; run `cargo build --release` or use bench/run")
    return args


def runs_per_tool(app, args):
    """Return {tool name: runs} for APP."""
    if app != "large":
        return dict.fromkeys(report.TOOLS, args.runs)
    if args.large_runs is not None:
        return dict.fromkeys(report.TOOLS, args.large_runs)
    runs = dict.fromkeys(report.TOOLS, min(args.runs, DEFAULT_LARGE_RUNS))
    runs["buildah"] = min(args.runs, DEFAULT_LARGE_BUILDAH_RUNS)
    return runs


class Recorder:
    """Collects the samples and failures of all runs."""

    def __init__(self):
        self.samples = []
        self.failures = []

    def for_group(self, app, tool, run_number):
        def record(scenario, measure):
            # Other work on the machine slows every tool; the load average before each sample shows it.
            load = environment.load_average()
            try:
                result = measure()
            except StepFailed as error:
                self.failures.append({"app": app, "tool": tool, "scenario": scenario, "run": run_number,
                                      "error": str(error)})
                log(f"{app}: {tool} {scenario} run {run_number} FAILED: {error}")
                raise
            sample = dict(app=app, tool=tool, scenario=scenario, run=run_number, load_average_1min=load,
                          **result.result())
            self.samples.append(sample)
            log(f"{app}: {tool} {scenario} run {run_number}: {sample['seconds']:.2f} s, "
                f"{sample['cpu_seconds']:.2f} s CPU, peak RSS {sample['peak_rss_kb'] * 1024 / 1e6:.0f} MB, "
                f"load average before {load:.2f}")
        return record


def measure_app(app, args, workspace, base_reference, tools, recorder):
    context = Context(workspace.app_dir(app), workspace.edit_file(app), base_reference,
                      environment.REGISTRY_BINARY, workspace.scratch_dir)
    runs = runs_per_tool(app, args)
    for run_number in range(1, max(runs.values()) + 1):
        for tool in tools:
            if run_number > runs[tool.name]:
                continue
            try:
                tool.run_group(context, run_number, recorder.for_group(app, tool.name, run_number))
            except StepFailed:
                # Recorded already; the tool's later scenarios in this run depend on the failed one.
                pass


def write_results(results):
    folder = os.path.join(BENCH_DIR, "results")
    os.makedirs(folder, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(folder, f"{stamp}.json")
    with open(path, "w") as out:
        json.dump(results, out, indent=2)
        out.write("\n")
    return path


def main(argv=None):
    args = parse_arguments(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    workspace = Workspace(args.work_dir)
    # A private copy, so that a `cargo build` elsewhere during the run cannot change what is measured.
    binary = workspace.copy_binary(args.binary)
    extra_arguments = lambda_image_extra_arguments(binary)
    # Read before the measurements, because other work may commit while they run. bench/run
    # builds the binary just before it starts this script.
    lambda_image = environment.lambda_image(args.binary, binary, extra_arguments)
    workspace.prepare(args.apps)

    tools = [LambdaImage(binary, extra_arguments), Pipeline(), Buildah(), UmociSkopeo()]
    recorder = Recorder()
    statistics_by_app = {}

    with Registry(environment.REGISTRY_BINARY, os.path.join(workspace.scratch_dir, "base-registry")) as base_registry:
        base_reference = workspace.push_base(base_registry)
        for app in args.apps:
            # Reading every file once also fills the page cache, so all tools start from a warm one.
            statistics_by_app[app] = app_statistics(workspace.app_dir(app))
            log(f"{app}: {statistics_by_app[app]['files']:,} files; runs {runs_per_tool(app, args)}")
            measure_app(app, args, workspace, base_reference, tools, recorder)

    notes = run_notes(args, extra_arguments)
    results = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": os.environ.get("LAMBDA_IMAGE_BENCH_COMMAND")
        or " ".join(["python3 bench/bench.py"] + (argv if argv is not None else sys.argv[1:])),
        "machine": environment.machine(),
        "lambda_image": lambda_image,
        "commit_at_end": environment.head_commit(),
        "tools": environment.tool_versions(),
        "base_image": base_statistics(workspace.base_layout),
        "apps": statistics_by_app,
        "runs": {app: runs_per_tool(app, args) for app in args.apps},
        "samples": recorder.samples,
        "failures": recorder.failures,
        "notes": notes,
    }
    path = write_results(results)
    print(environment.describe(results))
    print(report.markdown_report(args.apps, recorder.samples, recorder.failures, statistics_by_app, notes))
    print(f"Raw results: {os.path.relpath(path, REPOSITORY_ROOT)}")
    return 1 if recorder.failures else 0


def run_notes(args, extra_arguments):
    notes = []
    large_runs = runs_per_tool("large", args)
    if "large" in args.apps and args.large_runs is None and min(large_runs.values()) < args.runs:
        counts = ", ".join(f"{tool} {count}" for tool, count in large_runs.items())
        notes.append(f"large: fewer runs than --runs {args.runs} ({counts}), so that a full run takes about "
                     "20 minutes on 2 cores; --large-runs N sets the count for every tool.")
    if extra_arguments:
        notes.append(f"lambda-image ran with {' '.join(extra_arguments)}, so it packed the installed node_modules.")
    return notes


if __name__ == "__main__":
    sys.exit(main())
