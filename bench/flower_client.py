"""bench_flower.py's Flower client: a module of its own, so that Ray's worker processes import it
(what a script's __main__ defines does not reach them). Needs flwr and torch."""

from __future__ import annotations

import functools

import segfast
from anchors import architecture

DIMS, LR, BATCH = [784, 128, 10], 0.05, 32


@functools.lru_cache(maxsize=1)
def partitions(n_segments: int):
    """Every process's view of the data: the training rows, their segments, the test rows."""
    data = segfast.datasets.load("fashion-mnist")
    return (
        data.X_train,
        data.y_train,
        segfast.segment(data.y_train, n_segments, "iid", seed=0),
        data.X_test,
        data.y_test,
    )


def _client_app():
    import torch
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """One local epoch of plain SGD on this client's segment, as a PyTorch user writes it."""
        torch.set_num_threads(1)  # one actor per core
        X, y, segs, _, _ = partitions(int(context.node_config["num-partitions"]))
        rows = segs[int(context.node_config["partition-id"])]
        net = architecture(torch, DIMS)
        net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        opt = torch.optim.SGD(net.parameters(), lr=LR)
        order = torch.from_numpy(rows.copy())[torch.randperm(len(rows))]  # rows: a read-only view
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        for s in range(0, len(order), BATCH):
            batch = order[s : s + BATCH]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(Xt[batch]), yt[batch]).backward()
            opt.step()
        reply = {"arrays": ArrayRecord(net.state_dict()), "metrics": MetricRecord({"num-examples": len(rows)})}
        return Message(content=RecordDict(reply), reply_to=msg)

    return app


client_app = _client_app()
