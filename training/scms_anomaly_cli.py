"""``erpx report scms-anomalies PATH [--top 20] [--out FILE]``: the price and freight anomalies of
the USAID SCMS delivery history (:mod:`training.scms_anomaly`), listed for a person to judge.

Mounted beside ``erpx report replenishment`` by ``serving/cli.py``. It reads the file and
nothing else (no database, no registry): the report is an audit of the file as published. A
path that is not a file, a file that is not the SCMS CSV (a missing column, another delimiter
or encoding) or an ``--out`` that is neither ``.md`` nor ``.csv`` prints one red line naming
it and exits with code 2, before anything is written. pandas and scikit-learn load inside the
command, so ``erpx --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from erp_core.cli import console, key_value_table, reports_user_errors, steps_shown

if TYPE_CHECKING:
    import pandas as pd


@reports_user_errors
def scms_anomalies_report(
    path: Path = typer.Argument(..., help="SCMS_Delivery_History_Dataset.csv (USAID SCMS)."),
    top: int = typer.Option(20, "--top", min=1, help="How many of the top lines to list."),
    out: Path | None = typer.Option(
        None, "--out", help="Also write the listed lines, every column, to this .md or .csv."
    ),
) -> None:
    """Score every SCMS line's pack price, unit price, freight per kg and weight per pack
    against earlier deliveries, apply the hard rules, and list the top lines with reasons."""
    from erp_core.domain.errors import InvalidValue
    from training.scms_anomaly import KINDS, LABELS, scms_anomalies

    if out is not None and out.suffix.lower() not in (".md", ".csv"):
        raise InvalidValue("out", str(out), "the report is written as .md or .csv")
    if not path.is_file():
        raise InvalidValue("path", str(path), "no such SCMS file")
    with steps_shown("scms anomalies") as step:
        step("reading, comparing and scoring")
        report = scms_anomalies(path, top=top)
    print_top(report.top)
    written = report.write(out) if out is not None else None
    flagged = ", ".join(
        f"{kind} {count:,}" for kind, count in report.flagged_by_kind().items() if count
    )
    compared = report.summary()["compared"]
    rows = [
        ("file", str(path)),
        ("lines", f"{len(report.scored):,} scored"),
        (
            "compared",
            ", ".join(f"{LABELS[kind]} {compared[LABELS[kind]]:,}" for kind in KINDS),
        ),
        ("flagged", f"{len(report.flagged):,} at score >= {report.alert_score} ({flagged})"),
        ("time", f"{report.seconds['total']:.2f} s"),
    ]
    if written is not None:
        rows.append(("report", str(written)))
    console.print(key_value_table("scms anomalies", rows))


def print_top(frame: pd.DataFrame) -> None:
    """The listed lines, two lines each (a table's columns squeeze a long reason into a few
    characters on an 80-column terminal): rank, ID, kind and score, where, who and what; then
    the reason and what it was compared with."""
    console.print("SCMS price and freight anomalies", style="bold")
    for _, row in frame.iterrows():
        head = (
            f"{row['rank']:>3}  ID {row['line_id']}  {row['kind']} {row['score']:.4f}  "
            f"{row['country']} / {row['vendor']} / {row['item_description']}"
        )
        console.print(head, markup=False, style="bold")
        console.print(f"     {row['reason']}", markup=False)
        if row["compared_with"]:
            console.print(f"     compared with the {row['compared_with']}", markup=False)
