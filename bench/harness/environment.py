"""Facts about a measurement: the machine, the tools' versions and the lambda-image commit."""

import os
import platform
import subprocess

from .workspace import REPOSITORY_ROOT

REGISTRY_BINARY = "/usr/bin/docker-registry"
MB = 1_000_000


def command_output(argv, cwd=None):
    """Return ARGV's stripped stdout, or an explanation when it cannot run."""
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    return (completed.stdout or completed.stderr).strip()


def load_average():
    """Return the 1-minute load average, the mean count of runnable processes (see proc(5))."""
    with open("/proc/loadavg") as loadavg:
        return float(loadavg.read().split()[0])


def machine():
    model = "unknown"
    memory_kb = 0
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "nproc": command_output(["nproc"]),
        "cpu_model": model,
        "memory_bytes": memory_kb * 1024,
        "kernel": platform.release(),
    }


def head_commit():
    return command_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY_ROOT)


def lambda_image(built_binary, binary, extra_arguments):
    """Return the version and sha256 of BINARY, a copy of BUILT_BINARY, and the commit it was built from."""
    dirty = command_output(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                           cwd=REPOSITORY_ROOT)
    return {
        "binary": built_binary,
        "sha256": command_output(["sha256sum", binary]).split()[0],
        "version": command_output([binary, "--version"]),
        "commit": head_commit(),
        # Paths under src/ and the Cargo files that differed from the commit when the benchmark started.
        "uncommitted_changes": [line for line in dirty.splitlines() if line.strip()],
        "extra_arguments": list(extra_arguments),
    }


def tool_versions():
    return {
        "buildah": command_output(["buildah", "--version"]),
        "umoci": command_output(["umoci", "--version"]),
        "skopeo": command_output(["skopeo", "--version"]),
        "pigz": command_output(["pigz", "--version"]),
        "tar": command_output(["tar", "--version"]).splitlines()[0],
        "docker-registry": command_output([REGISTRY_BINARY, "--version"]),
        "python": platform.python_version(),
    }


def describe(results):
    """Return Markdown lines that describe the command, the machine, the tools and the base image."""
    machine_info = results["machine"]
    binary = results["lambda_image"]
    base = results["base_image"]
    tools = results["tools"]
    changes = binary["uncommitted_changes"]
    tree = (f"plus uncommitted changes to {len(changes)} paths under src/ and the Cargo files"
            if changes else "with no uncommitted changes to src/ or the Cargo files")
    if results["commit_at_end"] != binary["commit"]:
        tree += f" (HEAD moved to {results['commit_at_end']} while the benchmark ran)"
    lines = [
        f"Command: `{results['command']}`, started {results['started']}, finished {results['finished']}.",
        "",
        f"Machine: {machine_info['nproc']} CPUs ({machine_info['cpu_model']}), "
        f"{machine_info['memory_bytes'] / 2**30:.1f} GiB of memory, Linux {machine_info['kernel']}.",
        "",
        f"lambda-image: {binary['version']} (sha256 {binary['sha256'][:12]}), built from commit "
        f"{binary['commit']} {tree}.",
        "",
        f"Peers: {tools['buildah']}; {tools['umoci']}; {tools['skopeo']}; {tools['pigz']}; "
        f"{tools['docker-registry']}.",
        "",
        f"Base image: {base['layers']} gzip layers, {base['compressed_bytes'] / MB:.1f} MB compressed, "
        f"index {base['index_digest']}.",
        "",
    ]
    return "\n".join(lines)
