#!/usr/bin/env python3
"""A sweep job's outputs as one table.

    grid results JOB -o DIR
    python3 examples/sweep/table.py DIR            # CSV on stdout
    python3 examples/sweep/table.py --align DIR    # the same, in aligned columns

DIR is what `grid results JOB -o DIR` wrote: DIR/index.json lists the tasks
(their number, name, exit code, trap and fuel) and DIR/<name> holds what each
task printed, one JSON object a line. The table has one row per object, in
task order: the task's number, name, exit code, trap and fuel, then the
object's fields (a, b, c, steps, dt, x, v, energy, peak, random for the
sweep; any kernel printing JSON Lines works). A failed task keeps its row,
with its exit code or trap and empty fields. Floats are written as Python's
repr, the shortest digits that read back to the same double, so no bit of a
result is lost. Only the standard library is used.
"""

import argparse
import csv
import json
import os
import signal
import sys

TASK_COLUMNS = ["task", "name", "exit_code", "trap", "fuel_used"]


def cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def file_name(task):
    """Where `grid results -o` put a task's stdout: its name, or its number
    when the name is not a plain file name."""
    name = task["name"]
    plain = name and not name.startswith(".") and "/" not in name and "\\" not in name
    return name if plain and name != "index.json" else str(task["task"])


def rows(directory):
    """The header and the rows of the table."""
    with open(os.path.join(directory, "index.json"), encoding="utf-8") as f:
        tasks = sorted(json.load(f)["tasks"], key=lambda t: t["task"])
    fields = []
    table = []
    for task in tasks:
        head = [task["task"], task["name"], task["exit_code"], task["trap"], task["fuel_used"]]
        objects = []
        path = os.path.join(directory, file_name(task))
        ok = task["exit_code"] == 0 and task["trap"] is None
        if ok and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        value = json.loads(line)
                    except ValueError as e:
                        sys.exit(f"table.py: {path}, line {number}: not JSON ({e})")
                    if not isinstance(value, dict):
                        sys.exit(f"table.py: {path}, line {number}: not a JSON object")
                    objects.append(value)
        for value in objects:
            fields.extend(k for k in value if k not in fields)
        table.extend((head, value) for value in objects or [{}])
    header = TASK_COLUMNS + fields
    return header, [[cell(v) for v in head] + [cell(value.get(k)) for k in fields] for head, value in table]


def main():
    # Piped into `head`: stop quietly when the reader has had enough.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = argparse.ArgumentParser(description="A job's JSON Lines outputs as one table.")
    parser.add_argument("dir", help="the directory `grid results JOB -o DIR` wrote")
    parser.add_argument("--align", action="store_true", help="aligned columns instead of CSV")
    args = parser.parse_args()
    try:
        header, body = rows(args.dir)
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"table.py: {args.dir}: {e}")
    if args.align:
        widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
        for row in [header] + body:
            print("  ".join(text.rjust(width) for text, width in zip(row, widths)).rstrip())
    else:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(body)


if __name__ == "__main__":
    main()
