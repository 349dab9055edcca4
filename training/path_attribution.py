"""Per-feature contributions of a LightGBM booster from the path each row takes to its leaves.

Why not TreeSHAP on the scoring path: exact TreeSHAP costs O(leaves x depth^2) per tree and row.
The late-shipment champion's trees are deep (depth 14-17 at 31 leaves), so ``pred_contrib`` on
a 10-line order took 8.6 ms against 0.3 ms for the probabilities themselves (measured on the
120-day bench world's champion): most of a score's CPU, for the reason codes alone.

Path attribution (Saabas; ``treeinterpreter``, XGBoost's ``approx_contribs``) credits each split
on a row's path with the change in the node's expected output it caused: going from a node worth
``v(parent)`` to a child worth ``v(child)`` gives the split's feature ``v(child) - v(parent)``,
the root's worth goes to the bias, and the row's raw score is exactly the bias plus its
contributions (the path telescopes to its leaf). A row's contributions depend on its leaves
alone, so each tree's (leaf x feature) table is worked out once from the booster's dump and a
row costs one ``pred_leaf`` (as cheap as a prediction) plus a gather: tens of microseconds.

What it gives up: TreeSHAP's consistency (a split near the root is credited with the whole
change it makes on that path, not an average over orderings). For reason codes (the top few
features pushing one line's risk up) the two agree on most lines; ``bench/train.py`` measures how
often on the late-shipment test rows (``reasons_path_vs_treeshap``).
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np

GATHER_VALUES = 4_000_000
"""Values one gather of contributions may hold at once (32 MB of float64)."""


class PathAttribution:
    """The (tree, leaf, feature) contributions of a booster's first ``trees`` trees.

    ``table_[t, leaf, j]``: what tree ``t`` credits feature ``j`` with on the path to ``leaf``;
    the last column (``j = features``) is the tree's root worth (the bias), as in
    ``pred_contrib``'s layout.
    """

    def __init__(self, trees: int) -> None:
        self.trees = trees

    def fit(self, booster: lgb.Booster) -> PathAttribution:
        dumped = booster.dump_model(num_iteration=self.trees)
        infos = dumped["tree_info"][: self.trees]
        features = int(dumped["max_feature_idx"]) + 1
        width = max((int(info["num_leaves"]) for info in infos), default=1)
        table = np.zeros((len(infos), width, features + 1))
        leaf_values = np.zeros((len(infos), width))
        for t, info in enumerate(infos):
            _fill(table[t], leaf_values[t], info["tree_structure"], features)
        self.table_ = table
        self.leaf_values_ = leaf_values
        self.tree_index_ = np.arange(len(infos))
        return self

    def leaves(
        self, booster: lgb.Booster, matrix: np.ndarray, num_threads: int | None = None
    ) -> np.ndarray:
        """The leaf each row reaches in each tree, (rows, trees)."""
        params = {} if num_threads is None else {"num_threads": num_threads}
        if len(self.tree_index_) == 0:
            return np.zeros((len(matrix), 0), dtype=np.intp)
        found = booster.predict(matrix, num_iteration=self.trees, pred_leaf=True, **params)
        return np.asarray(found, dtype=np.intp).reshape(len(matrix), -1)

    def raw_score(self, leaves: np.ndarray) -> np.ndarray:
        """The booster's raw score of the rows that reached ``leaves``, to the bit: LightGBM adds
        the trees' outputs one by one in tree order from 0, as the running sum here does."""
        if leaves.shape[1] == 0:
            return np.zeros(len(leaves))
        return np.cumsum(self.leaf_values_[self.tree_index_, leaves], axis=1)[:, -1]

    def contributions_of(self, leaves: np.ndarray) -> np.ndarray:
        """One row per row of ``leaves``, one column per feature plus the bias; rows sum to
        the raw score."""
        width = self.table_.shape[2]
        if leaves.shape[1] == 0 or len(leaves) == 0:
            return np.zeros((len(leaves), width))
        # The gather is (rows x trees x features): a batch is taken in slices that keep it
        # near GATHER_VALUES (an order's lines are one slice; 10k test rows would be ~1 GB).
        step = max(1, GATHER_VALUES // (leaves.shape[1] * width))
        return np.concatenate(
            [
                self.table_[self.tree_index_, leaves[start : start + step]].sum(axis=1)
                for start in range(0, len(leaves), step)
            ]
        )

    def contributions(
        self, booster: lgb.Booster, matrix: np.ndarray, num_threads: int | None = None
    ) -> np.ndarray:
        """``contributions_of`` the rows' leaves."""
        return self.contributions_of(self.leaves(booster, matrix, num_threads))


def _fill(rows: np.ndarray, values: np.ndarray, root: dict[str, Any], features: int) -> None:
    """Each leaf's row of one tree's table: the changes in worth along its path, by feature.

    A node's worth is the mean output of the training rows that reached it (its leaves' values
    weighted by their counts), the expectation TreeSHAP uses too: on a tree of one split the
    two methods give the same values."""
    bias = features
    worth = _worths(root)
    credit = np.zeros(features + 1)
    credit[bias] = worth[id(root)]
    stack: list[tuple[dict[str, Any], np.ndarray]] = [(root, credit)]
    while stack:
        node, path = stack.pop()
        if "leaf_index" in node:
            rows[int(node["leaf_index"])] = path
            values[int(node["leaf_index"])] = float(node["leaf_value"])
            continue
        feature = int(node["split_feature"])
        for side in ("left_child", "right_child"):
            child = node[side]
            step = path.copy()
            step[feature] += worth[id(child)] - worth[id(node)]
            stack.append((child, step))


def _worths(root: dict[str, Any]) -> dict[int, float]:
    """Every node's count-weighted mean leaf value, by the node's ``id`` (one pass, children
    before their parent)."""
    worth: dict[int, float] = {}
    count: dict[int, float] = {}
    order: list[dict[str, Any]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        if "leaf_index" not in node:
            stack.extend((node["left_child"], node["right_child"]))
    for node in reversed(order):
        key = id(node)
        if "leaf_index" in node:
            worth[key] = float(node["leaf_value"])
            count[key] = float(node.get("leaf_count", 0)) or 1.0
            continue
        left, right = id(node["left_child"]), id(node["right_child"])
        count[key] = count[left] + count[right]
        worth[key] = (worth[left] * count[left] + worth[right] * count[right]) / count[key]
    return worth
