"""The foundation encoder networks, as plain torch modules built from their arguments.

Kept apart from the RecBole model (:mod:`recbole_gfm.model.hgnn`) so the artifact store can rebuild
an encoder from the arguments saved beside its weights, and embed items that did not exist at
training time, without importing any model.

HGNN (Damianou et al. 2403.07478 section 3; 2T-HGNN 2403.05185 section 3.2). Per layer and relation r,

    agg_r(i) = max_{j in sample_r(i)} sigma(W_r h_j + b_r)           (GraphSAGE max-pool aggregator)
    h_i'     = sigma(W_self h_i + sum_r W'_r agg_r(i))                 (sum over relations)

with the item's text embedding (projected to ``hidden_size``) as h^0 and an L2-normalised output;
mean and attention aggregators are options (:class:`RelationalSAGEConv`). The propagation
foundation (:class:`PropagationEncoder`) has no parameters: the texts smoothed over the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torch_geometric.utils import softmax as pyg_softmax

from recbole_gfm.data.link_loader import Block

_ACTIVATIONS = {"relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


AGGREGATIONS = ("max", "mean", "attention")


class RelationalSAGEConv(nn.Module):
    """One HGNN layer: per relation r an aggregator over the sampled neighbours, summed, plus the self term.

        m_r(j)   = sigma(W_r h_j + b_r)
        agg_r(i) = max_j m_r(j)                 ("max": GraphSAGE max-pool, the papers')
                 | mean_j m_r(j)                ("mean")
                 | sum_j a_ij (W_r h_j + b_r),  a_ij = softmax_j LeakyReLU(u_r.(W_r h_i + b_r) + v_r.(W_r h_j + b_r))
                                                ("attention": GAT's, per relation)
        h_i'     = W_self h_i + sum_r W'_r agg_r(i)

    With "max" it equals ``HeteroConv({r: SAGEConv(aggr="max", project=True, root_weight=False)},
    aggr="sum")`` plus a self linear map, fused across relations: one projection per relation of
    only the (relation, node) pairs the block's edges use, one gather and segment reduction over the
    non-empty (relation, destination) segments. Work is O(edges x d), never O(relations x nodes x d)
    (10 item types: 55 relations; 450k items x 64 floats each = 6 GB); with "max" and "mean" the
    gathered [edges, d] messages are never held either (:func:`gather_segment_reduce`): memory is
    O((pairs + segments) x d). R separate SAGEConv calls would cost R times the kernel launches on CPU.
    """

    def __init__(self, in_dim: int, out_dim: int, n_relations: int, aggregation: str = "max"):
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation '{aggregation}' unknown: choose one of {', '.join(AGGREGATIONS)}")
        self.aggregation = aggregation
        self.pool_weight = nn.Parameter(torch.empty(n_relations, in_dim, in_dim))
        self.pool_bias = nn.Parameter(torch.zeros(n_relations, 1, in_dim))
        self.out_weight = nn.Parameter(torch.empty(n_relations, in_dim, out_dim))
        self.self_lin = nn.Linear(in_dim, out_dim)
        for weight in (self.pool_weight, self.out_weight):  # nn.Linear's default: U(-1/sqrt(fan_in), ..)
            bound = weight.shape[1] ** -0.5
            nn.init.uniform_(weight, -bound, bound)
        if aggregation == "attention":
            self.attention = nn.Parameter(torch.randn(2, n_relations, in_dim) * in_dim**-0.5)  # u_r (centre), v_r (neighbour)

    def forward(self, h_src: torch.Tensor, h_dst: torch.Tensor, block: Block) -> torch.Tensor:
        n_rel, n_src, n_dst = self.pool_weight.shape[0], h_src.shape[0], h_dst.shape[0]
        src, dst = block.edge_index
        if len(src) == 0:  # an item without edges: its self term only
            return self.self_lin(h_dst)
        keys = block.edge_type * n_src + src  # the (relation, source) of every edge
        if self.aggregation == "attention":  # the centres' own projections too: W_r h_i + b_r
            keys = torch.cat([keys, block.edge_type * n_src + block.dst_in_src[dst]])
        pairs, index = _distinct(keys, n_rel * n_src)  # sorted: grouped by relation
        projected = _per_relation(h_src[pairs % n_src], pairs // n_src, n_rel, self.pool_weight, self.pool_bias)
        # edges arrive sorted by (relation, dst): each non-empty segment is one run
        segments, lengths = torch.unique_consecutive(block.edge_type * n_dst + dst, return_counts=True)
        if self.aggregation == "attention":
            messages, centre = projected.index_select(0, index[: len(src)]), projected.index_select(0, index[len(src) :])
            u, v = self.attention
            logits = F.leaky_relu((centre * u[block.edge_type]).sum(-1) + (messages * v[block.edge_type]).sum(-1), 0.2)
            weight = pyg_softmax(logits, block.edge_type * n_dst + dst, num_nodes=n_rel * n_dst)
            agg = torch.segment_reduce(messages * weight.unsqueeze(-1), "sum", lengths=lengths)
        else:
            # = segment_reduce(relu(projected)[index]) without the [edges, d] message tensor (see
            # gather_segment_reduce); an empty segment is absent, as its zero term would be
            agg = gather_segment_reduce(torch.relu(projected), index, lengths, self.aggregation)
        out = _per_relation(agg, segments // n_dst, n_rel, self.out_weight)
        return self.self_lin(h_dst).index_add(0, segments % n_dst, out)


def _distinct(keys: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(keys, return_inverse=True)`` for keys in ``[0, size)``, without sorting the keys.

    A mark per possible key (``size`` = relations x source nodes of the block, so this work and memory
    follow the block, not the catalogue) replaces the O(edges log edges) sort: O(edges + size).
    """
    mark = torch.zeros(size, dtype=torch.bool, device=keys.device)
    mark[keys] = True
    distinct = torch.nonzero(mark).flatten()
    slot = torch.empty(size, dtype=torch.long, device=keys.device)  # only the marked entries are written and read
    slot[distinct] = torch.arange(len(distinct), device=keys.device)
    return distinct, slot[keys]


GATHER_CHUNK = 1 << 14  # edges gathered at once by gather_segment_reduce: 4 MB of 64-d float rows


class _GatherSegmentReduce(torch.autograd.Function):
    """``segment_reduce(table.index_select(0, index), mode, lengths)`` in chunks of whole segments.

    The forward keeps only the [segments, d] result; the backward gathers each chunk's rows again and
    scatters its gradient into ``table`` (index_add, in edge order, deterministic). Neither direction
    holds an [edges, d] tensor: with edges >> segments (fan-outs x relations per node) that tensor,
    its zero-filled gradient and their page faults were most of a layer's time and memory.
    Gradients are segment_reduce's, to the bit (its own backward kernel, chunk by chunk).
    """

    @staticmethod
    def forward(ctx, table, index, lengths, mode: str, chunk: int):
        bounds = _chunks(lengths, chunk)
        out = table.new_empty(len(lengths), table.shape[1])
        for s0, s1, e0, e1 in bounds:
            out[s0:s1] = torch.segment_reduce(table.index_select(0, index[e0:e1]), mode, lengths=lengths[s0:s1])
        ctx.save_for_backward(table, index, lengths, out)
        ctx.mode, ctx.bounds = mode, bounds
        return out

    @staticmethod
    def backward(ctx, grad_out):
        table, index, lengths, out = ctx.saved_tensors
        grad_table = torch.zeros_like(table)
        for s0, s1, e0, e1 in ctx.bounds:
            rows = index[e0:e1]
            # segment_reduce's own backward on this chunk's rows, gathered again
            grad_rows = torch.ops.aten._segment_reduce_backward(
                grad_out[s0:s1], out[s0:s1], table.index_select(0, rows), ctx.mode, lengths=lengths[s0:s1]
            )
            grad_table.index_add_(0, rows, grad_rows)
        return grad_table, None, None, None, None


def _chunks(lengths: torch.Tensor, chunk: int) -> list[tuple[int, int, int, int]]:
    """(first segment, end segment, first edge, end edge) of runs of whole segments of about ``chunk`` edges."""
    starts = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])  # starts[s]: first edge of segment s
    total = int(starts[-1])
    cuts = torch.searchsorted(starts, torch.arange(chunk, max(total, chunk), chunk, device=lengths.device), right=True) - 1
    segments = torch.unique(torch.cat([cuts.clamp(min=1, max=len(lengths)), lengths.new_tensor([len(lengths)])]))
    segments = [0] + segments.tolist()
    edges = starts[segments].tolist()
    return [(a, b, edges[k], edges[k + 1]) for k, (a, b) in enumerate(zip(segments[:-1], segments[1:]))]


