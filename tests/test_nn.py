"""radhe.nn: the shared parameter set of the deep-learning estimators and the one training loop."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
import torch
from sklearn.base import clone

from radhe.errors import ConfigurationError
from radhe.nn import CNNEmbedder, HematomaSegmenter, NCCTMarkerClassifier, TwoOutputUNetClassifier
from radhe.nn.base import SHARED_PARAMETERS
from radhe.nn.training import minibatches, train_network

ESTIMATORS = [HematomaSegmenter, CNNEmbedder, NCCTMarkerClassifier, TwoOutputUNetClassifier]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_every_parameter_is_documented_with_its_own_default(cls):
    doc = cls.__doc__
    assert "[shared:" not in doc
    for name, parameter in inspect.signature(cls).parameters.items():
        match = re.search(rf"^    {name}(?:, \w+)* : (.+)$", doc, re.M)
        assert match, f"{cls.__name__}.{name} is not documented"
        if name in SHARED_PARAMETERS:
            documented = re.search(r"default (.+)$", match.group(1))
            assert documented and eval(documented.group(1)) == parameter.default, (name, match.group(1))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_parameters_are_stored_unchanged_and_clone(cls):
    params = cls().get_params()
    assert set(params) == set(inspect.signature(cls).parameters)
    changed = {"epochs": 3, "window": (-10.0, 90.0), "n_threads": 1, "random_state": 7}
    estimator = cls(**changed)
    copy = clone(estimator)
    assert copy is not estimator and {k: copy.get_params()[k] for k in changed} == changed
    assert all(not k.endswith("_") for k in vars(cls()))  # __init__ sets no fitted attribute


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("crop_size", 0, "an integer >= 8"),
    ("window", (80.0, 0.0), "high > low"),
    ("batch_size", 1, "an integer >= 2"),
    ("epochs", 2.5, "an integer >= 1"),
    ("learning_rate", -1e-3, "a number > 0"),
    ("n_threads", 0, "an integer >= 1"),
    ("pooling", "avg", "'max', 'haar'"),
])
def test_a_bad_shared_parameter_is_named_with_what_it_must_be(name, value, expected, small_cohort):
    for cls in ESTIMATORS:
        if name not in inspect.signature(cls).parameters:
            continue
        estimator = cls(**{name: value})
        with pytest.raises(ConfigurationError, match=re.escape(f"{cls.__name__}: {name} must be")) as info:
            estimator.fit(small_cohort, small_cohort["he"])
        assert expected in str(info.value) and repr(value) in str(info.value)


def _tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 1))


def test_train_network_keeps_the_best_epoch_and_stops_after_patience():
    x, t = torch.randn(8, 3), torch.rand(8, 1)
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.9, 0.9])
    states = []

    def validate(net):
        states.append({k: v.clone() for k, v in net.state_dict().items()})
        return next(scores)

    def batch_loss(net, batch):
        loss = torch.nn.functional.mse_loss(net(batch[0]), batch[1])
        return loss, {"loss": loss.detach()}

    result = train_network(_tiny_net(), epoch_batches=lambda epoch: [(x, t)], batch_loss=batch_loss, epochs=10,
                           learning_rate=0.1, weight_decay=0.0, validate=validate, patience=2)
    assert result.best_epoch == 2 and len(result.history) == 4  # epochs 3 and 4 did not improve
    assert all(torch.equal(result.state[k], states[1][k]) for k in result.state)
    assert [round(h["val_score"], 1) for h in result.history] == [0.1, 0.5, 0.3, 0.2]
    assert result.history[0]["loss"] > result.history[-1]["loss"]  # it trained


def test_train_network_without_validation_keeps_the_last_epoch_and_a_cosine_schedule():
    x, t = torch.randn(8, 3), torch.rand(8, 1)
    net = _tiny_net()

    def batch_loss(net, batch):
        return torch.nn.functional.mse_loss(net(batch[0]), batch[1]), {}

    result = train_network(net, epoch_batches=lambda epoch: [(x, t)], batch_loss=batch_loss, epochs=3,
                           learning_rate=0.1, weight_decay=0.0, lr_schedule="cosine")
    assert result.best_epoch == 3 and [h["epoch"] for h in result.history] == [1, 2, 3]
    assert all(torch.equal(result.state[k], v) for k, v in net.state_dict().items())


def test_minibatches_drop_a_lone_last_sample_unless_it_is_all():
    assert [c.tolist() for c in minibatches(np.arange(5), 2)] == [[0, 1], [2, 3]]
    assert [c.tolist() for c in minibatches(np.arange(1), 2)] == [[0]]
