"""Run the commands of one scenario and measure their wall-clock time and peak RSS."""

import os
import subprocess
import sys
import tempfile
import threading
import time

TIME_BINARY = "/usr/bin/time"
# Seconds one command may run before the benchmark gives up on it.
STEP_TIMEOUT_SECONDS = 1200
# Untimed cleanup that takes longer than this many seconds is logged, since it lengthens the run.
SLOW_CLEANUP_SECONDS = 5
STARTED = time.monotonic()


def log(message):
    """Print MESSAGE to stderr after the minutes and seconds since the benchmark started."""
    minutes, seconds = divmod(int(time.monotonic() - STARTED), 60)
    print(f"bench: [{minutes:02d}:{seconds:02d}] {message}", file=sys.stderr, flush=True)


class StepFailed(Exception):
    """A measured command exited non-zero or timed out."""

    def __init__(self, argv, message):
        super().__init__(f"{' '.join(argv)}: {message}")
        self.argv = argv


class Scenario:
    """The commands of one scenario run, timed together.

    Each command runs under GNU time (`/usr/bin/time -f "%M %U %S"`). peak_rss_kb is the largest
    maximum resident set size that it reports for any one command, which for a pipeline is that of
    its largest process. cpu_seconds adds up the user and system CPU time of all commands.
    """

    def __init__(self, environment=None):
        self.environment = environment
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.peak_rss_kb = 0
        self.steps = []

    def run(self, argv):
        """Run ARGV, add its time to the scenario's and return its stdout as text."""
        with tempfile.NamedTemporaryFile(prefix="bench-time-", mode="r") as time_file, \
                tempfile.TemporaryFile(mode="w+b") as stdout, tempfile.TemporaryFile(mode="w+b") as stderr:
            command = [TIME_BINARY, "-f", "%M %U %S", "-o", time_file.name] + list(argv)
            # A blocking wait, with a timer that kills the command at the step timeout. Python's
            # wait with a timeout polls at doubling intervals of up to 50 ms, which made a
            # 35 ms command measure 65 ms.
            start = time.perf_counter()
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                       env=self.environment)
            timer = threading.Timer(STEP_TIMEOUT_SECONDS, process.kill)
            timer.start()
            try:
                returncode = process.wait()
            finally:
                timer.cancel()
            elapsed = time.perf_counter() - start
            if elapsed >= STEP_TIMEOUT_SECONDS:
                raise StepFailed(argv, f"timed out after {STEP_TIMEOUT_SECONDS} s")

            stdout.seek(0)
            output = stdout.read().decode(errors="replace")
            if returncode != 0:
                stderr.seek(0)
                message = stderr.read().decode(errors="replace").strip()[-2000:]
                raise StepFailed(argv, f"exit status {returncode}: {message}")
            rss_kb, cpu_seconds = parse_time_output(time_file.read())

        self.seconds += elapsed
        self.cpu_seconds += cpu_seconds
        self.peak_rss_kb = max(self.peak_rss_kb, rss_kb)
        self.steps.append({"argv": list(argv), "seconds": round(elapsed, 4), "cpu_seconds": round(cpu_seconds, 2),
                           "peak_rss_kb": rss_kb})
        return output

    def result(self):
        return {"seconds": round(self.seconds, 4), "cpu_seconds": round(self.cpu_seconds, 2),
                "peak_rss_kb": self.peak_rss_kb, "steps": self.steps}


def parse_time_output(text):
    """Return (peak RSS in KiB, user + system CPU seconds) from GNU time's -o file.

    The numbers are on the last line; earlier lines are notes such as "Command exited with
    non-zero status". Missing numbers count as 0.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        rss_kb, user, system = lines[-1].split()
        return int(rss_kb), float(user) + float(system)
    except (IndexError, ValueError):
        return 0, 0.0


def run_untimed(argv, environment=None, cwd=None):
    """Run a setup command and return its stdout, or raise StepFailed with its output when it fails."""
    completed = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=environment, cwd=cwd,
                               timeout=STEP_TIMEOUT_SECONDS)
    if completed.returncode != 0:
        message = (completed.stderr or completed.stdout).decode(errors="replace").strip()[-2000:]
        raise StepFailed(argv, f"exit status {completed.returncode}: {message}")
    return completed.stdout.decode(errors="replace")


def remove_tree(path):
    """Delete PATH and everything under it without crossing into other file systems.

    A missing PATH is not an error. `rm -rf` removed a 260,000-file tree about 5 times faster
    than shutil.rmtree on the benchmark machine, and buildah's vfs storage for the large app
    contains several such trees.
    """
    if not os.path.lexists(path):
        return
    start = time.monotonic()
    run_untimed(["rm", "-rf", "--one-file-system", "--", path])
    elapsed = time.monotonic() - start
    if elapsed > SLOW_CLEANUP_SECONDS:
        log(f"removing {path} took {elapsed:.0f} s (untimed)")


def flush_disks():
    """Write dirty pages out before a timed step, so one tool's writeback is not billed to the next."""
    start = time.monotonic()
    os.sync()
    elapsed = time.monotonic() - start
    if elapsed > SLOW_CLEANUP_SECONDS:
        log(f"sync took {elapsed:.0f} s (untimed)")
