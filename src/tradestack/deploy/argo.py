"""Render a release spec as Argo Rollouts objects: one source of truth for the one-host engine and Kubernetes.

The `Rollout` replaces the api Deployment of deploy/k8s (same pod template, by reference: ``workloadRef``); its
canary steps are the spec's steps, each ``analysis`` step referring to an `AnalysisTemplate` whose metrics run the
same PromQL as the one-host engine, with the track (``canary``/``stable`` pods' ``track`` label) as an argument.
``strategy: blueGreen`` renders a blueGreen Rollout with the analysis as ``postPromotionAnalysis``.
"""

from __future__ import annotations

from typing import Any

from tradestack.deploy.analysis import metric_query, requests_query
from tradestack.deploy.spec import Analysis, ReleaseSpec

ROLLOUT_API = "argoproj.io/v1alpha1"
TRACK_ARG = "{{args.track}}"


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def analysis_template(name: str, analysis: Analysis, prometheus: str) -> dict[str, Any]:
    metrics = []
    for metric in analysis.metrics:
        query = metric_query(metric, TRACK_ARG, analysis.query_window)
        requests = requests_query(TRACK_ARG, analysis.query_window)
        metrics.append(
            {
                "name": metric.name,
                "interval": _duration(analysis.interval),
                "count": analysis.count,
                "failureLimit": analysis.failure_limit,
                "consecutiveErrorLimit": analysis.consecutive_error_limit,
                # -1 when fewer than minRequests: neither condition holds, so the measurement is inconclusive.
                "successCondition": f"result[0] >= 0 && result[0] <= {metric.max:g}",
                "failureCondition": f"result[0] > {metric.max:g}",
                "provider": {
                    "prometheus": {
                        "address": prometheus,
                        "query": f"(({query}) and on() ({requests} >= {metric.min_requests})) or on() vector(-1)",
                    }
                },
            }
        )
    return {
        "apiVersion": ROLLOUT_API,
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {"args": [{"name": "track"}], "metrics": metrics},
    }


def render_argo(spec: ReleaseSpec, *, prometheus: str = "http://prometheus.monitoring:9090") -> list[dict[str, Any]]:
    """The Rollout and its AnalysisTemplates."""
    templates: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    for step in spec.effective_steps:
        if step.set_weight is not None:
            steps.append({"setWeight": step.set_weight})
        elif step.pause is not None:
            steps.append({"pause": {} if step.pause.duration is None else {"duration": _duration(step.pause.duration)}})
        else:
            name = f"tradestack-analysis-{len(templates) + 1}"
            templates.append(analysis_template(name, spec.analysis_of(step), prometheus))
            steps.append({"analysis": {"templates": [{"templateName": name}], "args": [{"name": "track", "value": "canary"}]}})
    if spec.strategy == "blueGreen":
        blue_green: dict[str, Any] = {
            "activeService": "tradestack-api",
            "previewService": "tradestack-api-preview",
            "autoPromotionEnabled": True,
            "scaleDownDelaySeconds": int(spec.target.bake),
        }
        if templates:
            blue_green["postPromotionAnalysis"] = {
                "templates": [{"templateName": templates[0]["metadata"]["name"]}],
                "args": [{"name": "track", "value": "canary"}],
            }
        strategy: dict[str, Any] = {"blueGreen": blue_green}
    else:
        strategy = {
            "canary": {
                "canaryMetadata": {"labels": {"track": "canary"}},
                "stableMetadata": {"labels": {"track": "stable"}},
                "steps": steps,
            }
        }
    rollout = {
        "apiVersion": ROLLOUT_API,
        "kind": "Rollout",
        "metadata": {"name": "tradestack-api", "labels": {"app.kubernetes.io/name": "tradestack-api"}},
        "spec": {
            "replicas": 3,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "tradestack-api"}},
            "workloadRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "tradestack-api",
                "scaleDown": "progressively",
            },
            "strategy": strategy,
        },
    }
    return [rollout, *templates]
