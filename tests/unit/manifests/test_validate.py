"""Manifest validation: every problem names file, line and field, and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ember.manifests import ManifestError, check, load, parse_text
from ember.manifests.schedule import ScheduleError, parse

VALID = """\
apiVersion: ember.dev/v1
kind: Function
metadata:
  name: {name}
spec:
  runtime: python3.12
  handler: app.handler
  code: {{inline: "def handler(e, c): return 1"}}
  memoryMB: {memory}
"""


def problems(text: str, source: str = "deploy.yaml") -> list[str]:
    try:
        check(parse_text(text, source))
    except ManifestError as exc:
        return [str(problem) for problem in exc.problems]
    return []


def test_a_valid_manifest_has_no_problem() -> None:
    assert problems(VALID.format(name="ok", memory=256)) == []


def test_a_value_above_its_maximum_names_file_line_and_limit() -> None:
    found = problems(VALID.format(name="big", memory=99999))
    assert found == ["spec.memoryMB: 99999 is above the maximum 10240 (deploy.yaml:9)"]


def test_unknown_fields_and_bad_enums_list_what_is_allowed() -> None:
    text = VALID.format(name="x", memory=128).replace("python3.12", "python2.7")
    text += "  memory: 3\n"
    found = problems(text)
    assert any(p.startswith("spec.runtime: 'python2.7' is not allowed: use one of") for p in found)
    assert any(
        "spec.memory: unknown field: allowed are" in p and "(deploy.yaml:10)" in p for p in found
    )


def test_snap_start_takes_lambdas_apply_on_and_embers_extension() -> None:
    valid = VALID.format(name="x", memory=128)
    for apply_on in ("PublishedVersions", "None", "LatestAndPublished"):
        assert problems(valid + f"  snapStart: {{applyOn: {apply_on}}}\n") == []
    assert problems(valid + "  snapStart: {applyOn: Always}\n") == [
        "spec.snapStart.applyOn: 'Always' is not allowed: use one of PublishedVersions, None, "
        "LatestAndPublished (deploy.yaml:10)"
    ]
    assert problems(valid + "  snapStart: {}\n") == [
        "spec.snapStart.applyOn: is required (deploy.yaml:10)"
    ]
    assert problems(valid + "  snapStart: {applyOn: None, when: always}\n") == [
        "spec.snapStart.when: unknown field: allowed are applyOn (deploy.yaml:10)"
    ]


def test_isolation_is_standard_or_strong() -> None:
    valid = VALID.format(name="x", memory=128)
    assert problems(valid + "  isolation: strong\n") == []
    found = problems(valid + "  isolation: vm\n")
    assert found == [
        "spec.isolation: 'vm' is not allowed: use one of standard, strong (deploy.yaml:10)"
    ]


def test_missing_required_fields_are_named() -> None:
    found = problems("apiVersion: ember.dev/v1\nkind: Function\nmetadata: {name: a}\nspec: {}\n")
    assert "spec.runtime: is required (deploy.yaml:4)" in found


def test_rules_across_fields() -> None:
    text = VALID.format(name="c", memory=128) + (
        "  concurrency: {reserved: 1, provisioned: 2}\n"
        "  triggers:\n"
        "    - schedule: rate(7 fortnights)\n"
    )
    found = problems(text)
    assert any(p.startswith("spec.concurrency.provisioned: 2 is above reserved (1)") for p in found)
    assert any(
        p.startswith("spec.triggers[0].schedule:") and "(deploy.yaml:12)" in p for p in found
    )


def test_duplicate_names_across_documents_are_refused() -> None:
    text = VALID.format(name="dup", memory=128) + "---\n" + VALID.format(name="dup", memory=128)
    found = problems(text)
    assert found == ["metadata.name: 'dup' is also defined at deploy.yaml:4 (deploy.yaml:14)"]


def test_yaml_syntax_errors_carry_the_line() -> None:
    found = problems("apiVersion: ember.dev/v1\nkind: [unclosed\n")
    assert len(found) == 1 and "not valid YAML" in found[0]


def test_directories_are_read_recursively(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text(VALID.format(name="a", memory=128))
    (tmp_path / "sub" / "b.yml").write_text(VALID.format(name="b", memory=128))
    (tmp_path / "notes.txt").write_text("not a manifest")
    assert sorted(m.key[1] for m in load([tmp_path])) == ["a", "b"]


@pytest.mark.parametrize(
    "text", ["rate(5 minutes)", "rate(1 hour)", "*/5 * * * *", "cron(0 3 * * *)"]
)
def test_schedules_parse(text: str) -> None:
    assert parse(text).expression == text


@pytest.mark.parametrize("text", ["rate(1 minutes)", "rate(0 minutes)", "every day", "* * *"])
def test_bad_schedules_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse(text)
