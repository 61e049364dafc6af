"""SegmentClassifier: scikit-learn's estimator checks and real use on the shipped data."""

import numpy as np
import pytest

import segfast
from segfast import SegmentClassifier


def test_learns_the_shipped_data_with_string_labels():
    data = segfast.datasets.load_default()
    names = np.array(data.classes)
    clf = SegmentClassifier(n_segments=5, hidden=(64,), rounds=2, local_epochs=2).fit(data.X_train, names[data.y_train])
    assert list(clf.classes_) == sorted(names)
    assert clf.score(data.X_test, names[data.y_test]) > 0.7
    proba = clf.predict_proba(data.X_test[:5])
    assert proba.shape == (5, 10) and np.allclose(proba.sum(1), 1, atol=1e-5)
    ens = SegmentClassifier(n_segments=5, hidden=(64,), local_epochs=2, combine="ensemble", ensemble="stacking")
    assert ens.fit(data.X_train, data.y_train).score(data.X_test, data.y_test) > 0.7


def test_refuses_bad_input():
    X = np.random.default_rng(0).random((20, 3))
    with pytest.raises(ValueError, match="at least 2 classes"):
        SegmentClassifier(n_segments=2).fit(X, np.zeros(20))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        SegmentClassifier(n_segments=2).fit(X, np.linspace(0, 1, 20))
    with pytest.raises(ValueError, match="cannot fill 30 segments"):
        SegmentClassifier(n_segments=30).fit(X, np.arange(20) % 2)
    with pytest.raises(segfast.ensemble.NotFittedError):
        SegmentClassifier().predict(X)


def test_parameters_are_keyword_only():
    # as scikit-learn's estimators: SegmentClassifier(10, (64,)) would read as anything
    with pytest.raises(TypeError, match="positional"):
        SegmentClassifier(5)
    assert SegmentClassifier(n_segments=5).get_params()["n_segments"] == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_segments=2, hidden=(16,), local_epochs=20),
        dict(n_segments=2, hidden=(16,), local_epochs=20, rounds=2, combine="ensemble", ensemble="stacking"),
    ],
)
def test_passes_scikit_learns_estimator_checks(kwargs):
    estimator_checks = pytest.importorskip("sklearn.utils.estimator_checks")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checks' own SkipTestWarnings (no pandas, no array API)
        results = estimator_checks.check_estimator(SegmentClassifier(**kwargs), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed, failed


def test_grid_search():
    model_selection = pytest.importorskip("sklearn.model_selection")
    data = segfast.datasets.load_default()
    grid = model_selection.GridSearchCV(
        SegmentClassifier(n_segments=2, hidden=(32,), local_epochs=3), {"lr": [0.01, 0.1]}, cv=2
    )
    grid.fit(data.X_train[:3000], data.y_train[:3000])
    assert grid.best_params_["lr"] in (0.01, 0.1) and grid.best_score_ > 0.6, grid.cv_results_["mean_test_score"]
