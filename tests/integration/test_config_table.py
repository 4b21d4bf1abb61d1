"""docs/configuration.md and docs/operations.md against the directive table.

The table (keys[] in src/config/config.c) is printed by `hato
--list-directives`. Every row must have a row in configuration.md with the
same status (implemented, stored, accepted, refused) and every directive a
configuration.md table names must be a row; bridge and obsolete rows are
listed in their sections' text; the restart rows are the ones operations.md
says need a restart. A directive added to the table without its docs (or
docs without the row) fails here, naming it.
"""

import os
import re
import subprocess

import pytest

from conftest import HATO_BIN, ROOT

HATO = "hato's own directive table and docs"
DOCS = os.path.join(ROOT, "docs")
STATUSES = ("implemented", "stored", "accepted", "refused", "obsolete")
# Names a docs table gives that are prefixes, not rows (parse_line refuses them).
NOT_ROWS = {"plugin_opt_*", "auth_opt_*", "plugin_opt_KEY", "auth_opt_KEY"}  # prefixes, not table rows


def cells(line):
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def table_rows():
    r = subprocess.run([HATO_BIN, "--list-directives"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert cells(lines[0]) == ["Directive", "Scope", "Value", "Default", "On SIGHUP", "Status",
                               "Description"], lines[0]
    rows = {}
    for line in lines[2:]:
        c = cells(line)
        assert len(c) == 7, line
        name = c[0].strip("`")
        rows[name] = dict(scope=c[1], type=c[2], default=c[3], reload=c[4], status=c[5], doc=c[6])
    return rows


def doc_sections(path):
    """{section title: text} of the ## sections of a Markdown file."""
    out, title = {}, None
    with open(path) as f:
        for line in f:
            if line.startswith("## "):
                title = line[3:].strip()
                out[title] = ""
            elif title:
                out[title] += line
    return out


def doc_status(cell):
    """The status a docs cell starts with ("**refused** ..." -> refused)."""
    word = re.sub(r"[*`]", "", cell).strip().split(" ")[0].strip(".,:;()").lower()
    return word


def doc_table_entries():
    """[(names in the first cell, status)] of every table row of configuration.md."""
    entries = []
    header = None
    with open(os.path.join(DOCS, "configuration.md")) as f:
        for line in f:
            if not line.startswith("|"):
                header = None
                continue
            c = cells(line)
            if header is None:
                header = c
                continue
            if set(line.strip()) <= set("|- "):
                continue
            if header[0] != "Directive":
                continue
            names = [re.split(r"[\s\\]", m)[0] for m in re.findall(r"`([^`]+)`", c[0])]
            if "Status" in header:
                status = doc_status(c[header.index("Status")])
            else:  # hato's own: a "Meaning" column, all implemented
                status = "implemented"
            entries.append((names, status, line.strip()))
    return entries


@pytest.mark.hato_only(HATO)
def test_every_row_documented_with_its_status():
    rows = table_rows()
    documented = {}
    for names, status, line in doc_table_entries():
        assert status in STATUSES, f"configuration.md row with no known status: {line}"
        for n in names:
            if n in NOT_ROWS:
                continue
            assert n in rows, f"configuration.md documents '{n}', which hato does not read: {line}"
            documented[n] = status
    sections = doc_sections(os.path.join(DOCS, "configuration.md"))
    bridges, obsolete = sections["Bridges"], sections["Obsolete"]
    problems = []
    for name, row in rows.items():
        if row["scope"] == "bridge":
            if not re.search(rf"`{re.escape(name)}[` ]", bridges) and not (
                    name.startswith("bridge_") and "`bridge_*`" in bridges):
                problems.append(f"{name}: not in configuration.md's Bridges section")
        elif row["status"] == "obsolete":
            if f"`{name}`" not in obsolete:
                problems.append(f"{name}: not in configuration.md's Obsolete section")
        elif name not in documented:
            problems.append(f"{name}: no row in configuration.md")
        elif documented[name] != row["status"]:
            problems.append(f"{name}: configuration.md says {documented[name]}, "
                            f"the table {row['status']}")
    assert not problems, "\n".join(problems)


@pytest.mark.hato_only(HATO)
def test_restart_rows_match_operations_md():
    rows = table_rows()
    restart_doc = set()
    with open(os.path.join(DOCS, "operations.md")) as f:
        for line in f:
            c = cells(line) if line.startswith("|") else []
            if len(c) == 2 and c[1].startswith("**restart**"):
                restart_doc |= {m.split(" ")[0] for m in re.findall(r"`([^`]+)`", c[0])}
    restart_rows = {n for n, r in rows.items() if r["reload"] == "restart"}
    # Aliases ("alias of X") need not be listed again.
    missing = {n for n in restart_rows - restart_doc if not rows[n]["doc"].startswith("alias of")}
    assert not missing, f"restart rows operations.md does not list: {sorted(missing)}"
    extra = restart_doc - restart_rows
    assert not extra, f"operations.md says restart, the table does not: {sorted(extra)}"


@pytest.mark.hato_only(HATO)
def test_list_directives_is_the_parser_table(tmp_path):
    """Every listed directive is one the parser knows (it never says 'unknown directive'),
    and a name not listed is unknown."""
    rows = table_rows()
    conf = tmp_path / "x.conf"
    for name in list(rows) + ["no_such_directive"]:
        conf.write_text(f"{name}\n")
        r = subprocess.run([HATO_BIN, "--test-config", "-c", str(conf)], capture_output=True,
                           text=True, timeout=10)
        unknown = "unknown directive" in r.stderr
        assert unknown == (name == "no_such_directive"), (name, r.stderr)


@pytest.mark.hato_only(HATO)
def test_test_config_reports_stored_directive(tmp_path):
    rows = table_rows()
    stored = [n for n, r in rows.items() if r["status"] == "stored"]
    if not stored:
        pytest.skip("no stored-only directive left")
    name = stored[0]
    value = "true" if rows[name]["type"] == "bool" else "1"
    conf = tmp_path / "s.conf"
    conf.write_text(f"{name} {value}\n")
    r = subprocess.run([HATO_BIN, "--test-config", "-c", str(conf)], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert (f"Warning: {conf}:1: {name} is accepted but has no effect in this version of hato"
            in r.stdout), r.stdout
