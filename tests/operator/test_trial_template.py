"""``spec.trial.template`` on the emulator, with the real operator: a search of the user's
own model family (a custom space) runs, the user's container settings reach every trial
Job beside the operator's own fields, the Jobs are valid
Kubernetes, and a template that reaches for an operator-owned field is refused with a
condition that names the field (and the CRD says the same to ``kubectl apply``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support import REPO
from tests.support.kube_emulator import EVENTS, NASSEARCHES, NASTRIALS, KubeTestBed
from tests.support.operator_bed import (
    FakeCluster,
    OperatorBed,
    crd_test_bed,
    run_container,
    search_manifest,
    wait_for,
)

kube = crd_test_bed()

IMAGE = "registry.example.com/team/resnet-trainer:1.4"
TEMPLATE: dict[str, Any] = {
    "image": IMAGE,
    "command": ["python", "/app/train.py"],
    "args": ["--log-every", "10"],
    "env": [{"name": "WANDB_MODE", "value": "offline"},
            {"name": "BUCKET_KEY", "valueFrom": {"secretKeyRef": {"name": "bucket",
                                                                  "key": "key"}}}],
    "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}, "requests": {"cpu": "2"}},
    "volumes": [{"name": "cache", "emptyDir": {"sizeLimit": "2Gi"}},
                {"name": "shards", "persistentVolumeClaim": {"claimName": "imagenet-shards",
                                                             "readOnly": True}}],
    "volumeMounts": [{"name": "cache", "mountPath": "/cache"},
                     {"name": "shards", "mountPath": "/data/shards", "readOnly": True}],
    "nodeSelector": {"gpu.example.com/class": "a100"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "serviceAccountName": "resnet-trainer",
}


CUSTOM_SPACE = {"type": "custom", "options": {"decisions": [
    {"name": "stem", "choices": [16, 24, 32]},
    {"name": "stage", "repeat": 2, "decisions": [
        {"name": "kernel", "choices": [3, 5]}, {"name": "width", "choices": [32, 64]},
        {"name": "skip", "inputs": {"maxInputs": 1}}]}]}}
"""Your own model family: the built-in trainer could not run it, the template's image can."""


def _container(job: dict[str, Any]) -> dict[str, Any]:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return container


