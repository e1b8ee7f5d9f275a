"""`python -m experiments.report`: the committed result tables are what the committed results give."""
import json
import os
import shutil

import pytest

from experiments import pgr_cheetah_run, report
from experiments.tables import returns, wrapped


def test_committed_pages_equal_what_the_report_generates():
    assert report.stale_pages() == [], "run `python -m experiments.report` and commit the pages it rewrites"


def test_every_table_appears_in_a_page():
    used = set()
    for page in report.PAGES:
        with open(os.path.join(report.ROOT, page)) as file:
            used.update(match.group("name") for match in report.MARKER.finditer(file.read()))
    assert used == set(report.TABLES) | set(report.SPEED_TABLES)


def test_every_results_json_belongs_to_an_experiment_and_records_its_command():
    named = {name for module in report.EXPERIMENTS for name in module.RESULTS}
    on_disk = {name for name in os.listdir(report.RESULTS) if name.endswith(".json")}
    assert named == on_disk
    for name in named:
        with open(os.path.join(report.RESULTS, name)) as file:
            command = json.load(file)["command"]
        commands = command if isinstance(command, list) else [command]
        assert commands and all(c.startswith("python -m ") for c in commands), name


def test_a_table_follows_its_json(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(report.RESULTS, results)
    path = results / "online_curves_hopper_cpu.json"
    record = json.loads(path.read_text())
    record["runs"]["synther"]["evaluations"][-1].update(mean_return=1234.4, std_return=5.6)
    path.write_text(json.dumps(record))
    page = "before\n<!-- experiments.report: figure-6-hopper -->\n| stale |\n<!-- /experiments.report -->\nafter\n"

    rendered = report.render(page, str(results))
    assert rendered.startswith("before\n<!-- experiments.report: figure-6-hopper -->\n| variant |")
    assert rendered.endswith("\n<!-- /experiments.report -->\nafter\n") and "| stale |" not in rendered
    assert "| 1234 ± 6 |" in rendered
    assert report.render(page) != rendered  # the committed JSON gives another table
    readme = report.render("<!-- experiments.report: results -->\n<!-- /experiments.report -->\n", str(results))
    assert "| 342 ± 42 vs 1234 ± 6 |" in readme  # README's row follows the same JSON


def test_an_unknown_table_name_is_an_error():
    with pytest.raises(KeyError, match="no-such-table"):
        report.render("<!-- experiments.report: no-such-table -->\n<!-- /experiments.report -->\n")


def test_readme_cells_stay_short():
    for row in report.readme_table()[2:]:
        cells = row.strip("| ").split(" | ")
        assert len(cells) == 4 and all(len(cell) < 100 for cell in cells), row


def test_an_experiment_section_lists_the_commands_its_json_records(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(report.RESULTS, results)
    path = results / "online_curves_hopper_cpu.json"
    record = json.loads(path.read_text())
    record.update(command="python -m experiments.online_arms --env=hopper --note='two words'", command_note="Noted.")
    path.write_text(json.dumps(record))

    section = "\n".join(report.TABLES["figure6_hopper"](str(results)))
    assert "`online_curves_hopper_cpu.json`: Noted.\n\n```bash\n" \
           "python -m experiments.online_arms --env=hopper '--note=two words'\n```" in section


def test_a_long_command_wraps_between_arguments_and_keeps_its_words():
    command = "python -m experiments.offline_arms " + " ".join(f"--flag{i}=value{i}" for i in range(30))
    lines = wrapped(command, width=60)
    assert len(lines) > 1 and all(line.endswith(" \\") for line in lines[:-1])
    assert " ".join(line.rstrip(" \\").strip() for line in lines) == command


def test_an_arm_not_yet_run_is_named_so(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(report.RESULTS, results)
    path = results / "online_curves_cheetah-run_cpu.json"
    record = json.loads(path.read_text())
    record["runs"] = {"sac": record["runs"]["sac"]}
    path.write_text(json.dumps(record))

    arms = pgr_cheetah_run.arms(str(results))
    assert [row.split(" | ")[2] for row in arms[2:]] == [returns(record["runs"]["sac"]["evaluations"][-1])
                                                       + " (30K steps)", "not yet run", "not yet run"]
    assert "not yet run / not yet run" in "\n".join(report.readme_table(str(results)))


def test_the_readmes_walker2d_offline_row_is_the_evidence_experiments():
    """The older single-evaluation walker2d rows give way to the paired intervals in the README, and
    stay in docs/results.md."""
    experiments = [row.strip("| ").split(" | ")[0] for row in report.readme_table()[2:]]
    assert any(name.startswith("Offline evidence: walker2d") for name in experiments)
    assert not any(name.startswith(("Table 1: walker2d", "Figure 1a")) for name in experiments)
    assert "figure1a" in report.TABLES and "table1_walker2d" in report.TABLES
