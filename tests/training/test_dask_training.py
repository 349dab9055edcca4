"""Trees grown on a Dask cluster (``lightgbm.dask``, two local workers) make the same model as a
single-machine fit, and an unreachable scheduler is refused by name."""

import numpy as np
import pytest

from erp_core.domain.errors import InvalidValue
from training import late_shipment as ls
from training.dask_training import dask_client, fit_on_dask
from training.frames import choose_window, load_training_frame
from training.jobs import _fit_model
from training.metrics import auc_standard_error, score_classifier

from .conftest import PLAN

NO_BAGGING = {"subsample": 1.0, "colsample_bytree": 1.0, "n_estimators": 300}
"""Row and column sampling draw per worker on a cluster, so with them on the two fits differ by
their draws (as two seeds do); without them only the workers' feature bins differ."""
AUC_STANDARD_ERRORS = 2
"""The issue asks for 0.01; on the small world's test window (about 500 lines, 70 late) the
standard error of an AUC is about 0.035, so 0.01 cannot be told from noise there: the two AUCs
must not differ by more than two standard errors, and the 0.01 is measured on a medium world by
``bench/train.py --compare-dask``."""


@pytest.fixture(scope="module")
def data(training_world, calendar, tmp_path_factory):
    window = choose_window(training_world.url, PLAN)
    return load_training_frame(
        ls.FEATURE_SET,
        ls.LABEL,
        training_world.url,
        window,
        PLAN,
        calendar,
        tmp_path_factory.mktemp("frame"),
    )


def test_a_model_grown_on_a_local_dask_cluster_scores_as_the_single_machine_one(data):
    test = data.part("test")
    outcomes = test[ls.LABEL].to_numpy(dtype=bool)
    single = _fit_model(data, seed=7, params=NO_BAGGING)
    with dask_client(None, workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        distributed = fit_on_dask(data, 7, NO_BAGGING, client)
    single_auc = score_classifier(outcomes, single.predict_proba(test)[:, 1]).roc_auc
    dask_auc = score_classifier(outcomes, distributed.predict_proba(test)[:, 1]).roc_auc
    scores = score_classifier(outcomes, single.predict_proba(test)[:, 1])
    error = auc_standard_error(single_auc, scores.positives, scores.lines - scores.positives)
    assert abs(dask_auc - single_auc) <= AUC_STANDARD_ERRORS * error
    assert isinstance(distributed, ls.LateShipmentModel)
    p = distributed.predict_proba(test)[:, 1]
    assert np.all((p >= 0) & (p <= 1))


def test_an_unreachable_scheduler_is_refused_by_name():
    with pytest.raises(InvalidValue, match="scheduler"), dask_client("tcp://127.0.0.1:9"):
        pass
