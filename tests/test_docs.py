"""The documentation holds together: README.md is a short entry point, every relative link in the
docs resolves (files and #anchors), the repository map names every folder and every part of the
package, and every make target is documented somewhere. Plain file reads; no server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 300
MAP_HEADING = "Repository map"
# Build outputs and tool folders that are not part of the repository's layout.
ARTEFACTS = {"out", "build-output", "dist", "node_modules", "__pycache__"}


def doc_files() -> list[Path]:
    return [README, ROOT / "deploy" / "README.md", *sorted(DOCS.rglob("*.md"))]


def without_code(text: str) -> list[str]:
    """The lines outside fenced code blocks (``` or ~~~), inline code left in."""
    lines, fence = [], None
    for line in text.splitlines():
        marker = re.match(r"\s*(```|~~~)", line)
        if marker:
            if fence is None:
                fence = marker.group(1)
            elif marker.group(1) == fence:
                fence = None
            lines.append("")
            continue
        lines.append("" if fence else line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation other than '-' and
    '_' dropped, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    for line in without_code(path.read_text()):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")


def links(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(without_code(path.read_text()), 1):
        line = re.sub(r"`[^`]*`", "", line)  # a link inside inline code is not a link
        for match in INLINE_LINK.finditer(line):
            found.append((number, match.group(1)))
        match = REFERENCE_LINK.match(line)
        if match:
            found.append((number, match.group(1)))
    return found


def is_external(target: str) -> bool:
    return bool(re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target))  # http:, https:, mailto: ...


def test_the_slug_rules_are_githubs():
    assert slug("Load tests (Locust)") == "load-tests-locust"
    assert slug("Soak: `tritonllm soak`") == "soak-tritonllm-soak"
    assert slug("int8 weights on the CPU engine") == "int8-weights-on-the-cpu-engine"
    assert slug("KV-cache reuse") == "kv-cache-reuse"
    assert slug("`tritonllm plan --slo`: which Llama fits") == "tritonllm-plan---slo-which-llama-fits"
    assert slug("GPU path (TensorRT-LLM)") == "gpu-path-tensorrt-llm"
    assert slug("The `make_manifest` call") == "the-make_manifest-call"


def test_link_parsing_skips_code_and_reads_titles(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See [a](a.md#x) and ![b](b.png \"title\").\n"
                    "`[not](a link)`\n```\n[nor](this.md)\n```\n[ref]: c.md\n")
    assert links(page) == [(1, "a.md#x"), (1, "b.png"), (6, "c.md")]


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    broken = []
    for number, target in links(path):
        if is_external(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        if not resolved.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{where} (no heading '{anchor}' in {resolved.name})")
    assert broken == [], "\n".join(broken)


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_doc_points_at_files_the_repository_does_not_have(path):
    text = path.read_text()
    for name in ("DESIGN.md", "STYLE.md"):
        assert name not in text, f"{path.relative_to(ROOT)} mentions {name}"


def repository_map() -> str:
    """The README's repository map: the section under the heading MAP_HEADING."""
    text = README.read_text()
    match = re.search(rf"^(#+)\s+{re.escape(MAP_HEADING)}\s*$", text, re.M)
    assert match, f"README.md has no '{MAP_HEADING}' heading"
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}}\s", rest, re.M)
    return rest[:end.start()] if end else rest


def top_level_folders() -> list[str]:
    return sorted(p.name for p in ROOT.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name not in ARTEFACTS
                  and not p.name.endswith(".egg-info"))


def package_entries() -> list[str]:
    package = ROOT / "tritonllm"
    entries = []
    for p in sorted(package.iterdir()):
        if p.name.startswith((".", "__")):
            continue
        if p.is_dir() and any(p.glob("*.py")):
            entries.append(f"tritonllm/{p.name}/")
        elif p.suffix == ".py":
            entries.append(f"tritonllm/{p.name}")
    return entries


def test_the_repository_map_names_every_folder_and_package_entry():
    section = repository_map()
    wanted = [f"{name}/" for name in top_level_folders()] + package_entries()
    assert "tritonllm/engine/" in wanted and "tritonllm/cli.py" in wanted and "tests/" in wanted
    missing = [name for name in wanted if f"`{name}`" not in section]
    assert missing == [], f"README's {MAP_HEADING} lacks: {', '.join(missing)}"


def test_every_docs_page_is_linked_from_the_readme_or_the_docs_index():
    linked = set()
    for path in (README, DOCS / "README.md"):
        for _, target in links(path):
            if not is_external(target):
                linked.add((path.parent / target.partition("#")[0]).resolve())
    pages = [p for p in DOCS.glob("*.md") if p.name != "README.md"]
    assert pages
    unlinked = [p.name for p in pages if p.resolve() not in linked]
    assert unlinked == [], f"docs pages nobody links to: {unlinked}"


def test_every_make_target_is_documented():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M)
    assert phony
    text = "\n".join(p.read_text() for p in doc_files())
    missing = [t for t in phony.group(1).split() if not re.search(rf"\bmake {re.escape(t)}\b", text)]
    assert missing == [], f"make targets no doc shows: {missing}"
