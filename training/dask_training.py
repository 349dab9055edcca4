"""The late-shipment model's trees grown on a Dask cluster with ``lightgbm.dask``.

The encoded training and validation rows are cut into one block per worker and LightGBM's
data-parallel learner grows each tree across them. ``lightgbm.dask`` has no early stopping, so
all ``n_estimators`` trees are grown with the validation loss recorded per iteration, and the
model keeps the trees up to the iteration where that loss was lowest: the same choice early
stopping makes, without stopping. A target with hazards grows one booster per hazard label,
each from its linear margin (``init_score``). The boosters then come home and are calibrated
and wrapped exactly as a single-machine fit, so serving cannot tell the two apart.

Worth it when the history no longer fits one machine's memory; on one two-core machine it is
slower than the plain fit (the workers share the cores and talk over sockets).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from erp_core.domain.errors import InvalidValue
from training import late_shipment as ls
from training.encoding import FrameEncoder
from training.frames import TrainingFrame
from training.linear_margin import LinearMargin


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
    data: TrainingFrame,
    seed: int,
    params: dict[str, Any],
    client: Any,
    aim: ls.Target = ls.DELIVERY,
) -> ls.LateShipmentModel:
    """The target's model with its boosters (one per hazard, or one on its label) grown on the
    cluster, calibrated here on the calibration weeks."""
    train, valid, calib = data.part("train"), data.part("validation"), data.part("calibration")
    model = ls.LateShipmentModel(random_state=seed, hazards=aim.hazards, **params)
    encoder = FrameEncoder(model.used_features()).fit(train)
    model.encoder_ = encoder  # lightgbm_params reads the feature order from it
    grown = [
        _grow_on_dask(model, encoder, train, valid, label, seed, client)
        for label in (aim.hazards or (aim.label,))
    ]
    return model.adopt(
        encoder,
        [booster for booster, _, _ in grown],
        [best for _, best, _ in grown],
        (calib, calib[aim.label]),
        [margin for _, _, margin in grown],
    )


def _grow_on_dask(
    model: ls.LateShipmentModel,
    encoder: FrameEncoder,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    label: str,
    seed: int,
    client: Any,
) -> tuple[Any, int, LinearMargin | None]:
    """One booster on the rows whose ``label`` is known, with the trees up to the lowest
    validation loss, grown from its linear margin (fitted here: a logistic regression on the
    training rows is small beside the trees)."""
    import dask.array as da
    import lightgbm as lgb

    workers = max(1, len(client.scheduler_info()["workers"]))

    def labelled(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        frame = frame.loc[frame[label].notna()]
        return encoder.transform(frame), frame[label].astype("float64").to_numpy()

    train_matrix, train_y = labelled(train)
    margin = model.new_margin().fit(train_matrix, train_y) if model.linear_margin else None

    def blocks(matrix: np.ndarray, y: np.ndarray) -> tuple[Any, Any, Any]:
        # Rows dealt to the workers at random, not in time order: each worker builds its
        # feature bins from its own rows, and a worker holding only the oldest weeks would bin
        # by a distribution the others do not see.
        order = np.random.default_rng(seed).permutation(len(matrix))
        rows = -(-len(matrix) // workers)
        start = np.zeros(len(matrix)) if margin is None else margin.margin(matrix)
        return (
            da.from_array(matrix[order], chunks=(rows, matrix.shape[1])),
            da.from_array(y[order], chunks=rows),
            da.from_array(start[order], chunks=rows),
        )

    X, y, start = blocks(train_matrix, train_y)
    Xv, yv, valid_start = blocks(*labelled(valid))
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
        init_score=start,
        eval_X=(Xv,),
        eval_y=(yv,),
        eval_init_score=(valid_start,),
        eval_metric="binary_logloss",
        categorical_feature=encoder.categorical_indices,
        feature_name=encoder.names,
    )
    losses = next(iter(classifier.evals_result_.values()))["binary_logloss"]
    best = int(np.argmin(losses)) + 1
    return classifier.to_local().booster_, best, margin