def gather_segment_reduce(
    table: torch.Tensor, index: torch.Tensor, lengths: torch.Tensor, mode: str, chunk: int | None = None
) -> torch.Tensor:
    """Per segment (``lengths`` consecutive entries of ``index``, none empty) the ``mode`` ("max" /
    "mean") of the ``table`` rows it indexes: ``segment_reduce(table[index], mode, lengths=lengths)``
    in value and gradient, in O(segments x d + chunk x d) memory instead of O(edges x d)."""
    return _GatherSegmentReduce.apply(table, index, lengths, mode, chunk or GATHER_CHUNK)


def _per_relation(x: torch.Tensor, relation: torch.Tensor, n_rel: int, weight: torch.Tensor, bias=None) -> torch.Tensor:
    """Rows ``x`` (grouped by ascending ``relation``) times their relation's ``weight`` [R, d, e] (+ ``bias`` [R, 1, e])."""
    counts = torch.bincount(relation, minlength=n_rel).tolist()
    parts = []
    for r, rows in enumerate(torch.split(x, counts)):
        if counts[r]:
            parts.append(rows @ weight[r] + bias[r] if bias is not None else rows @ weight[r])
    return torch.cat(parts) if parts else x.new_zeros(0, weight.shape[-1])


class HGNNEncoder(nn.Module):
    """Text features -> projection -> ``n_layers`` relational SAGE layers -> unit vectors."""

    kind = "hgnn"

    def __init__(
        self,
        in_dim: int,
        hidden_size: int,
        embedding_size: int,
        n_layers: int,
        n_relations: int,
        activation: str = "relu",
        dropout: float = 0.0,
        aggregation: str = "max",
    ):
        super().__init__()
        if activation.lower() not in _ACTIVATIONS:
            raise ValueError(f"activation '{activation}' unknown: choose one of {sorted(_ACTIVATIONS)}")
        self.act = _ACTIVATIONS[activation.lower()]()
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Linear(in_dim, hidden_size)
        dims = [hidden_size] * n_layers + [embedding_size]
        self.layers = nn.ModuleList(
            RelationalSAGEConv(dims[l], dims[l + 1], n_relations, aggregation) for l in range(n_layers)
        )

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def forward(self, features: torch.Tensor, blocks: list[Block]) -> torch.Tensor:
        """Unit-norm embeddings of ``blocks[-1].dst``; ``features`` holds every item's text vector."""
        h = self.dropout(self.act(self.project(features[blocks[0].src])))
        for l, (layer, block) in enumerate(zip(self.layers, blocks)):
            h = layer(h, h[block.dst_in_src], block)
            # no activation on the output layer: a ReLU there would confine all vectors to one orthant
            if l + 1 < self.n_layers:
                h = self.dropout(self.act(h))
        return F.normalize(h, dim=-1)


