"""Write one benchmark's section of docs/benchmarks.md and keep the other sections."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

HEADER = """# Benchmarks

Every number here was measured by a script under `benchmarks/`, run as shown in its
section. Each section names the machine and the date of its run. The machines are
shared and noisy, so compare numbers measured in one run rather than across sections.
"""


def machine_description() -> str:
    """Describe the CPU, cores, memory and platform of this machine."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB memory, "
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"
    )


def command_line(script: str, argv: list[str] | None) -> str:
    """Return the command that reruns ``benchmarks/<script>`` with ``argv``.

    ``argv`` None stands for the process's own arguments.
    """
    arguments = argv if argv is not None else sys.argv[1:]
    return f"python benchmarks/{script} " + shlex.join(arguments)


def provenance(command: str) -> str:
    """Return the command, machine and date lines that open a section."""
    return (
        f"Command: `{command}`  \n"
        f"Machine: {machine_description()}  \n"
        f"Date: {datetime.date.today().isoformat()}\n"
    )


def write_section(name: str, title: str, body: str, *, page: Path = PAGE) -> None:
    """Replace the section ``name`` of the page with ``body``, or append it."""
    start = f"<!-- section: {name} -->"
    end = f"<!-- end: {name} -->"
    block = f"{start}\n## {title}\n\n{body.rstrip()}\n{end}\n"
    text = page.read_text(encoding="utf-8") if page.exists() else HEADER
    if start in text and end in text:
        before = text[: text.index(start)]
        after = text[text.index(end) + len(end) :].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = text.rstrip() + "\n\n" + block
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text, encoding="utf-8")


def publish(
    script: str,
    argv: list[str] | None,
    text: str,
    *,
    section: str,
    title: str,
    record: bool,
) -> None:
    """Prefix ``text`` with its provenance, print it and, with ``record``, save it.

    ``script`` and ``argv`` give the command that reruns the benchmark (see
    ``command_line``). ``section`` and ``title`` name the part of the page that
    ``write_section`` replaces.
    """
    body = provenance(command_line(script, argv)) + "\n" + text
    print(body)
    if record:
        write_section(section, title, body)
