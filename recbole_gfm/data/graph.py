"""The co-interaction item graph of Graph Foundation Models for personalization.

Papers: 2T-HGNN (arXiv 2403.05185, section 3.1) and its follow-up (arXiv 2403.07478): nodes are
catalogue items of every type (users are not nodes); two items are joined when users interacted
with both, optionally within a time window (papers: 90 days); one relation per unordered pair of item
types, (a, a), (a, b), (b, b) ... Built from the TRAIN split only, so nothing of the held-out
interactions leaks into the foundation layer.

Co-interaction graphs of dense data are nearly complete (ml-100k: ~1,000 neighbours per item), so
the graph is pruned: pairs shared by fewer than ``min_cocount`` users are dropped, and every item keeps
its ``topk`` best neighbours per relation by the cosine-normalised co-count
``c_ij / sqrt(n_i * n_j)`` (``n_i``: users of item i). An edge is kept when either endpoint selected
it, and stored in both directions, so each item has at least ``min(topk, its candidates)`` neighbours
per relation (at most ``2 * topk`` on average).

Memory stays bounded: co-counts are computed for one block of items (rows) at a time, each block
sized so that at most ``chunk_nnz`` (row, neighbour) entries exist at once (about 64 bytes each at
peak), and pruned to the top-k before the next block; no item x item matrix is ever materialised.
Without a window a block is a sparse product ``U[:, block]^T U`` of the binary user x item matrix;
with a window it is counted from each user's time-sorted events (see :func:`_window_pairs`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from logging import getLogger
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from recbole.utils import set_color

DEFAULT_CHUNK_NNZ = 1 << 22  # 4M co-count entries per block: ~64 bytes each at peak, ~270 MB


class RelationCSR(NamedTuple):
    """Neighbours of every item (global ids) in one relation: ``col[rowptr[i]:rowptr[i+1]]``."""

    rowptr: torch.LongTensor  # [num_items + 1]
    col: torch.LongTensor  # [E_r]
    weight: torch.FloatTensor  # [E_r]


@dataclass
class CoInteractionGraph:
    """A heterogeneous item graph over internal item ids; relation r joins item types ``relations[r]``.

    Edges are sorted by (relation, source, target) and every edge is present in both directions.
    """

    num_items: int
    edge_index: torch.LongTensor  # [2, E] (source, target)
    edge_weight: torch.FloatTensor  # [E] normalised co-count
    edge_type: torch.LongTensor  # [E] relation id
    relations: list[tuple[str, str]]
    item_type: torch.LongTensor  # [num_items], -1 for padding / unknown
    type_names: list[str]

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    def edges_per_relation(self) -> dict[tuple[str, str], int]:
        counts = torch.bincount(self.edge_type, minlength=self.num_relations).tolist()
        return dict(zip(self.relations, counts))

    def relation_csr(self, r: int | None) -> RelationCSR:
        """CSR neighbour lists of relation ``r`` (None: of every relation), rows indexed by global item id."""
        mask = self.edge_type == r if r is not None else torch.ones_like(self.edge_type, dtype=torch.bool)
        src, dst = self.edge_index[0, mask], self.edge_index[1, mask]
        if r is None:  # edges are sorted by relation first: sort by source for one CSR
            order = torch.argsort(src * self.num_items + dst)
            src, dst, mask = src[order], dst[order], torch.nonzero(mask).flatten()[order]
        rowptr = torch.zeros(self.num_items + 1, dtype=torch.long)
        rowptr[1:] = torch.cumsum(torch.bincount(src, minlength=self.num_items), 0)
        return RelationCSR(rowptr, dst.clone(), self.edge_weight[mask].clone())

    def to_hetero_data(self):
        """A PyG ``HeteroData``: one node type per item type (``item_id`` maps local to global ids),
        edge types ``(a, 'co', b)`` with local ``edge_index`` and ``edge_weight``; for a != b both
        ``(a, 'co', b)`` and ``(b, 'co', a)``."""
        from torch_geometric.data import HeteroData

        data = HeteroData()
        local = torch.full((self.num_items,), -1, dtype=torch.long)
        for t, name in enumerate(self.type_names):
            ids = torch.nonzero(self.item_type == t).flatten()
            local[ids] = torch.arange(len(ids))
            data[name].item_id = ids
            data[name].num_nodes = len(ids)
        src_type = self.item_type[self.edge_index[0]]
        dst_type = self.item_type[self.edge_index[1]]
        for a, name_a in enumerate(self.type_names):
            for b, name_b in enumerate(self.type_names):
                mask = (src_type == a) & (dst_type == b)
                store = data[name_a, "co", name_b]
                store.edge_index = local[self.edge_index[:, mask]]
                store.edge_weight = self.edge_weight[mask]
        return data

    @classmethod
    def from_hetero_data(cls, data, num_items: int) -> "CoInteractionGraph":
        """The inverse of :meth:`to_hetero_data`."""
        type_names = list(data.node_types)
        item_type = torch.full((num_items,), -1, dtype=torch.long)
        for t, name in enumerate(type_names):
            item_type[data[name].item_id] = t
        relations = _relations(type_names)
        rel_id = _relation_ids(len(type_names))
        srcs, dsts, weights = [], [], []
        for name_a, _, name_b in data.edge_types:
            store = data[name_a, "co", name_b]
            srcs.append(data[name_a].item_id[store.edge_index[0]])
            dsts.append(data[name_b].item_id[store.edge_index[1]])
            weights.append(store.edge_weight)
        src, dst = torch.cat(srcs).numpy(), torch.cat(dsts).numpy()
        types = rel_id[item_type.numpy()[src], item_type.numpy()[dst]]
        return _assemble(num_items, src, dst, torch.cat(weights).numpy(), types, relations, item_type, type_names)


def _relations(type_names: Sequence[str]) -> list[tuple[str, str]]:
    n = len(type_names)
    return [(type_names[a], type_names[b]) for a in range(n) for b in range(a, n)]


def _relation_ids(num_types: int) -> np.ndarray:
    """Symmetric ``[T, T]`` table of relation ids, numbered like :func:`_relations`."""
    table = np.zeros((num_types, num_types), dtype=np.int64)
    r = 0
    for a in range(num_types):
        for b in range(a, num_types):
            table[a, b] = table[b, a] = r
            r += 1
    return table


def _assemble(num_items, src, dst, weight, types, relations, item_type, type_names) -> CoInteractionGraph:
    order = np.lexsort((dst, src, types))
    return CoInteractionGraph(
        num_items=num_items,
        edge_index=torch.from_numpy(np.stack([src[order], dst[order]]).astype(np.int64)),
        edge_weight=torch.from_numpy(np.asarray(weight, dtype=np.float32)[order]),
        edge_type=torch.from_numpy(np.asarray(types, dtype=np.int64)[order]),
        relations=list(relations),
        item_type=item_type,
        type_names=list(type_names),
    )


def _unique(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and their counts; np.unique hashes int64 in numpy 2.4: 70x slower on 10M keys."""
    ordered = np.sort(keys)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(ordered) else np.zeros(0, np.int64)
    return ordered[starts], np.diff(np.r_[starts, len(ordered)])


