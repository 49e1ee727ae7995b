"""Medians, ratios and the Markdown tables that the benchmark prints."""

import statistics

MB = 1_000_000
PEERS = ("buildah", "umoci + skopeo")
TOOLS = ("lambda-image",) + PEERS + ("pipeline",)
BUILD_SCENARIOS = ("cold", "warm", "one-file-changed")
# The pipeline has one scenario, so its cell in every row repeats the same measurement.
PIPELINE_SCENARIO = "pack"


def summarize(samples):
    """Group samples by (app, tool, scenario) into their medians, extremes and peak RSS."""
    groups = {}
    for sample in samples:
        groups.setdefault((sample["app"], sample["tool"], sample["scenario"]), []).append(sample)
    summary = {}
    for key, group in groups.items():
        seconds = [sample["seconds"] for sample in group]
        summary[key] = {
            "runs": len(group),
            "median_seconds": statistics.median(seconds),
            "min_seconds": min(seconds),
            "max_seconds": max(seconds),
            "median_cpu_seconds": statistics.median(sample["cpu_seconds"] for sample in group),
            "peak_rss_kb": max(sample["peak_rss_kb"] for sample in group),
        }
    return summary


def format_seconds(seconds):
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def format_ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator == 0:
        return "n/a"
    return f"{numerator / denominator:.2f}×"


def format_megabytes(kibibytes):
    return f"{kibibytes * 1024 / MB:.0f} MB"


def markdown_rows(rows):
    header = rows[0]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] * len(header)) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows[1:]]


class AppTables:
    """The tables of one app, read from the summary of all samples."""

    def __init__(self, app, summary, failed):
        self.app = app
        self.summary = summary
        self.failed = failed

    def entry(self, tool, scenario):
        if tool == "pipeline":
            scenario = PIPELINE_SCENARIO
        return self.summary.get((self.app, tool, scenario))

    def cell(self, tool, scenario, field, formatter):
        entry = self.entry(tool, scenario)
        if entry is not None:
            return formatter(entry[field])
        key_scenario = PIPELINE_SCENARIO if tool == "pipeline" else scenario
        return "failed" if (self.app, tool, key_scenario) in self.failed else "n/a"

    def median(self, tool, scenario):
        entry = self.entry(tool, scenario)
        return entry["median_seconds"] if entry else None

    def time_table(self):
        """Return the median seconds of every tool and lambda-image's ratios to the others."""
        header = (["scenario"] + list(TOOLS) + [f"lambda-image ÷ {peer}" for peer in PEERS]
                  + ["lambda-image ÷ pipeline", "lambda-image peak RSS"])
        rows = [header]
        for scenario in BUILD_SCENARIOS:
            ours = self.median("lambda-image", scenario)
            row = [scenario] + [self.cell(tool, scenario, "median_seconds", format_seconds) for tool in TOOLS]
            row += [format_ratio(ours, self.median(other, scenario)) for other in PEERS + ("pipeline",)]
            row.append(self.cell("lambda-image", scenario, "peak_rss_kb", format_megabytes))
            rows.append(row)
        return markdown_rows(rows)

    def tool_table(self, field, formatter):
        rows = [["scenario"] + list(TOOLS)]
        for scenario in BUILD_SCENARIOS:
            rows.append([scenario] + [self.cell(tool, scenario, field, formatter) for tool in TOOLS])
        return markdown_rows(rows)


def app_heading(app, stats, summary):
    runs = {tool: max((entry["runs"] for (a, t, _), entry in summary.items() if a == app and t == tool), default=0)
            for tool in TOOLS}
    run_text = ", ".join(f"{tool} {count}" for tool, count in runs.items())
    return [
        f"### {app}",
        "",
        f"{stats['files']:,} files, {stats['file_bytes'] / MB:.1f} MB of file data, "
        f"{stats['tar_bytes'] / MB:.1f} MB as an uncompressed tar. Runs: {run_text}.",
        "",
    ]


def load_note(samples):
    loads = [sample["load_average_1min"] for sample in samples]
    if not loads:
        return None
    return (f"1-minute load average just before each measurement: median {statistics.median(loads):.2f}, "
            f"range {min(loads):.2f} to {max(loads):.2f}. It counts the benchmark's own commands of the "
            "minute before too, which keep up to 2 threads busy (more in buildah), so it is a rough sign of "
            "other work competing for the CPUs, not a measure of it.")


def failure_lines(failures):
    lines = []
    for failure in failures:
        message = " ".join(failure["error"].split())
        lines.append(f"- {failure['tool']}, {failure['scenario']}, run {failure['run']}: {message[-600:]}")
    return lines


def markdown_report(apps, samples, failures, statistics_by_app, notes):
    summary = summarize(samples)
    failed = {(failure["app"], failure["tool"], failure["scenario"]) for failure in failures}
    lines = []
    for app in apps:
        tables = AppTables(app, summary, failed)
        lines += app_heading(app, statistics_by_app[app], summary)
        lines += ["Median wall-clock seconds; a ratio below 1 means lambda-image took less time.", ""]
        lines += tables.time_table()
        lines += ["", "Median CPU time (user + system of each command and the child processes it waited for):", ""]
        lines += tables.tool_table("median_cpu_seconds", format_seconds)
        lines += ["", "Peak RSS of the largest single process, highest over the runs:", ""]
        lines += tables.tool_table("peak_rss_kb", format_megabytes)
        lines.append("")
        app_failures = [failure for failure in failures if failure["app"] == app]
        if app_failures:
            lines += ["Failures:", ""] + failure_lines(app_failures) + [""]
    all_notes = list(notes)
    load = load_note(samples)
    if load:
        all_notes.append(load)
    if all_notes:
        lines += ["Notes:", ""] + [f"- {note}" for note in all_notes] + [""]
    return "\n".join(lines)
