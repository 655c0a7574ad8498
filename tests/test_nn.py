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
    ("crop_size", 0, "an int in the range [8, inf)"),
    ("window", (80.0, 0.0), "high > low"),
    ("batch_size", 1, "an int in the range [2, inf)"),
    ("epochs", 2.5, "an int in the range [1, inf)"),
    ("learning_rate", -1e-3, "a float in the range (0.0, inf)"),
    ("n_threads", 0, "an int in the range [1, inf) or None"),
    ("pooling", "avg", "a str among {"),
    ("hu_check", "yes", "an instance of 'bool'"),
])
def test_a_bad_shared_parameter_is_named_with_what_it_must_be(name, value, expected, small_cohort):
    for cls in ESTIMATORS:
        if name not in inspect.signature(cls).parameters:
            continue
        estimator = cls(**{name: value})
        with pytest.raises(ConfigurationError, match=re.escape(name)) as info:
            estimator.fit(small_cohort, small_cohort["he"])
        # the segmenter accepts epochs=0 (shipped weights used as they are)
        wanted = expected.replace("[1,", "[0,") if (cls.__name__, name) == ("HematomaSegmenter", "epochs") else expected
        assert cls.__name__ in str(info.value) and wanted in str(info.value) and str(value) in str(info.value)


def test_zero_epochs_without_shipped_weights_is_refused(small_cohort):
    from radhe.segmentation import HematomaSegmenter

    with pytest.raises(ConfigurationError, match="epochs=0 trains nothing"):
        HematomaSegmenter(epochs=0).fit(small_cohort)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_every_parameter_is_validated_declaratively(cls):
    """scikit-learn's own check: each parameter has a constraint and a bad type or value is refused by fit."""
    from sklearn.utils.estimator_checks import check_param_validation

    assert set(cls._parameter_constraints) == set(cls().get_params())
    check_param_validation(cls.__name__, cls())


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


def test_folding_batchnorm_keeps_the_outputs_and_needs_eval_mode():
    """The segmenter's inference copy folds each BatchNorm into its convolution: the same logits as the
    network with its BatchNorm (fitted running statistics and affine), and one pass less per layer."""
    from radhe.nn.networks import UNet2d, fold_batchnorm

    torch.manual_seed(0)
    net = UNet2d(in_channels=1, base_channels=4, levels=3)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(net)
    for module in net.modules():  # statistics and affine far from the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.2, 3)
            module.weight.data.uniform_(0.5, 2)
            module.bias.data.uniform_(-1, 1)
    net.eval()
    x = torch.rand(3, 1, 32, 24)
    with torch.inference_mode():
        expected = net(x)
        folded = fold_batchnorm(net)
        got = folded(x)
    assert folded is net
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.Identity) for m in folded.modules()) == 2 * 5  # two per conv block
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert float((got - expected).abs().max()) < 1e-3 * float(expected.abs().max())


def test_inference_max_pooling_is_max_pool2d():
    """The strided-maximum pooling the U-Net uses in eval mode gives F.max_pool2d's values (ties, all
    dtypes, channels-last), and odd sizes fall back to F.max_pool2d."""
    from torch.nn import functional as F

    from radhe.nn.networks import max_pool_2x2

    torch.manual_seed(1)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.relu(torch.randn(3, 5, 18, 12)).round().to(dtype)  # many ties (zeros, integers)
        for tensor in (x, x.contiguous(memory_format=torch.channels_last)):
            assert torch.equal(max_pool_2x2(tensor, exact_gradient=False), F.max_pool2d(tensor, 2))
    odd = torch.randn(2, 3, 7, 9)
    assert torch.equal(max_pool_2x2(odd, exact_gradient=False), F.max_pool2d(odd, 2))


TINY = {
    HematomaSegmenter: dict(epochs=1, base_channels=4, levels=2, batch_size=8),
    CNNEmbedder: dict(epochs=1, crop_size=16, n_features=4, base_channels=4, depth=2, batch_size=8),
    NCCTMarkerClassifier: dict(epochs=1, crop_size=16, base_channels=4, depth=2, batch_size=8),
    TwoOutputUNetClassifier: dict(epochs=1, base_channels=4, levels=2, batch_size=8, input_size=32),
}


def _outputs(estimator, X):
    if hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict_proba(X))
    out = estimator.transform(X)
    column = getattr(estimator, "output_column", None)
    if column in getattr(out, "columns", []):  # the segmenter: the predicted masks themselves
        import SimpleITK as sitk

        return np.stack([sitk.GetArrayFromImage(sitk.ReadImage(p)) for p in out[column]])
    return out.to_numpy()


def _fitted_state(estimator) -> dict:
    """The fitted attributes (``*_``), compared by value (the private network cache is not state)."""
    import pickle

    return {k: pickle.dumps(v) for k, v in vars(estimator).items() if k.endswith("_") and not k.startswith("_")}


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_estimator_contract_on_a_manifest(cls, small_cohort, tmp_path):
    """scikit-learn's checks that apply to image estimators: clone, fit idempotence, pickle, no state change."""
    import pickle

    train, test = small_cohort.iloc[:8], small_cohort.iloc[30:33]
    params = dict(TINY[cls], random_state=0, n_threads=1)
    if cls is HematomaSegmenter:
        params["cache_dir"] = tmp_path / "masks"
    estimator = cls(**params)
    assert clone(estimator).get_params() == estimator.get_params()
    estimator.fit(train, train["he"])
    first = _outputs(estimator, test)
    state = _fitted_state(estimator)
    again = _outputs(estimator, test)
    np.testing.assert_array_equal(first, again)  # predicting twice gives the same answer ...
    assert _fitted_state(estimator) == state  # ... and changes no fitted attribute
    refit = clone(estimator).fit(train, train["he"])
    np.testing.assert_array_equal(_outputs(refit, test), first)  # fit is idempotent for a fixed seed
    loaded = pickle.loads(pickle.dumps(estimator))
    np.testing.assert_array_equal(_outputs(loaded, test), first)