def _blocks(work: np.ndarray, budget: int) -> Iterator[tuple[int, int]]:
    """Contiguous row blocks ``[start, end)`` whose summed ``work`` stays within ``budget`` (>= 1 row)."""
    start, n = 0, len(work)
    cumulative = np.cumsum(work, dtype=np.int64)
    while start < n:
        base = cumulative[start - 1] if start else 0
        end = max(int(np.searchsorted(cumulative, base + budget, side="right")), start + 1)
        yield start, end
        start = end


def _window_pairs(
    users: np.ndarray, items: np.ndarray, times: np.ndarray, window: float, num_items: int, budget: int
) -> Iterator[tuple[int, sp.csr_matrix]]:
    """Co-count blocks with a time window, by enumerating each user's events within ``window``.

    Events are sorted by (user, time); the partners of an event are a contiguous range of that
    order, found by binary search on a (user, time-rank) integer key. Each block of items expands
    its events' ranges into (item, partner item, user) triples, dedupes them (so a user counts once
    per pair) and sums them into a sparse block. Work per item is known in advance, which sizes
    the blocks. U^T U cannot express the window, and time buckets would only approximate it.
    """
    order = np.lexsort((times, users))
    users, items, times = users[order], items[order], times[order]
    uniq_times = _unique(times)[0]
    stride = len(uniq_times) + 1
    key = users * stride + np.searchsorted(uniq_times, times)
    lo = np.searchsorted(key, users * stride + np.searchsorted(uniq_times, times - window, side="left"))
    hi = np.searchsorted(key, users * stride + np.searchsorted(uniq_times, times + window, side="right"))
    span = hi - lo
    by_item = np.argsort(items, kind="stable")
    item_ptr = np.concatenate([[0], np.cumsum(np.bincount(items, minlength=num_items))])
    work = np.bincount(items, weights=span, minlength=num_items).astype(np.int64)
    repeated = len(_unique(users * num_items + items)[0]) < len(items)  # some user-item pair occurs twice
    for start, end in _blocks(work, budget):
        events = by_item[item_ptr[start] : item_ptr[end]]
        counts = span[events]
        total = int(counts.sum())
        first = np.repeat(lo[events] - (np.cumsum(counts) - counts), counts) + np.arange(total)
        row = np.repeat(items[events] - start, counts)
        col = items[first]
        keep = col != row + start
        row, col = row[keep], col[keep]
        if repeated:
            triples = _unique((np.repeat(users[events], counts)[keep] * (end - start) + row) * num_items + col)[0]
            row, col = (triples // num_items) % (end - start), triples % num_items
        yield start, _count_pairs(row, col, end - start, num_items)


def _count_pairs(row: np.ndarray, col: np.ndarray, num_rows: int, num_cols: int) -> sp.csr_matrix:
    """Sparse ``[num_rows, num_cols]`` block counting each (row, col) occurrence.

    A dense bincount when the block is small next to the pairs (dense co-occurrence, e.g. MovieLens),
    else a sort (sparse catalogues); scipy's COO -> CSR conversion sorts long rows 10x slower.
    """
    flat = row * num_cols + col
    if num_rows * num_cols <= 4 * len(flat):
        counts = np.bincount(flat, minlength=num_rows * num_cols).reshape(num_rows, num_cols)
        return sp.csr_matrix(counts.astype(np.float32))
    keys, counts = _unique(flat)
    return sp.csr_matrix(
        (counts.astype(np.float32), (keys // num_cols, keys % num_cols)), shape=(num_rows, num_cols)
    )


def _product_pairs(
    users: np.ndarray, items: np.ndarray, num_items: int, budget: int
) -> Iterator[tuple[int, sp.csr_matrix]]:
    """Co-count blocks without a window: ``U[:, block]^T @ U`` on the binary user x item matrix."""
    num_users = int(users.max()) + 1
    user_item = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=(num_users, num_items)
    )
    user_item.data[:] = 1.0  # duplicates were summed: back to binary
    item_user = user_item.T.tocsr()
    degree = np.asarray(user_item.sum(axis=1)).ravel()
    work = np.minimum(item_user @ degree, num_items).astype(np.int64)  # bound on each row's nnz
    for start, end in _blocks(work, budget):
        yield start, item_user[start:end] @ user_item


def _prune_block(
    start: int, block: sp.csr_matrix, popularity: np.ndarray, item_type: np.ndarray, min_cocount: int, topk: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, target, score) of one block, thresholded and cut to top-k per (row, neighbour type)."""
    block.sort_indices()
    rows = np.repeat(np.arange(start, start + block.shape[0]), np.diff(block.indptr))
    cols, counts = block.indices.astype(np.int64), block.data
    keep = (cols != rows) & (counts >= min_cocount)
    rows, cols, counts = rows[keep], cols[keep], counts[keep]
    score = (counts / np.sqrt(popularity[rows] * popularity[cols])).astype(np.float32)
    if topk is not None and len(rows):
        # One int64 key per entry: (row, neighbour type) high, descending score low (the bits of a
        # non-negative float32 order like the float); a stable sort of (row, col)-ordered entries
        # breaks ties by item id. 15x faster than np.lexsort on the three keys.
        group = rows * (item_type.max() + 1) + item_type[cols]
        key = (group << 32) | (np.uint32(0xFFFFFFFF) - score.view(np.uint32)).astype(np.int64)
        order = np.argsort(key, kind="stable")
        group = group[order]
        first = np.r_[0, np.flatnonzero(group[1:] != group[:-1]) + 1]
        rank = np.arange(len(group)) - np.repeat(first, np.diff(np.r_[first, len(group)]))
        order = order[rank < topk]
        rows, cols, score = rows[order], cols[order], score[order]
    return rows, cols, score


def cointeraction_graph(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    item_type: np.ndarray,
    type_names: Sequence[str] | None = None,
    timestamps: np.ndarray | None = None,
    time_window: float | None = None,
    min_cocount: int = 1,
    topk: int | None = 20,
    chunk_nnz: int = DEFAULT_CHUNK_NNZ,
    mutual: bool = False,
) -> CoInteractionGraph:
    """Build the co-interaction graph from interaction arrays (the train split only!).

    Args:
        user_ids, item_ids: one entry per interaction (non-negative ints; item ids < ``len(item_type)``).
        item_type: type id (0..T-1) of every item id, -1 for the padding item / items without a type.
        type_names: T names (default ``type0``, ``type1`` ...).
        timestamps: interaction times; required with ``time_window``.
        time_window: join two items only if one user consumed both within this time; ``None``: ever.
        min_cocount: minimum number of distinct users who consumed both items.
        topk: neighbours kept per item and relation by ``c_ij / sqrt(n_i n_j)``; ``None`` keeps all.
        mutual: keep a pair only when both endpoints have it in their top-k, so no degree exceeds
            ``topk`` per relation. With the union (default) an item of a small type is in the top-k
            of most items of a large type and becomes a hub joined to much of the catalogue.
        chunk_nnz: co-count entries held at once (bounds peak memory, not the result; a single item
            whose co-counts exceed it still forms a block of its own).
    """
    users = np.asarray(user_ids, dtype=np.int64)
    items = np.asarray(item_ids, dtype=np.int64)
    types = np.asarray(item_type, dtype=np.int64)
    num_items, num_types = len(types), int(types.max()) + 1 if len(types) else 0
    type_names = list(type_names) if type_names is not None else [f"type{t}" for t in range(num_types)]
    if len(type_names) != num_types:
        raise ValueError(f"{len(type_names)} type names for {num_types} item types")
    if len(items) and (items.max() >= num_items or (types[items] < 0).any()):
        raise ValueError("interactions reference item ids without an item type (or beyond item_type)")
    if time_window is not None and timestamps is None:
        raise ValueError("graph_time_window needs timestamps: the dataset has no time field")
    if topk is not None and topk < 1:
        raise ValueError(f"graph_topk must be >= 1 or None, not {topk}")

    popularity = np.bincount(_unique(users * num_items + items)[0] % num_items, minlength=num_items).astype(np.float64)
    if len(items) == 0:
        blocks: Iterator[tuple[int, sp.csr_matrix]] = iter(())
    elif time_window is None:
        blocks = _product_pairs(users, items, num_items, chunk_nnz)
    else:
        times = np.asarray(timestamps, dtype=np.float64)
        blocks = _window_pairs(users, items, times, float(time_window), num_items, chunk_nnz)
    selected = [_prune_block(start, block, popularity, types, min_cocount, topk) for start, block in blocks]
    src = np.concatenate([s for s, _, _ in selected] + [np.zeros(0, np.int64)])
    dst = np.concatenate([d for _, d, _ in selected] + [np.zeros(0, np.int64)])
    weight = np.concatenate([w for _, _, w in selected] + [np.zeros(0, np.float32)])

    # Union (or, mutual, intersection) of both endpoints' selections, in both directions (the score
    # is symmetric). Each endpoint selects a pair at most once, so a key seen twice is mutual.
    both = np.concatenate([src * num_items + dst, dst * num_items + src])
    order = np.argsort(both, kind="stable")
    starts = np.r_[True, both[order[1:]] != both[order[:-1]]]
    first = order[starts]
    if mutual:
        first = first[np.diff(np.r_[np.flatnonzero(starts), len(both)]) == 2]
    weight = np.concatenate([weight, weight])[first]
    src, dst = both[first] // num_items, both[first] % num_items
    edge_type = _relation_ids(num_types)[types[src], types[dst]] if len(src) else np.zeros(0, np.int64)
    return _assemble(
        num_items, src, dst, weight, edge_type, _relations(type_names), torch.from_numpy(types), type_names
    )


def interactions_before(dataset, cutoff: float):
    """A copy of ``dataset`` keeping the interactions in the first ``cutoff`` fraction of its timeline.

    The papers' "w/o retraining" setting: a foundation trained at an earlier date.
    """
    if not 0 < cutoff <= 1:
        raise ValueError(f"foundation_time_cutoff must be in (0, 1], got {cutoff}")
    time = dataset.inter_feat[dataset.time_field]
    limit = torch.quantile(time.double(), cutoff)
    return dataset.copy(dataset.inter_feat[time.double() <= limit])


def build_cointeraction_graph(config, train_dataset) -> CoInteractionGraph:
    """The co-interaction graph of a RecBole train split (``train_data.dataset``).

    Item types come from ``train_dataset.item_type_ids()`` / ``item_type_names()`` (MultiTypeDataset);
    a plain RecBole dataset gives one type, ``item``. Options: ``graph_time_window``,
    ``graph_min_cocount``, ``graph_topk``, ``graph_mutual_topk``, and ``foundation_time_cutoff``
    (only the first fraction of the train timeline). A run builds it once and hands it to the model
    and its train loader (:mod:`recbole_gfm.run.inputs`).
    """
    logger = getLogger()
    cutoff = config["foundation_time_cutoff"]
    source = interactions_before(train_dataset, cutoff) if cutoff else train_dataset
    inter = source.inter_feat
    if hasattr(train_dataset, "item_type_ids"):
        item_type = train_dataset.item_type_ids().numpy()
        type_names = list(train_dataset.item_type_names())
    else:
        item_type = np.zeros(train_dataset.item_num, dtype=np.int64)
        item_type[0] = -1
        type_names = ["item"]
    window = config["graph_time_window"]
    time_field = train_dataset.time_field
    timestamps = inter[time_field].numpy() if window is not None and time_field in inter.columns else None
    start = time.perf_counter()
    graph = cointeraction_graph(
        inter[train_dataset.uid_field].numpy(),
        inter[train_dataset.iid_field].numpy(),
        item_type,
        type_names,
        timestamps=timestamps,
        time_window=window,
        min_cocount=config["graph_min_cocount"],
        topk=config["graph_topk"],
        mutual=config["graph_mutual_topk"],
    )
    per_relation = ", ".join(f"{a}-{b}: {n}" for (a, b), n in graph.edges_per_relation().items())
    logger.info(
        set_color("co-interaction graph", "green")
        + f": {graph.num_items - 1} items, {graph.edge_index.shape[1]} directed edges ({per_relation}) "
        f"from {len(inter)} train interactions in {time.perf_counter() - start:.1f} s"
    )
    return graph