class PropagationEncoder(nn.Module):
    """The parameter-free foundation: text features smoothed over the graph for ``n_layers`` hops (SGC).

        h_i' = (h_i + sum_{j in N(i)} h_j) / (1 + |N(i)|)       (random-walk normalised A + I, every relation)
        z_i  = h_i^(K) / ||h_i^(K)||

    Wu et al. 2019 (SGC) and Rossi et al. 2020 (SIGN) with a mean instead of the symmetric
    normalisation, so that blocks with every neighbour (fan-out 0) give exactly the full-graph
    product, and an item without edges keeps its own text: z = x / ||x||.
    """

    kind = "propagation"

    def __init__(self, n_layers: int):
        super().__init__()
        if n_layers < 0:
            raise ValueError(f"propagation needs hops >= 0, got {n_layers}")
        self._n_layers = n_layers

    @property
    def n_layers(self) -> int:
        return self._n_layers

    def forward(self, features: torch.Tensor, blocks: list[Block]) -> torch.Tensor:
        h = features[blocks[0].src] if blocks else features
        for block in blocks:
            src, dst = block.edge_index
            total = h[block.dst_in_src].index_add(0, dst, h[src])
            count = torch.bincount(dst, minlength=len(block.dst)).to(h.dtype) + 1
            h = total / count.unsqueeze(-1)
        return F.normalize(h, dim=-1)


def build_encoder(args: dict) -> nn.Module:
    """The encoder described by ``args`` (the ``encoder_args`` an artifact keeps; ``kind`` picks the class)."""
    args = dict(args)
    kind = args.pop("kind", HGNNEncoder.kind)
    classes = {cls.kind: cls for cls in (HGNNEncoder, PropagationEncoder)}
    if kind not in classes:
        raise ValueError(f"encoder kind '{kind}' unknown: one of {', '.join(classes)}")
    return classes[kind](**args)


def embed_without_edges(encoder: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Embeddings of items that have no edges, from their text alone (the inductive case)."""
    nodes = torch.arange(len(features), device=features.device)
    no_edges = Block(nodes, nodes, torch.zeros(2, 0, dtype=torch.long, device=features.device), nodes.new_zeros(0), nodes)
    return encoder(features, [no_edges] * encoder.n_layers)
