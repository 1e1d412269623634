"""The gateway benchmark's report: the tables it prints, the chart, and the results block of
``docs/benchmarks.md``.  Everything here reads a finished result; nothing is measured."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

from scenarios import BY_KEY, NESTED_TIMEOUT, ROOT, SCENARIOS, SLOW_DELAY, VENV, Scenario


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
    if result.get("database"):  # --remote-db: say where the queries went
        lines[:0] = [f"Database: {result['database']}", ""]
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


def _answers(run: dict) -> str:
    statuses = ", ".join(f"{n} x {code}" for code, n in run["statuses"].items()) or "none"
    errors = ", ".join(f"{n} {kind}" for kind, n in run["socket_errors"].items() if n)
    return statuses + (f"; socket errors: {errors}" if errors else "")


def chain_markdown(result: dict) -> str:
    chain, gateway = result["chain"], result["gateway"]
    hops = ", ".join(gateway["hop_groups"]) or "none"
    lines = [
        f"Chain (client -> proxy -> A -> proxy over https -> B), {chain['seconds']} s per run; the gateway "
        f"group has {gateway['processes']} x {gateway['threads_per_process']} = {gateway['threads']} threads, "
        f"hop-level groups: {hops}; A gives up on its nested call after {NESTED_TIMEOUT:g} s (504).",
        "",
        "| Proxy | c | 2xx req/s | p50 / p99 / max ms | answers | drained after |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for key, by_c in chain["runs"].items():
        for c, run in by_c.items():
            latency = f"{run['p50_ms']:.1f} / {run['p99_ms']:.1f} / {run['max_ms']:.0f}"
            lines.append(f"| {BY_KEY[key].label} | {c} | {run['ok_rps']:.1f} | {latency} | {_answers(run)} | "
                         f"{run['settle_s']} s |")  # fmt: skip
    lines += ["", "One request each, before the runs:", ""]
    lines += [f"- {BY_KEY[key].label}: {seen}" for key, seen in chain["checks"].items()]
    return "\n".join(lines)


def slow_markdown(result: dict) -> str:
    slow = result["slow"]
    lines = [
        f"Slow upstream ({SLOW_DELAY:g} s before it answers), {slow['connections']} connections for "
        f"{slow['seconds']} s; resident memory (VmRSS summed over the processes, MiB) before the run -> its peak:",
        "",
        "| Proxy | 2xx req/s | p50 / p99 / max ms | answers | gateway daemons | Apache | nginx |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for key, run in slow["runs"].items():
        memory = [run["memory"].get(role) for role in ("gateway daemons", "Apache (parent and workers)", "nginx")]
        cells = " | ".join(f"{m['before_mib']:.0f} -> {m['peak_mib']:.0f}" if m else "-" for m in memory)
        lines.append(f"| {BY_KEY[key].label} | {run['ok_rps']:.1f} | {run['p50_ms']:.0f} / {run['p99_ms']:.0f} / "
                     f"{run['max_ms']:.0f} | {_answers(run)} | {cells} |")  # fmt: skip
    lines += ["", "One request each, before the runs:", ""]
    lines += [f"- {BY_KEY[key].label}: {seen}" for key, seen in slow["checks"].items()]
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
    writes = found.get("audit_writes")
    if writes:
        lines += [
            "",
            "The audit writes as MariaDB counted them (`SHOW GLOBAL STATUS` around a run of the gateway at each "
            "concurrency): rows written per INSERT statement (the group commit's batch), outcome UPDATEs per COMMIT "
            "(the drainer's batch; a batch of one is autocommitted), and per request:",
            "",
            "| c | req/s | attempts per INSERT | UPDATEs per COMMIT | INSERTs | UPDATEs | COMMITs | InnoDB fsyncs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c, w in writes.items():
            lines.append(f"| {c} | {w['rps']:.0f} | {w['attempts_per_insert']:.2f} | {w['updates_per_commit']:.2f} | "
                         f"{w['inserts_per_request']:.3f} | {w['updates_per_request']:.3f} | "
                         f"{w['commits_per_request']:.3f} | {w['fsyncs_per_request']:.3f} |")  # fmt: skip
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
    if result.get("chain") and result.get("slow") and "<!-- chain-slow -->" in text:
        chain_slow = (f"<!-- chain-slow -->\nFrom the run of {result['when']} (the machine and the other scenarios: "
                      f"[Results](#results)).\n\n{chain_markdown(result)}\n\n{slow_markdown(result)}\n"
                      "<!-- /chain-slow -->")  # fmt: skip
        text = re.sub(r"<!-- chain-slow -->.*<!-- /chain-slow -->", lambda _: chain_slow, text, flags=re.S)
    docs.write_text(text)