async def test_template_settings_reach_every_job_beside_the_operators_own(
        kube: KubeTestBed) -> None:
    jobs: list[dict[str, Any]] = []

    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        jobs.append(job)
        await cluster.succeed(job)

    bed = OperatorBed(kube)
    manifest = search_manifest("tpl", searchSpace=CUSTOM_SPACE,
                               budget={"maxTrials": 3, "parallelism": 3},
                               trial={"template": TEMPLATE, "retries": 0,
                                      "training": {"epochs": 2}})
    async with FakeCluster(kube, trainer), bed.running():
        await kube.client.create(NASSEARCHES, manifest)
        done = await bed.wait_phase("tpl", "Succeeded", "Failed")
        trials = {t["metadata"]["name"]: t for t in await bed.trials("tpl")}

    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert sorted(j["metadata"]["name"].rsplit("-a", 1)[0] for j in jobs) == sorted(trials)
    for job in jobs:
        kubernetes_validate.validate(job, "1.33", strict=True)  # a Job the API server takes
        pod = job["spec"]["template"]["spec"]
        container = _container(job)
        # the user's container settings
        assert container["image"] == IMAGE
        assert (container["command"], container["args"]) == (TEMPLATE["command"], TEMPLATE["args"])
        assert container["resources"] == {"limits": {"nvidia.com/gpu": "1", "memory": "8Gi"},
                                          "requests": {"cpu": "2"}}
        env = {e["name"]: e for e in container["env"]}
        assert env["WANDB_MODE"]["value"] == "offline"
        assert env["BUCKET_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "bucket", "key": "key"}}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/cache"] == "cache" and mounts["/data/shards"] == "shards"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["shards"]["persistentVolumeClaim"]["claimName"] == "imagenet-shards"
        assert pod["nodeSelector"] == TEMPLATE["nodeSelector"]
        assert pod["tolerations"] == TEMPLATE["tolerations"]
        assert pod["serviceAccountName"] == "resnet-trainer"
        # ... and what the operator keeps for itself
        trial = job["metadata"]["labels"]["kubenas.dev/trial"]
        assert job["metadata"]["ownerReferences"][0]["kind"] == "NASTrial"
        assert job["metadata"]["ownerReferences"][0]["name"] == trial
        assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert env["KUBENAS_REPORT_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == trial
        assert "KUBENAS_TRIAL_JSON" in env and "KUBENAS_REPORT_URL" in env
        assert {"tmp", "checkpoints"} <= set(volumes) and mounts["/checkpoints"] == "checkpoints"
    for trial in trials.values():
        assert trial["status"]["phase"] == "Succeeded" and trial["status"]["reward"] > 0
        genotype = trial["spec"]["architecture"]["genotype"]
        assert genotype["stem"] in (16, 24, 32) and len(genotype["stage"]) == 2


async def test_the_cluster_example_trains_with_the_users_script_from_its_template(
        kube: KubeTestBed, tmp_path: Path) -> None:
    """examples/custom-resnet-cluster.yaml as applied (budget and data shrunk): each Job runs
    the template's own command — /app/train.py, which the example's Dockerfile copies from
    examples/custom_resnet/train.py — with the Job's environment, and the search takes the
    val_accuracy that script reports through the SDK."""
    doc = yaml.safe_load((REPO / "examples" / "custom-resnet-cluster.yaml").read_text())
    spec = doc["spec"]
    spec["budget"].update(maxTrials=2, parallelism=2)
    spec["strategy"]["batchSize"] = 2
    spec["objective"]["lastEpochs"] = 1
    spec["trial"]["training"].update(epochs=1, threads=1)
    spec["trial"]["dataset"]["maxTrainExamples"] = 300
    namespace = doc["metadata"]["namespace"]
    image = {"/app/train.py": REPO / "examples" / "custom_resnet" / "train.py"}
    jobs: list[dict[str, Any]] = []

    async def kubelet(cluster: FakeCluster, job: dict[str, Any]) -> None:
        jobs.append(job)
        await cluster.run(job)
        code, message = await run_container(cluster, job, tmp_path / job["metadata"]["name"],
                                            cwd=tmp_path, files=image)
        await cluster.terminate(job, code, message)

    bed = OperatorBed(kube)
    async with FakeCluster(kube, kubelet, namespace=namespace), bed.running():
        await kube.client.create(NASSEARCHES, doc, namespace)

        async def ended() -> dict[str, Any] | None:
            found = await kube.read(NASSEARCHES, doc["metadata"]["name"], namespace)
            phase = ((found or {}).get("status") or {}).get("phase")
            return found if phase in ("Succeeded", "Failed") else None

        done = await wait_for(ended, 300, "the cluster example to end")
        trials = await kube.read_all(NASTRIALS, namespace)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    template = spec["trial"]["template"]
    for job in jobs:
        kubernetes_validate.validate(job, "1.33", strict=True)
        container = _container(job)
        assert container["image"] == template["image"] and container["command"] == [
            "python", "/app/train.py"]
        assert job["spec"]["template"]["spec"]["nodeSelector"] == template["nodeSelector"]
    assert len(trials) == 2
    for trial in trials:
        status = trial["status"]
        accuracy = status["metrics"]["val_accuracy"]
        assert status["phase"] == "Succeeded" and 0 < accuracy <= 1
        assert abs(status["reward"] - accuracy**3) < 1e-6  # the search's cube of the report


@pytest.mark.parametrize(("override", "field"), [
    ({"securityContext": {"runAsUser": 0, "privileged": True}}, "securityContext"),
    ({"terminationMessagePath": "/tmp/msg"}, "terminationMessagePath"),
    ({"env": [{"name": "KUBENAS_REPORT_TOKEN", "value": "guessed"}]}, "env[0].name"),
    ({"volumes": [{"name": "checkpoints", "emptyDir": {}}]}, "volumes[0].name"),
])
async def test_a_template_that_overrides_an_operator_field_is_refused_by_name(
        kube: KubeTestBed, override: dict[str, Any], field: str) -> None:
    cond, event = await refused(kube, search_manifest(
        "bad", trial={"template": {"image": IMAGE, **override}}))
    assert f"spec.trial.template.{field}" in cond["message"], cond["message"]
    assert "operator" in cond["message"] and f"spec.trial.template.{field}" in event["message"]


@pytest.mark.parametrize(("decisions", "words"), [
    ([{"name": "a", "choices": [7]}, {"name": "b", "range": {"low": 2, "high": 2}}],
     "spec.searchSpace.options.decisions: the space holds a single architecture"),
    ([{"name": "a", "choices": [1, 2]}, {"name": "b", "choices": [3, 5], "when": {"c": [1]}}],
     "spec.searchSpace.options.decisions[1].when.c: no earlier decision is named 'c'"),
])
async def test_a_bad_custom_space_is_refused_as_a_condition_naming_the_field(
        kube: KubeTestBed, decisions: list[dict[str, Any]], words: str) -> None:
    """What the CRD cannot say (a space of one architecture, a condition on no decision)
    the operator says as the SpecValid condition and an Event, and runs nothing."""
    cond, event = await refused(kube, search_manifest(
        "bad", searchSpace={"type": "custom", "options": {"decisions": decisions}},
        trial={"template": {"image": IMAGE}}))
    assert words in cond["message"] and words in event["message"], cond["message"]


async def refused(kube: KubeTestBed, manifest: dict[str, Any]
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply ``manifest`` (named 'bad'); (its SpecValid condition, its InvalidSpec Event),
    once the operator failed it without creating a Job."""
    async def trainer(cluster: FakeCluster, job: dict[str, Any]) -> None:
        await cluster.succeed(job)

    bed = OperatorBed(kube)
    async with FakeCluster(kube, trainer), bed.running():
        await kube.client.create(NASSEARCHES, manifest)
        failed = await bed.wait_phase("bad", "Failed")

        async def invalid_event() -> list[dict[str, Any]]:
            events = await kube.read_all(EVENTS, field_selector="involvedObject.name=bad")
            return [e for e in events if e["reason"] == "InvalidSpec"]

        [event] = await wait_for(invalid_event, message="an InvalidSpec event")
        assert not await bed.jobs("bad")  # nothing ran
    cond = {c["type"]: c for c in failed["status"]["conditions"]}["SpecValid"]
    assert cond["status"] == "False" and cond["reason"] == "InvalidSpec"
    return cond, event


def test_the_crd_refuses_operator_owned_template_fields_with_the_same_words() -> None:
    """What ``kubectl apply`` answers (no CEL engine runs here: the rules and messages)."""
    from nas_operator.api.template import OPERATOR_OWNED

    crd = yaml.safe_load((REPO / "crds" / "kubenas.dev_nassearches.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    template = schema["properties"]["spec"]["properties"]["trial"]["properties"]["template"]
    rules = {r["rule"]: r["message"] for r in template["x-kubernetes-validations"]}
    for name in OPERATOR_OWNED:
        assert name in template["properties"], name  # kept by the server, not pruned
        assert rules[f"!has(self.{name})"].startswith(f"spec.trial.template.{name}: set by the "
                                                      "operator")
