"""`python -m bench.report`: the committed result tables are what the committed results give."""
import json
import os
import shutil

import pytest

from bench import report


def test_committed_pages_equal_what_bench_report_generates():
    assert report.stale_pages() == [], "run `python -m bench.report` and commit the pages it rewrites"


def test_every_table_appears_in_a_page():
    used = set()
    for page in report.PAGES:
        with open(os.path.join(report.ROOT, page)) as file:
            used.update(match.group("name") for match in report.MARKER.finditer(file.read()))
    assert used == set(report.TABLES)


def test_a_table_follows_its_json(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(report.RESULTS, results)
    path = results / "online_curves_hopper_cpu.json"
    record = json.loads(path.read_text())
    record["runs"]["synther"]["evaluations"][-1].update(mean_return=1234.4, std_return=5.6)
    path.write_text(json.dumps(record))
    page = "before\n<!-- bench.report: figure-6-hopper -->\n| stale |\n<!-- /bench.report -->\nafter\n"

    rendered = report.render(page, str(results))
    assert rendered.startswith("before\n<!-- bench.report: figure-6-hopper -->\n| variant |")
    assert rendered.endswith("\n<!-- /bench.report -->\nafter\n") and "| stale |" not in rendered
    assert "| 1234 ± 6 |" in rendered
    assert report.render(page) != rendered  # the committed JSON gives another table


def test_an_unknown_table_name_is_an_error():
    with pytest.raises(KeyError, match="no-such-table"):
        report.render("<!-- bench.report: no-such-table -->\n<!-- /bench.report -->\n")


def test_an_arm_not_yet_run_is_named_so(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(report.RESULTS, results)
    path = results / "online_curves_cheetah-run_cpu.json"
    record = json.loads(path.read_text())
    record["runs"] = {"sac": record["runs"]["sac"]}
    path.write_text(json.dumps(record))

    arms = report.cheetah_run_arms(str(results))
    assert [row.split(" | ")[2] for row in arms[2:]] == [report.returns(record["runs"]["sac"]["evaluations"][-1])
                                                       + " (30K steps)", "not yet run", "not yet run"]
    assert "not yet run / not yet run" in "\n".join(report.results_at_a_glance(str(results)))
