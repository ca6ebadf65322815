"""Release spec validation (one clear error per bad field) and the Argo objects rendered from it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tradestack.deploy.analysis import metric_query
from tradestack.deploy.argo import render_argo
from tradestack.deploy.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[3]
BASE: dict[str, Any] = {
    "release": {"version": "1.2.3"},
    "target": {"haproxySocket": "/run/haproxy.sock", "colours": {"blue": {"port": 8101}, "green": {"port": 8102}}},
}


def test_defaults_are_10_50_100_with_an_analysis_after_each() -> None:
    spec = parse_spec(copy.deepcopy(BASE))
    assert [s.set_weight for s in spec.effective_steps if s.set_weight is not None] == [10, 50, 100]
    assert sum(s.analysis is not None for s in spec.effective_steps) == 3
    blue_green = parse_spec({**copy.deepcopy(BASE), "strategy": "blueGreen"})
    assert [s.set_weight for s in blue_green.effective_steps if s.set_weight is not None] == [100]


def test_every_bad_field_is_named() -> None:
    data = copy.deepcopy(BASE)
    data["steps"] = [
        {"setWeight": 120},
        {"pause": {"duration": "soon"}},
        {"analysis": {"count": 0}},
        {"setWeight": 5, "pause": {}},
    ]
    data["analysis"] = {"metrics": [{"name": "x", "kind": "p99", "max": 1}]}
    data["target"]["colours"]["green"]["port"] = 8101
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    problems = caught.value.problems
    assert "steps[0].setWeight: Input should be less than or equal to 100" in problems
    assert any(p.startswith("steps[1].pause.duration: 'soon' is not a duration") for p in problems)
    assert "steps[2].analysis.count: Input should be greater than or equal to 1" in problems
    assert "steps[3]: each step is exactly one of setWeight, pause, analysis" in problems
    assert any(p.startswith("analysis.metrics[0].kind:") for p in problems)
    assert "target.colours: blue and green need different ports" in problems


def test_steps_must_end_at_100_and_never_decrease() -> None:
    with pytest.raises(SpecError, match="must end with setWeight: 100"):
        parse_spec({**copy.deepcopy(BASE), "steps": [{"setWeight": 50}]})
    with pytest.raises(SpecError, match="must not decrease"):
        parse_spec({**copy.deepcopy(BASE), "steps": [{"setWeight": 50}, {"setWeight": 10}, {"setWeight": 100}]})


def test_step_analysis_overrides_the_spec_defaults() -> None:
    data = {**copy.deepcopy(BASE), "analysis": {"interval": "5s", "count": 2}}
    data["steps"] = [{"setWeight": 100}, {"analysis": {"count": 7}}]
    spec = parse_spec(data)
    analysis = spec.analysis_of(spec.effective_steps[1])
    assert (analysis.interval, analysis.count) == (5.0, 7)


def test_queries_read_the_new_colours_requests_and_histogram() -> None:
    spec = parse_spec(copy.deepcopy(BASE))
    error, latency = spec.analysis.metrics
    assert 'status_class="5xx"' in metric_query(error, "green", 10)
    assert 'track="green"' in metric_query(error, "green", 10)
    assert metric_query(latency, "green", 10).startswith(
        "histogram_quantile(0.95, sum by (le) (rate(api_request_duration_seconds_bucket{"
    )


@pytest.mark.parametrize("strategy", ["canary", "blueGreen"])
def test_rendered_argo_objects_match_the_schemas_and_the_spec(strategy: str) -> None:
    spec = load_spec(ROOT / "deploy/release/release.yaml")
    spec = spec.model_copy(update={"strategy": strategy})
    objects = render_argo(spec)
    schemas = {
        "Rollout": json.loads((ROOT / "deploy/k8s/argo/rollout.schema.json").read_text()),
        "AnalysisTemplate": json.loads((ROOT / "deploy/k8s/argo/analysistemplate.schema.json").read_text()),
    }
    for document in objects:
        jsonschema.Draft202012Validator(schemas[document["kind"]]).validate(document)
    rollout = objects[0]
    if strategy == "canary":
        weights = [s["setWeight"] for s in rollout["spec"]["strategy"]["canary"]["steps"] if "setWeight" in s]
        assert weights == [10, 50, 100]
    else:
        assert rollout["spec"]["strategy"]["blueGreen"]["postPromotionAnalysis"]["templates"]
    metric = objects[1]["spec"]["metrics"][0]
    assert (metric["interval"], metric["count"], metric["failureLimit"]) == ("30s", 4, 0)
    assert "{{args.track}}" in metric["provider"]["prometheus"]["query"]
    # A broken field fails the schema.
    broken = copy.deepcopy(rollout)
    broken["spec"]["strategy"]["stepz"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schemas["Rollout"]).validate(broken)


def test_release_migrates_expand_only_by_default() -> None:
    spec = parse_spec(copy.deepcopy(BASE))
    assert spec.release.migrate == ("tradestack", "db", "upgrade", "--expand-only")
    data = copy.deepcopy(BASE)
    data["release"].update(migrate=["/opt/ts/bin/tradestack", "db", "upgrade", "--expand-only"], allowContract=["i21_b"])
    assert parse_spec(data).release.allow_contract == ("i21_b",)
    data["release"].update(migrate=None)
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    assert caught.value.problems == ["release: allowContract needs the migrate step (migrate is null)"]
    data["release"].update(migrate=[], allowContract=[])
    with pytest.raises(SpecError, match=r"release\.migrate: Tuple should have at least 1 item"):
        parse_spec(data)
