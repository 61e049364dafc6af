"""segfast.distributed on a real Dask LocalCluster (worker processes on loopback): bit-identical
to the single-machine run, shard files, a worker killed mid-round, a client killed and resumed,
clear errors."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import segfast
from conftest import blobs
from segfast import MLPStack
from segfast import distributed as sd

dd = pytest.importorskip("dask.distributed")

DIMS = [16, 12, 4]


def _cluster():
    return dd.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0")


@pytest.fixture(scope="module")
def client():
    with _cluster() as cluster, dd.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X, y = blobs(rng, n=1200, d=16, classes=4, spread=1.5)
    # 200 segments: the fused merge adds them in 50 blocks of 4, so blocks cut between them
    return X[:1000], y[:1000], (X[1000:], y[1000:]), segfast.segment(y[:1000], 200, "iid", seed=1)


@pytest.mark.parametrize("blocks", [None, 1, 3, 7])
def test_train_is_bit_identical_for_any_block_count(client, data, blocks):
    X, y, _, seg = data
    start = MLPStack(DIMS, 200, seed=3)
    epochs = np.arange(200) % 3  # models stop at different epochs, some never train
    here = start.copy()
    want = segfast.train(here, X, y, seg, epochs=epochs, momentum=0.9, seed=5, start_epoch=2)
    there = start.copy()
    got = sd.train(there, X, y, seg, epochs=epochs, momentum=0.9, seed=5, start_epoch=2, client=client, blocks=blocks)
    np.testing.assert_array_equal(there.params, here.params)
    np.testing.assert_array_equal(got.loss, want.loss)
    np.testing.assert_array_equal(got.epochs, want.epochs)


@pytest.mark.parametrize(
    "merge,fraction",
    [("uniform", 1.0), ("weighted", 1.0), ("uniform", 0.7), ({"method": "weighted"}, 0.7), ("median", 1.0)],
)
def test_three_rounds_are_bit_identical_for_any_block_count(client, data, merge, fraction):
    X, y, val, seg = data
    kw = dict(
        rounds=3,
        local_epochs=[1, 2],
        merge=merge,
        fraction=fraction,
        momentum=0.5,
        val=val,
        val_segments=False,
        progress=False,
    )
    here = segfast.rounds(DIMS, X, y, seg, **kw)
    # fraction 0.7: 140 models a round in blocks of 3, which cut across the placed blocks
    for blocks in (None, 5):
        there = sd.rounds(DIMS, X, y, seg, client=client, blocks=blocks, **kw)
        np.testing.assert_array_equal(there.global_model.params, here.global_model.params)
        np.testing.assert_array_equal(there.local_models.params, here.local_models.params)
        assert [h["train_loss"] for h in there.history] == [h["train_loss"] for h in here.history]
        assert [h["global_accuracy"] for h in there.history] == [h["global_accuracy"] for h in here.history]


@pytest.mark.parametrize("merge", ["uniform", "rank"])
def test_regression_rounds_and_train_are_bit_identical(client, data, merge):
    X, labels, (X_val, _), seg = data
    y = (X[:, 0] * 2 - X[:, 1] + np.sin(X[:, 2])).astype(np.float32)  # targets on the same rows
    y_val = (X_val[:, 0] * 2 - X_val[:, 1] + np.sin(X_val[:, 2])).astype(np.float32)
    start = segfast.MLPStack([16, 12, 1], 1, task="regression", seed=3)
    kw = dict(rounds=2, local_epochs=2, merge=merge, val=(X_val, y_val), loss="huber", lr=0.01, progress=False)
    here = segfast.rounds(start, X, y, seg, **kw)
    there = sd.rounds(start, X, y, seg, client=client, blocks=3, **kw)
    np.testing.assert_array_equal(there.global_model.params, here.global_model.params)
    assert there.global_model.task == "regression" and there.local_models.task == "regression"
    assert [h["global_loss"] for h in there.history] == [h["global_loss"] for h in here.history]
    a, b = segfast.MLPStack([16, 12, 1], 200, task="regression"), segfast.MLPStack([16, 12, 1], 200, task="regression")
    segfast.train(a, X, y, seg, epochs=2, loss="mse")
    sd.train(b, X, y, seg, epochs=2, loss="mse", client=client)
    np.testing.assert_array_equal(a.params, b.params)


SEGMENT_FIELDS = ("segments_val_rows", "segment_accuracy_mean", "segment_accuracy_std", "ensemble_accuracy")


@pytest.mark.parametrize("val_segments,fraction", [("auto", 1.0), (True, 1.0), (True, 0.3)])
def test_segment_models_are_scored_where_they_trained(client, data, val_segments, fraction, monkeypatch):
    """Every round's segment scores and vote equal the single-machine run's, bit for bit, and the
    segment models leave the workers once, for the result, not once a round to be scored."""
    X, y, val, seg = data
    kw = dict(rounds=3, val=val, val_segments=val_segments, fraction=fraction, seed=2, progress=False)
    here = segfast.rounds(DIMS, X, y, seg, **kw)
    pulled, pull = [], sd._OnCluster._pull  # the real pull, counted (Dask's own retries are not ours)

    def counted(engine, name):
        pulled.append(name)
        return pull(engine, name)

    monkeypatch.setattr(sd._OnCluster, "_pull", counted)
    there = sd.rounds(DIMS, X, y, seg, client=client, blocks=7, **kw)
    for a, b in zip(here.history, there.history):
        assert {k: a[k] for k in SEGMENT_FIELDS} == {k: b[k] for k in SEGMENT_FIELDS}
    np.testing.assert_array_equal(here.local_models.params, there.local_models.params)
    assert pulled == ["rows"]  # once, after the last round


def test_personalisation_is_bit_identical(client, data):
    X, y, val, seg = data
    own = [np.arange(i, len(val[1]), len(seg)) for i in range(len(seg))]  # each segment a share of the val rows
    kw = dict(rounds=2, local_epochs=2, personalize_epochs=1, val=val, segment_val=own, fraction=0.5, progress=False)
    here = segfast.rounds(DIMS, X, y, seg, **kw)
    there = sd.rounds(DIMS, X, y, seg, client=client, blocks=3, **kw)
    fields = ("personalized_accuracy_mean", "personalized_accuracy_std", "personalized_segments", "own_accuracy_mean")
    assert [[h[k] for k in fields] for h in here.history] == [[h[k] for k in fields] for h in there.history]
    np.testing.assert_array_equal(here.global_model.params, there.global_model.params)


def test_regression_segment_scores_are_bit_identical(client, data):
    X, _, (X_val, _), seg = data
    y = (X[:, 0] * 2 - X[:, 1]).astype(np.float32)
    val = (X_val, (X_val[:, 0] * 2 - X_val[:, 1]).astype(np.float32))
    start = segfast.MLPStack([16, 12, 1], 1, task="regression", seed=3)
    kw = dict(rounds=2, val=val, val_segments=True, lr=0.01, progress=False)
    here = segfast.rounds(start, X, y, seg, **kw)
    there = sd.rounds(start, X, y, seg, client=client, blocks=3, **kw)
    fields = ("segment_rmse_mean", "segment_rmse_std", "ensemble_rmse")
    assert [[h[k] for k in fields] for h in here.history] == [[h[k] for k in fields] for h in there.history]


def test_save_shards_refuses_bad_input(data, tmp_path):
    X, y, _, seg = data
    with pytest.raises(ValueError, match="y has 999 labels but X has 1000 rows"):
        segfast.datasets.save_shards(X, y[:-1], seg, tmp_path / "a")
    with pytest.raises(TypeError, match="integer class labels"):
        segfast.datasets.save_shards(X, y.astype(np.float64), seg, tmp_path / "b")
    with pytest.raises(ValueError, match="labels >= 0"):
        segfast.datasets.save_shards(X, y - 1, seg, tmp_path / "c")
    nan = X.copy()
    nan[0, 0] = np.inf
    with pytest.raises(ValueError, match="inf"):
        segfast.datasets.save_shards(nan, y, seg, tmp_path / "d")
    with pytest.raises(ValueError, match="segment 1 is empty"):
        segfast.datasets.save_shards(X, y, [np.arange(3), np.arange(0)], tmp_path / "e")
    with pytest.raises(ValueError, match="shard_size must be an integer >= 1"):
        segfast.datasets.save_shards(X, y, seg, tmp_path / "f", shard_size=0)
    assert not any((tmp_path / name).exists() and any((tmp_path / name).iterdir()) for name in "abcdef")


def test_shard_files_round_trip(data, tmp_path):
    X, y, _, seg = data
    shards = segfast.datasets.save_shards(X, y, seg, tmp_path / "shards", shard_size=30)
    again = segfast.datasets.load_shards(tmp_path / "shards")
    assert again.n_shards == shards.n_shards == 7 and again.n_segments == 200
    np.testing.assert_array_equal(again.bounds, [0, 30, 60, 90, 120, 150, 180, 200])
    np.testing.assert_array_equal(again.sizes, seg.sizes)
    assert again.fingerprints == shards.fingerprints and again.files == shards.files
    for k in range(again.n_shards):
        Xk, yk, order, offsets = again.load(k)
        assert len(Xk) == len(np.unique(seg.order[seg.offsets[again.bounds[k]] : seg.offsets[again.bounds[k + 1]]]))
        for i in range(again.bounds[k], again.bounds[k + 1]):
            rows = order[offsets[i - again.bounds[k]] : offsets[i - again.bounds[k] + 1]]
            np.testing.assert_array_equal(Xk[rows], X[seg[i]])  # same rows, same order
            np.testing.assert_array_equal(yk[rows], y[seg[i]])
    with pytest.raises(ValueError, match="already holds shards"):
        segfast.datasets.save_shards(X, y, seg, tmp_path / "shards")


def test_rounds_on_shards_equal_rounds_on_arrays(client, data, tmp_path):
    X, y, val, seg = data
    shards = segfast.datasets.save_shards(X, y, seg, tmp_path / "shards")  # 50 shards of 4 segments
    kw = dict(rounds=3, val=val, val_segments=False, progress=False)
    here = segfast.rounds(DIMS, X, y, seg, out=tmp_path / "here", **kw)
    there = sd.rounds(DIMS, shards, None, seg, client=client, blocks=3, out=tmp_path / "there", **kw)
    np.testing.assert_array_equal(there.global_model.params, here.global_model.params)
    configs = [json.loads((tmp_path / d / "config.json").read_text()) for d in ("here", "there")]
    for c in configs:
        c.pop("created")
    assert configs[0] == configs[1]  # the same run: either can resume it
    again = sd.rounds(DIMS, str(tmp_path / "shards"), client=client, **kw)  # a directory, segments from the manifest
    np.testing.assert_array_equal(again.global_model.params, here.global_model.params)


def test_shard_errors_name_the_problem(client, data, tmp_path):
    X, y, _, seg = data
    shards = segfast.datasets.save_shards(X, y, seg, tmp_path / "s", shard_size=50)
    with pytest.raises(ValueError, match="segments do not match the shard files"):
        sd.rounds(DIMS, shards, None, segfast.segment(y, 200, "iid", seed=2), rounds=1, client=client, progress=False)
    with pytest.raises(ValueError, match="y must be None"):
        sd.rounds(DIMS, shards, y, None, rounds=1, client=client, progress=False)
    with pytest.raises(ValueError, match="have 16 features, but the models expect 8"):
        sd.rounds([8, 4, 4], shards, rounds=1, client=client, progress=False)
    with pytest.raises(FileNotFoundError, match="holds no shards"):
        segfast.datasets.load_shards(tmp_path)
    # a shard replaced by another's bytes: the worker that reads it refuses
    (tmp_path / "s" / "shard-00002.npz").write_bytes((tmp_path / "s" / "shard-00001.npz").read_bytes())
    with pytest.raises(ValueError, match="shard-00002.npz does not match the manifest"):
        sd.rounds(DIMS, shards, rounds=1, client=client, progress=False)
    (tmp_path / "s" / "shard-00003.npz").unlink()
    with pytest.raises(FileNotFoundError, match="1 of the 4 shard files .* missing .*shard-00003.npz"):
        sd.rounds(DIMS, tmp_path / "s", rounds=1, client=client, progress=False)


class _Kill(dd.WorkerPlugin):
    """SIGKILLs the workers that start the first ``times`` training tasks: one worker, or with
    times=2 both workers of a 2-worker cluster at once (as the kernel's OOM killer might); none
    after that, so the restarted ones live."""

    def __init__(self, marker, times=1):
        self.marker, self.times = marker, times

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or not str(key).startswith("segfast-train-"):
            return
        for slot in range(self.times):
            try:  # O_EXCL: of workers starting at once, only those that create a marker die
                os.close(os.open(f"{self.marker}-{slot}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            os.kill(os.getpid(), signal.SIGKILL)


def test_every_worker_killed_at_once_waits_for_the_restarted_ones(data, tmp_path):
    """Before, the retry found no worker and failed ("client has no workers"); now it waits for
    the nannies to restart them and ends with the local run's bits."""
    X, y, val, seg = data
    kw = dict(rounds=2, val=val, val_segments=False, progress=False)
    here = segfast.rounds(DIMS, X, y, seg, **kw)
    with _cluster() as cluster, dd.Client(cluster) as c:
        c.register_plugin(_Kill(str(tmp_path / "killed"), times=2))
        there = sd.rounds(DIMS, X, y, seg, client=c, **kw)
    assert (tmp_path / "killed-0").exists() and (tmp_path / "killed-1").exists()
    np.testing.assert_array_equal(there.global_model.params, here.global_model.params)


@pytest.mark.parametrize("placed", ["scattered", "shards"])
def test_a_worker_killed_mid_round_changes_nothing(data, tmp_path, placed):
    X, y, val, seg = data
    kw = dict(rounds=3, val=val, val_segments=False, progress=False)
    here = segfast.rounds(DIMS, X, y, seg, **kw)
    source = (X, y, seg) if placed == "scattered" else (segfast.datasets.save_shards(X, y, seg, tmp_path / "s"),)
    with _cluster() as cluster, dd.Client(cluster) as c:
        before = set(c.scheduler_info()["workers"])
        c.register_plugin(_Kill(str(tmp_path / "killed")))
        there = sd.rounds(DIMS, *source, client=c, **kw)
        assert os.path.exists(tmp_path / "killed-0")
        assert set(c.scheduler_info()["workers"]) != before  # one of the two is gone (or restarted)
    np.testing.assert_array_equal(there.global_model.params, here.global_model.params)


KILLED_CLIENT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np, segfast, segfast.results as results
    from dask.distributed import Client
    sys.path.insert(0, {tests!r})
    from conftest import blobs
    rng = np.random.default_rng(0)
    X, y = blobs(rng, n=1200, d=16, classes=4, spread=1.5)
    seg = segfast.segment(y[:1000], 200, "iid", seed=1)
    original = results.RunDirectory.write_round
    def write_then_die(self, history, state, best):
        original(self, history, state, best)
        if len(history) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    results.RunDirectory.write_round = write_then_die
    segfast.distributed.rounds({dims}, X[:1000], y[:1000], seg, rounds=4, server_momentum=0.5,
                               val=(X[1000:], y[1000:]), out=sys.argv[1], resume=True, progress=False,
                               client=Client(sys.argv[2]))
""")


def test_a_killed_client_resumes_to_the_same_result(client, data, tmp_path):
    X, y, val, seg = data
    script = tmp_path / "run.py"
    script.write_text(KILLED_CLIENT.format(tests=os.path.dirname(__file__), dims=DIMS))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(script), str(out), client.scheduler.address], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert len((out / "rounds.jsonl").read_text().splitlines()) == 2
    kw = dict(rounds=4, server_momentum=0.5, val=val, progress=False)
    resumed = sd.rounds(DIMS, X, y, seg, out=out, resume=True, client=client, **kw)
    whole = segfast.rounds(DIMS, X, y, seg, **kw)
    np.testing.assert_array_equal(resumed.global_model.params, whole.global_model.params)
    assert [h["global_accuracy"] for h in resumed.history] == [h["global_accuracy"] for h in whole.history]
    np.testing.assert_array_equal(MLPStack.load(out / "local_models.npz").params, whole.local_models.params)


def test_bad_input_gives_clear_errors(client, data):
    X, y, _, seg = data
    with pytest.raises(TypeError, match="client must be a dask.distributed.Client"):
        sd.rounds(DIMS, X, y, seg, client="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="blocks must be an integer >= 1"):
        sd.rounds(DIMS, X, y, seg, rounds=1, client=client, blocks=0, progress=False)
    with pytest.raises(ValueError, match="needs y and segments"):
        sd.rounds(DIMS, X, client=client)
    with pytest.raises(TypeError, match="device= is not supported"):
        sd.rounds(DIMS, X, y, seg, client=client, device="cuda")
    with pytest.raises(ValueError, match="fraction must be in"):
        sd.rounds(DIMS, X, y, seg, client=client, fraction=2.0)
    with pytest.raises(ValueError, match="segments has 200 segments but the stack has 3 models"):
        sd.train(MLPStack(DIMS, 3), X, y, seg, client=client)
    nan = X.copy()
    nan[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sd.rounds(DIMS, nan, y, seg, rounds=1, client=client, progress=False)
    with pytest.raises(ValueError, match="X has 15 features"):
        sd.train(MLPStack(DIMS, 200), X[:, :15], y, seg, client=client)
    with pytest.raises(TypeError, match="integer class labels"):
        sd.train(MLPStack(DIMS, 200), X, y.astype(np.float32), seg, client=client)
    with pytest.raises(ValueError, match="labels in"):
        sd.rounds(DIMS, X, y + 10, seg, rounds=1, client=client, progress=False)
    with pytest.raises(ValueError, match="segment 0 is empty"):
        sd.rounds(DIMS, X, y, [np.arange(0), np.arange(5)], rounds=1, client=client, progress=False)
    with (
        dd.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty,
        dd.Client(empty) as c,
        pytest.raises(ValueError, match="client has no workers"),
    ):
        sd.rounds(DIMS, X, y, seg, client=c)


def test_without_dask_the_error_says_how_to_install(data, monkeypatch):
    X, y, _, seg = data
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # what an environment without Dask sees
    with pytest.raises(ImportError, match=r'pip install "segfast-mlp\[dask\]"'):
        sd.rounds(DIMS, X, y, seg, client=None)


@pytest.mark.parametrize("by", ["loss", "weights"])
def test_clustered_rounds_match_the_single_machine_run(client, data, by):
    X, y, val, seg = data
    fraction = 0.5 if by == "loss" else 1.0  # weight clustering needs every segment each round
    options = dict(rounds=3, clusters=3, cluster_by=by, val=val, progress=False, seed=0, lr=0.1, fraction=fraction)
    here = segfast.rounds(DIMS, X, y, seg, **options)
    there = sd.rounds(DIMS, X, y, seg, client=client, **options)
    np.testing.assert_array_equal(there.global_model.params, here.global_model.params)
    np.testing.assert_array_equal(there.clusters, here.clusters)
    assert (here.clusters >= 0).sum() > 100 and len(set(here.clusters[here.clusters >= 0])) == 3


def test_dp_rounds_match_the_single_machine_run(client, data):
    pytest.importorskip("dp_accounting")
    X, y, val, seg = data
    dp = dict(clip=0.5, noise_multiplier=1.0, delta=1e-3, seed=5)  # the same secret key in both
    options = dict(rounds=3, fraction=0.3, dp=dp, val=val, progress=False, lr=0.1, seed=2)
    here = segfast.rounds(DIMS, X, y, seg, **options)
    there = sd.rounds(DIMS, X, y, seg, client=client, **options)
    np.testing.assert_array_equal(there.global_model.params, here.global_model.params)
    assert there.local_models is None and [h["epsilon"] for h in there.history] == [h["epsilon"] for h in here.history]
