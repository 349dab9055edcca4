"""The late-shipment model's trees grown on a Dask cluster with ``lightgbm.dask``.

The encoded training and validation rows are cut into one block per worker and LightGBM's
data-parallel learner grows each tree across them. ``lightgbm.dask`` has no early stopping, so
all ``n_estimators`` trees are grown with the validation loss recorded per iteration, and the
model keeps the trees up to the iteration where that loss was lowest: the same choice early
stopping makes, without stopping. The booster then comes home and is calibrated and wrapped
exactly as a single-machine fit, so serving cannot tell the two apart.

Worth it when the history no longer fits one machine's memory; on one two-core machine it is
slower than the plain fit (the workers share the cores and talk over sockets).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from erp_core.domain.errors import InvalidValue
from training import late_shipment as ls
from training.encoding import FrameEncoder
from training.frames import TrainingFrame


@contextmanager
def dask_client(scheduler: str | None, workers: int = 2) -> Iterator[Any]:
    """A client of the scheduler at ``scheduler``, or of a local cluster started for the run."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as error:
        raise InvalidValue(
            "scheduler", scheduler, f"cannot reach the Dask scheduler: {error}"
        ) from None
    try:
        yield client
    finally:
        client.close()


def fit_on_dask(
    data: TrainingFrame, seed: int, params: dict[str, Any], client: Any, label: str = ls.LABEL
) -> ls.LateShipmentModel:
    import dask.array as da
    import lightgbm as lgb

    train, valid, calib = data.part("train"), data.part("validation"), data.part("calibration")
    model = ls.LateShipmentModel(random_state=seed, **params)
    encoder = FrameEncoder(model.used_features()).fit(train)
    workers = max(1, len(client.scheduler_info()["workers"]))

    def blocks(matrix: np.ndarray, labels: Any) -> tuple[Any, Any]:
        # Rows dealt to the workers at random, not in time order: each worker builds its
        # feature bins from its own rows, and a worker holding only the oldest weeks would bin
        # by a distribution the others do not see.
        order = np.random.default_rng(seed).permutation(len(matrix))
        rows = -(-len(matrix) // workers)
        y = np.asarray(labels, dtype=np.float64)[order]
        return (
            da.from_array(matrix[order], chunks=(rows, matrix.shape[1])),
            da.from_array(y, chunks=rows),
        )

    X, y = blocks(encoder.transform(train), train[label])
    Xv, yv = blocks(encoder.transform(valid), valid[label])
    model.encoder_ = encoder  # lightgbm_params reads the feature order from it
    booster_params = model.lightgbm_params()
    for single_machine_only in ("deterministic", "force_row_wise", "num_threads", "verbosity"):
        booster_params.pop(single_machine_only, None)
    classifier = lgb.DaskLGBMClassifier(
        client=client,
        n_estimators=model.n_estimators,
        tree_learner="data",
        verbose=-1,
        **booster_params,
    )
    classifier.fit(
        X,
        y,
        eval_X=(Xv,),
        eval_y=(yv,),
        eval_metric="binary_logloss",
        categorical_feature=encoder.categorical_indices,
        feature_name=encoder.names,
    )
    losses = next(iter(classifier.evals_result_.values()))["binary_logloss"]
    best = int(np.argmin(losses)) + 1
    booster = classifier.to_local().booster_
    return model.adopt(encoder, booster, best, (calib, calib[label]))
