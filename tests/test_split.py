import numpy as np
import pytest

from segfast.datasets import Dataset
from segfast.split import Split, holdout


def data(n=100, d=3):
    X = np.arange(n * d, dtype=np.float32).reshape(n, d)
    y = np.arange(n) % 10
    return X, y


def test_holdout_takes_the_last_rows():
    X, y = data()
    s = holdout(X, y, val=20, test=10)
    assert isinstance(s, Split)
    np.testing.assert_array_equal(s.X_train, X[:70])
    np.testing.assert_array_equal(s.X_val, X[70:90])
    np.testing.assert_array_equal(s.X_test, X[90:])
    np.testing.assert_array_equal(s.y_val, y[70:90])
    assert s.train[0] is s.X_train and s.val[1] is s.y_val and s.test == (s.X_test, s.y_test)
    X_train, y_train, X_val, y_val, X_test, y_test = s  # unpacks like a tuple
    assert len(X_train) + len(X_val) + len(X_test) == len(X)


def test_holdout_default_is_5000_and_5000():
    X, y = data(n=20000, d=1)
    s = holdout(X, y)
    assert (len(s.X_train), len(s.X_val), len(s.X_test)) == (10000, 5000, 5000)


def test_holdout_returns_views():
    X, y = data()
    for part in holdout(X, y, val=20, test=10):
        assert part.base is not None
    s = holdout(X, y, val=20, test=10)
    assert np.shares_memory(s.X_train, X) and np.shares_memory(s.X_test, X)
    assert np.shares_memory(s.y_val, y)


def test_holdout_zero_val_and_test():
    X, y = data()
    s = holdout(X, y, val=0, test=0)
    assert s.X_train.shape == (100, 3)
    assert s.X_val.shape == (0, 3) and s.X_test.shape == (0, 3) and s.y_test.shape == (0,)


def test_holdout_dataset_official_split():
    X, y = data()
    X_test, y_test = data(n=7)
    ds = Dataset("toy", X, y, X_test, y_test, tuple("abcdefghij"))
    s = holdout(ds, val=30, test=999)  # test ignored: the official split is used
    assert s.X_test is X_test and s.y_test is y_test
    np.testing.assert_array_equal(s.X_train, X[:70])
    np.testing.assert_array_equal(s.X_val, X[70:])
    assert np.shares_memory(s.X_val, ds.X_train)


def test_holdout_dataset_without_test_split():
    X, y = data()
    ds = Dataset("toy", X, y, None, None, tuple("abcdefghij"))
    s = holdout(ds, val=10, test=5)
    assert (len(s.X_train), len(s.X_val), len(s.X_test)) == (85, 10, 5)
    np.testing.assert_array_equal(s.X_test, X[95:])


def test_holdout_errors():
    X, y = data()
    with pytest.raises(ValueError, match="X must be 2-D"):
        holdout(X.ravel(), np.arange(300))
    with pytest.raises(ValueError, match=r"len\(X\) = 100, len\(y\) = 99"):
        holdout(X, y[:99])
    with pytest.raises(ValueError, match="y is required"):
        holdout(X)
    with pytest.raises(ValueError, match="val must be an integer >= 0, got -1"):
        holdout(X, y, val=-1)
    with pytest.raises(ValueError, match="test must be an integer >= 0, got 2.5"):
        holdout(X, y, test=2.5)
    with pytest.raises(ValueError, match="val must be an integer >= 0, got True"):
        holdout(X, y, val=True)
    with pytest.raises(ValueError, match=r"val \+ test = 60 \+ 40 = 100 .* n = 100"):
        holdout(X, y, val=60, test=40)
    ds = Dataset("toy", X, y, X[:5], y[:5], tuple("abcdefghij"))
    with pytest.raises(ValueError, match="val = 100 leaves no training rows"):
        holdout(ds, val=100)
    with pytest.raises(ValueError, match="y must be None"):
        holdout(ds, y)


def test_holdout_accepts_numpy_ints():
    X, y = data()
    s = holdout(X, y, val=np.int64(10), test=np.int32(10))
    assert len(s.X_train) == 80
