"""The gateway benchmark's report: the tables it prints, the chart, and the results block of
``docs/benchmarks.md``.  Everything here reads a finished result; nothing is measured."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

from scenarios import ROOT, SCENARIOS, VENV, Scenario


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())  # fmt: skip
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024

    def version(*command: str) -> str:
        result = subprocess.run(command, capture_output=True, text=True)  # noqa: S603
        return (result.stdout + result.stderr).strip().splitlines()[0]

    return {
        "cpu": f"{os.cpu_count()} x {cpu}",
        "memory": f"{memory} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "apache": version("apache2", "-v").split(": ", 1)[-1],
        "nginx": version("nginx", "-v").split(": ", 1)[-1],
        "mariadb": version("mariadb", "--version"),
        "wrk": version("wrk", "-v").split(" [")[0],
        "python": version(str(VENV / "bin" / "python"), "--version"),
    }


def measured(result: dict) -> list[Scenario]:
    """The scenarios a result holds, in their usual order."""
    return [scenario for scenario in SCENARIOS if scenario.key in result["table"]]


def markdown(result: dict) -> str:
    cs = result["concurrencies"]
    lines = ["| Scenario | " + " | ".join(f"c={c} req/s | p50 / p99 ms | CPU s/1k req" for c in cs) + " |",
             "|---|" + "---|---|---|" * len(cs)]  # fmt: skip
    for scenario in measured(result):
        cells = []
        for c in cs:
            row = result["table"][scenario.key][c]
            errors = f" ({row['errors']} errors)" if row["errors"] else ""
            cells.append(
                f"{row['rps']:.0f}{errors} | {row['p50_ms']:.2f} / {row['p99_ms']:.2f} | {row['cpu_s_per_1000']:.2f}"
            )
        lines.append(f"| {scenario.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def profile_markdown(found: dict) -> str:
    def table(title: str, rows: dict[str, float]) -> list[str]:
        return [f"| {title} | ms per request |", "|---|---|", *(f"| {k} | {v:.3f} |" for k, v in rows.items())]

    gate, revproxy = found["cpu_by_process_c16"]["auditgate"], found["cpu_by_process_c16"]["revproxy"]
    lines = [
        f"CPU by process at c=16 (auditgate {gate['rps']:.0f} req/s, django-revproxy {revproxy['rps']:.0f} req/s):",
        "", "| Process | auditgate ms/request | django-revproxy ms/request |", "|---|---|---|",
    ]  # fmt: skip
    for role in gate["ms_per_request"]:
        lines.append(f"| {role} | {gate['ms_per_request'][role]:.3f} | {revproxy['ms_per_request'].get(role, 0):.3f} |")
    lines.append(f"| **all** | {sum(gate['ms_per_request'].values()):.3f} | "
                 f"{sum(revproxy['ms_per_request'].values()):.3f} |")  # fmt: skip
    wall = found["wall_c1"]
    lines += [
        "",
        f"The gateway daemons' wall clock at c=1 ({wall['rps']:.0f} req/s, p50 {wall['p50_ms']:.2f} ms; py-spy, "
        f"idle included): {wall['in_daemon_ms']:.2f} ms per request in the daemon, "
        f"{wall['outside_daemon_ms']:.2f} ms outside it (wrk, Apache, the hand-off to the daemon):",
        "",
    ]
    lines += table("Phase (wall clock)", wall["phases_ms"])
    cpu = found["inprocess_cpu"]
    lines += [
        "",
        "The gateway's own CPU, in-process (one thread, no Apache; cProfile's shares of "
        f"{cpu['cpu_ms_per_request']:.3f} ms CPU and {cpu['wall_ms_per_request']:.3f} ms wall per request):",
        "",
    ]
    lines += table("Phase (CPU)", dict(sorted(cpu["phases_ms"].items(), key=lambda item: -item[1])))
    return "\n".join(lines)


def chart(result: dict, path: Path) -> None:
    """Bars of req/s per scenario and concurrency (runs in the bench venv, which has matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = result["concurrencies"]
    result["table"] = {key: {int(c): row for c, row in by_c.items()} for key, by_c in result["table"].items()}
    scenarios = measured(result)
    labels = [scenario.label for scenario in scenarios]
    figure, axes = plt.subplots(figsize=(11, 5.5))
    width = 0.8 / len(cs)
    for index, c in enumerate(cs):
        values = [result["table"][scenario.key][c]["rps"] for scenario in scenarios]
        axes.barh([i + index * width for i in range(len(labels))], values, height=width, label=f"c={c}")
    axes.set_yticks([i + width * (len(cs) - 1) / 2 for i in range(len(labels))], labels)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("requests/s (median, log scale)")
    axes.set_title(f"auditgate gateway benchmark, {result['when']}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def write_docs(result: dict) -> None:
    docs = ROOT / "docs" / "benchmarks.md"
    text = docs.read_text() if docs.exists() else "# Benchmarks\n\n<!-- results -->\n<!-- /results -->\n"
    described = "\n".join(f"- {k}: {v}" for k, v in result["machine"].items())
    ratio_lines = "\n".join(f"| {k} | {v} |" for k, v in result["ratios"].items())
    block = (
        f"<!-- results -->\n## Latest run: {result['when']}\n\n{described}\n\n"
        f"{result['rounds']} interleaved rounds of {result['seconds']} s per scenario and concurrency; medians. "
        "CPU is the whole machine's (client included) per 1000 requests.\n\n"
        f"{markdown(result)}\n\n| Ratio (req/s) | Value |\n|---|---|\n{ratio_lines}\n\n"
        f"![req/s per scenario](benchmarks.png)\n\n### Where the time goes (`--profile`)\n\n"
        f"{profile_markdown(result['profile'])}\n<!-- /results -->"
    )
    text = re.sub(r"<!-- results -->.*<!-- /results -->", lambda _: block, text, flags=re.S)
    docs.write_text(text)
