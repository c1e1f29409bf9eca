"""NASSearch spec validation: good YAML loads with the papers' defaults; each class of bad
input is refused with a message naming the field and how to fix it."""

import pytest

from nas_operator.api import (
    NASSearchStatus,
    NASTrialStatus,
    SpecError,
    TrialResult,
    load_search_yaml,
    parse_duration,
    parse_spec,
)

GOOD = """
apiVersion: kubenas.dev/v1alpha1
kind: NASSearch
metadata:
  name: cifar-nasnet
  namespace: research
spec:
  searchSpace:
    type: nasnet
    options: {}
  strategy:
    type: ppo
    seed: 7
  objective:
    metric: val_accuracy
    reward: cube
    goal: 0.9
  budget:
    maxTrials: 200
    parallelism: 16
    maxFailedTrials: 10
    deadline: 2d
  trial:
    image: registry.example/kubenas-trainer:1
    dataset: {name: cifar10, path: /data/cifar10, validationSize: 5000}
    training: {epochs: 20, schedule: cosine}
    resources: {limits: {nvidia.com/gpu: 1, memory: 16Gi}, requests: {cpu: "4"}}
    nodeSelector: {gpu: a100}
    tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
    priorityClassName: batch-low
    queueName: team-a
    activeDeadlineSeconds: 7200
  finalTraining:
    topK: 3
    training: {epochs: 600, model: {cellsPerStage: 6, filters: 32}}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_search_yaml(text)
    return info.value.errors


def minimal(spec: str, name: str = "s") -> str:
    return f"metadata: {{name: {name}}}\nspec: {spec}\n"


def test_good_yaml_loads_with_every_field():
    search = load_search_yaml(GOOD)
    spec = search.spec
    assert search.metadata.namespace == "research"
    assert spec.strategy.batchSize == 20  # NASNet: minibatches of 20 architectures
    assert spec.budget.deadline_seconds() == 2 * 86400
    assert spec.trial.retries == 2
    assert spec.trial.tolerations[0].operator == "Exists"
    final = spec.final_training_spec()
    assert final.epochs == 600 and final.model.cellsPerStage == 6 and final.model.filters == 32
    assert final.schedule == "cosine"  # kept from trial.training
    assert spec.final_dataset().name == "cifar10"


@pytest.mark.parametrize(
    ("space", "strategy", "batch", "metric", "dataset"),
    [
        ("zoph-le-cnn", "reinforce", 8, "val_accuracy", "digits"),  # m = 8
        ("zoph-le-rnn", "reinforce", 10, "val_perplexity", "pydoc-text"),  # 10 accumulated
        ("nasnet", "ppo", 20, "val_accuracy", "digits"),
        ("enas-macro", "enas", 20, "val_accuracy", "digits"),
        ("enas-micro", "enas", 10, "val_accuracy", "digits"),
        ("enas-rnn", "enas", 10, "val_perplexity", "pydoc-text"),
    ],
)
def test_papers_defaults_per_space(space, strategy, batch, metric, dataset):
    spec = load_search_yaml(minimal(f"{{searchSpace: {{type: {space}}}}}")).spec
    assert spec.strategy.type == strategy
    assert spec.strategy.batchSize == batch
    assert spec.objective.metric == metric
    assert spec.trial.dataset.name == dataset
    if metric == "val_perplexity":
        assert spec.objective.reward == "inverse-square" and spec.objective.constant == 80
    if strategy == "enas":
        assert spec.budget.maxTrials == 1 and spec.budget.parallelism == 1
        assert spec.enas_spec().controllerBatch == batch
    else:
        assert spec.budget.maxTrials == 100 and spec.budget.parallelism == 4


def test_strategy_config_carries_seed_and_batch_size_for_the_strategy():
    spec = parse_spec({"searchSpace": {"type": "zoph-le-cnn"},
                       "strategy": {"seed": 3, "config": {"learningRate": 1e-3}}})
    config = spec.strategy_config()
    assert config["learningRate"] == 1e-3 and config["seed"] == 3 and config["batch_size"] == 8
    validated = spec.validated_strategy_config()
    assert validated.learning_rate == 1e-3 and validated.hidden_size == 35  # Zoph & Le 35 units
    # random search has no batch size: none is passed
    spec = parse_spec({"searchSpace": {"type": "nasnet"}, "strategy": {"type": "random"}})
    assert "batch_size" not in spec.strategy_config()


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("{searchSpace: {type: resnet}}", "spec.searchSpace.type"),
        ("{searchSpace: {type: zoph-le-cnn, options: {layerz: 3}}}", "spec.searchSpace.options.layerz"),
        ("{searchSpace: {type: zoph-le-cnn, options: {layers: 0}}}", "spec.searchSpace.options.layers"),
        ("{searchSpace: {type: nasnet}, strategy: {type: genetic}}", "spec.strategy.type"),
        ("{searchSpace: {type: nasnet}, strategy: {config: {learningRate: -1}}}",
         "spec.strategy.config.learningRate"),
        ("{searchSpace: {type: nasnet}, strategy: {config: {bogus: 1}}}", "spec.strategy.config.bogus"),
        ("{searchSpace: {type: enas-micro}, strategy: {config: {controller: {hiddenSize: 0}}}}",
         "spec.strategy.config.controller.hiddenSize"),
        ("{searchSpace: {type: nasnet}, strategy: {batchSize: 0}}", "spec.strategy.batchSize"),
        ("{searchSpace: {type: nasnet}, budget: {maxTrials: 0}}", "spec.budget.maxTrials"),
        ("{searchSpace: {type: nasnet}, budget: {deadline: soon}}", "spec.budget.deadline"),
        ("{searchSpace: {type: nasnet}, budget: {deadline: -5}}", "spec.budget.deadline"),
        ("{searchSpace: {type: nasnet}, budget: {maxTrials: 4, parallelism: 8}}",
         "spec.budget.parallelism"),
        ("{searchSpace: {type: nasnet}, strategy: {type: enas}}", "spec.strategy.type"),
        ("{searchSpace: {type: enas-macro}, budget: {maxTrials: 5}}", "spec.budget.maxTrials"),
        ("{searchSpace: {type: zoph-le-rnn}, objective: {metric: val_accuracy}}",
         "spec.objective.metric"),
        ("{searchSpace: {type: nasnet}, objective: {metric: val_perplexity, reward: cube}}",
         "spec.objective"),
        ("{searchSpace: {type: nasnet}, trial: {dataset: {name: ptb}}}", "spec.trial.dataset.name"),
        ("{searchSpace: {type: nasnet}, trial: {resources: {limits: {cpu: lots}}}}",
         "spec.trial.resources.limits.cpu"),
        ("{searchSpace: {type: nasnet}, trial: {resources: {limit: {cpu: 1}}}}",
         "spec.trial.resources.limit"),
        ("{searchSpace: {type: nasnet}, trial: {retries: -1}}", "spec.trial.retries"),
        ("{searchSpace: {type: nasnet}, trial: {training: {epochs: 0}}}", "spec.trial.training.epochs"),
        ("{searchSpace: {type: nasnet}, trial: {tolerations: [{operator: Maybe}]}}",
         "spec.trial.tolerations[0].operator"),
        ("{searchSpace: {type: nasnet}, finalTraining: {topK: 3, training: {epochs: 0}}}",
         "spec.finalTraining.training.epochs"),
        ("{searchSpace: {type: nasnet}, budget: {maxTrials: 2}, finalTraining: {topK: 3}}",
         "spec.finalTraining.topK"),
        ("{searchSpace: {type: nasnet}, extra: 1}", "spec.extra"),
        ("{strategy: {type: ppo}}", "spec.searchSpace"),
    ],
)
def test_bad_input_names_the_field(spec, field):
    errors = errors_of(minimal(spec))
    assert any(e.startswith(field) for e in errors), errors


def test_error_messages_say_how_to_fix():
    [msg] = errors_of(minimal("{searchSpace: {type: nasnet}, strategy: {type: enas}}"))
    assert "zoph-le-cnn, enas-macro" in msg and "reinforce" in msg
    [msg] = errors_of(minimal("{searchSpace: {type: nasnet}, budget: {deadline: soon}}"))
    assert "2h30m" in msg
    [msg] = errors_of(minimal("{searchSpace: {type: nasnet}, trial: {dataset: {name: ptb}}}"))
    assert "cifar10" in msg


def test_every_problem_is_listed_at_once():
    errors = errors_of(minimal(
        "{searchSpace: {type: zoph-le-rnn}, objective: {metric: val_perplexity, reward: identity},"
        " trial: {dataset: {name: cifar10}}, budget: {maxTrials: 2, parallelism: 3}}"
    ))
    fields = {e.split(":")[0].split(" ")[0] for e in errors}
    assert {"spec.trial.dataset.name", "spec.budget.parallelism"} <= fields


@pytest.mark.parametrize("name", ["Upper", "-dash", "a" * 41, "under_score"])
def test_bad_search_name(name):
    errors = errors_of(minimal("{searchSpace: {type: nasnet}}", name=name))
    assert errors[0].startswith("metadata.name")


@pytest.mark.parametrize(
    ("text", "errfield"),
    [("kind: Pod\nmetadata: {name: s}\nspec: {searchSpace: {type: nasnet}}", "kind"),
     ("apiVersion: kubenas.dev/v2\nmetadata: {name: s}\nspec: {searchSpace: {type: nasnet}}",
      "apiVersion"),
     ("- a list", "document"),
     ("metadata: {name: s}\nspec: [", "document")],
)
def test_bad_documents(text, errfield):
    assert errors_of(text)[0].startswith(errfield)


@pytest.mark.parametrize(
    ("value", "seconds"), [(90, 90), ("90", 90), ("45m", 2700), ("2h30m", 9000), ("1d", 86400),
                           ("1h 5s", 3605)],
)
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


def test_status_is_bounded():
    entry = TrialResult(trial="t", reward=0.5)
    with pytest.raises(ValueError, match="topK"):
        NASSearchStatus(topK=[entry] * 11)
    with pytest.raises(ValueError, match="epochs"):
        NASTrialStatus(epochs=[{"val_accuracy": 0.5}] * 51)


def test_every_field_of_our_resource_models_has_a_description():
    """The CRD schemas are generated from these models: a field without a description
    would show up undocumented in ``kubectl explain``."""
    from pydantic import BaseModel

    from nas_operator import api as spec_module

    ours = [NASSearchStatus, NASTrialStatus, spec_module.NASSearch, spec_module.NASTrial,
            spec_module.NASTrialSpec]
    seen: set[type] = set()
    missing: list[str] = []
    while ours:
        model = ours.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{model.__name__}.{name}")
            for arg in getattr(field.annotation, "__args__", ()) + (field.annotation,):
                inner = getattr(arg, "__args__", (arg,))
                for cls in inner:
                    if (isinstance(cls, type) and issubclass(cls, BaseModel)
                            and cls.__module__.startswith(spec_module.__name__ + ".")):
                        ours.append(cls)
    assert not missing, missing
    assert spec_module.NASSearchSpec in seen and spec_module.Toleration in seen


def test_tokens_are_per_trial_and_keys_round_trip():
    from nas_operator.tokens import (
        check_token,
        decode_key,
        encode_key,
        generate_key,
        trial_token,
    )

    key = generate_key()
    assert decode_key(encode_key(key)) == key
    token = trial_token(key, "ns", "s", "s-t0001")
    assert check_token(key, "ns", "s", "s-t0001", token)
    assert not check_token(key, "ns", "s", "s-t0002", token)
    assert not check_token(key, "other", "s", "s-t0001", token)
    assert not check_token(generate_key(), "ns", "s", "s-t0001", token)
    assert not check_token(key, "ns", "s", "s-t0001", "\u00e9" + token[1:])
    with pytest.raises(ValueError, match="too short"):
        decode_key(encode_key(b"short"))


# --- the dataset's PersistentVolumeClaim ---------------------------------------------------

def pvc_spec(dataset: str, final: str = "") -> str:
    extra = f", budget: {{maxTrials: 4}}, finalTraining: {{dataset: {final}}}" if final else ""
    return minimal(f"{{searchSpace: {{type: nasnet}}, trial: {{dataset: {dataset}}}{extra}}}")


def test_a_dataset_claim_loads_read_only_and_stays_out_of_the_trainers_document():
    spec = load_search_yaml(pvc_spec(
        "{name: cifar10, path: /data/cifar10, validationSize: 5000, "
        "persistentVolumeClaim: {claimName: cifar10, subPath: cifar-10-batches-py}}")).spec
    claim = spec.trial.dataset.persistentVolumeClaim
    assert (claim.claimName, claim.readOnly, claim.subPath) == (
        "cifar10", True, "cifar-10-batches-py")
    trainer = spec.trial.dataset.trainer_spec()
    assert type(trainer).__name__ == "DatasetSpec" and "persistentVolumeClaim" not in (
        trainer.model_dump())
    assert (trainer.name, trainer.path, trainer.validationSize) == ("cifar10", "/data/cifar10", 5000)
    assert spec.dataset_for("final") is spec.trial.dataset  # final runs default to the same


@pytest.mark.parametrize(
    ("dataset", "field", "hint"),
    [
        ("{name: cifar10, persistentVolumeClaim: {claimName: c}}", "spec.trial.dataset.path",
         "absolute"),
        ("{name: cifar10, path: data/cifar10, persistentVolumeClaim: {claimName: c}}",
         "spec.trial.dataset.path", "/data/cifar10"),
        ("{name: cifar10, path: /, persistentVolumeClaim: {claimName: c}}",
         "spec.trial.dataset.path", "'/'"),
        ("{name: cifar10, path: /data/../tmp, persistentVolumeClaim: {claimName: c}}",
         "spec.trial.dataset.path", "'..'"),
        ("{name: cifar10, path: /checkpoints/data, persistentVolumeClaim: {claimName: c}}",
         "spec.trial.dataset.path", "/checkpoints"),
        ("{name: cifar10, path: /tmp, persistentVolumeClaim: {claimName: c}}",
         "spec.trial.dataset.path", "/tmp"),
        ("{name: cifar10, path: /data, persistentVolumeClaim: {claimName: CIFAR_10}}",
         "spec.trial.dataset.persistentVolumeClaim.claimName", "lower-case"),
        ("{name: cifar10, path: /data, persistentVolumeClaim: {claimName: c, subPath: /abs}}",
         "spec.trial.dataset.persistentVolumeClaim.subPath", "relative"),
        ("{name: cifar10, path: /data, persistentVolumeClaim: {claimName: c, subPath: a/../..}}",
         "spec.trial.dataset.persistentVolumeClaim.subPath", "'..'"),
        ("{name: cifar10, path: /data, persistentVolumeClaim: {name: c}}",
         "spec.trial.dataset.persistentVolumeClaim", "claimName"),
        ("{name: digits, path: /data, persistentVolumeClaim: {claimName: c}}",
         "spec.trial.dataset.persistentVolumeClaim", "built into the trainer"),
        ("{name: cifar10, path: /data, download: true, persistentVolumeClaim: {claimName: c}}",
         "spec.trial.dataset.download", "readOnly to false"),
    ],
)
def test_a_bad_dataset_claim_names_the_field_and_the_fix(dataset, field, hint):
    errors = errors_of(pvc_spec(dataset))
    assert any(e.startswith(field) and hint in e for e in errors), errors


def test_a_writable_claim_may_be_downloaded_into():
    spec = load_search_yaml(pvc_spec(
        "{name: cifar10, path: /data, download: true, "
        "persistentVolumeClaim: {claimName: c, readOnly: false}}")).spec
    assert spec.trial.dataset.persistentVolumeClaim.readOnly is False


def test_the_final_runs_dataset_claim_is_checked_and_used():
    errors = errors_of(pvc_spec("{name: cifar10, path: /data}",
                                final="{name: cifar10, persistentVolumeClaim: {claimName: c}}"))
    assert any(e.startswith("spec.finalTraining.dataset.path") for e in errors), errors
    spec = load_search_yaml(pvc_spec(
        "{name: cifar10, path: /data}",
        final="{name: cifar10, path: /full, persistentVolumeClaim: {claimName: full}}")).spec
    assert spec.dataset_for("search").persistentVolumeClaim is None
    assert spec.dataset_for("final").persistentVolumeClaim.claimName == "full"
