"""The fused HGNN layer equals PyG's per-relation SAGEConv summed plus a self term; attention and
propagation against a direct computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import SAGEConv

from recbole_gfm.data.link_loader import sample_blocks
from recbole_gfm.encoders import (
    PropagationEncoder, RelationalSAGEConv, build_encoder, embed_without_edges, gather_segment_reduce,
)  # fmt: skip
from test_link_loader import csrs_of, random_graph


@pytest.mark.parametrize("aggregation", ["max", "mean"])
def test_fused_layer_matches_pyg_sageconv_per_relation_in_values_and_gradients(aggregation):
    torch.manual_seed(0)
    edge_index, edge_type, n, R = random_graph()
    (block,) = sample_blocks(csrs_of(edge_index, edge_type, n, R), torch.tensor([0, 3, 7, 11, 50]), [4])
    d_in, d_out = 6, 5
    layer = RelationalSAGEConv(d_in, d_out, R, aggregation).double()
    h_src = torch.randn(len(block.src), d_in, dtype=torch.double, requires_grad=True)
    ours = layer(h_src, h_src[block.dst_in_src], block)

    reference = layer.self_lin(h_src[block.dst_in_src])
    for r in range(R):
        conv = SAGEConv((d_in, d_in), d_out, aggr=aggregation, project=True, root_weight=False).double()
        with torch.no_grad():
            conv.lin.weight.copy_(layer.pool_weight[r].T)
            conv.lin.bias.copy_(layer.pool_bias[r, 0])
            conv.lin_l.weight.copy_(layer.out_weight[r].T)
            conv.lin_l.bias.zero_()
        mask = block.edge_type == r
        reference = reference + conv((h_src, h_src[block.dst_in_src]), block.edge_index[:, mask])
    assert torch.allclose(ours, reference)
    # a node with no neighbour in some relation exists here, so the empty-segment case is covered
    has_edges = torch.zeros(R, len(block.dst), dtype=torch.bool)
    has_edges[block.edge_type, block.edge_index[1]] = True
    assert not bool(has_edges.all())

    weights = torch.randn_like(ours)
    (ours_grad,) = torch.autograd.grad((ours * weights).sum(), h_src, retain_graph=True)
    (reference_grad,) = torch.autograd.grad((reference * weights).sum(), h_src)
    assert torch.allclose(ours_grad, reference_grad)


@pytest.mark.parametrize("mode", ["max", "mean"])
def test_chunked_gather_reduce_equals_segment_reduce_of_the_gathered_rows_in_values_and_gradients(mode):
    # the layer's aggregation never holds an [edges, d] tensor; it must be segment_reduce(table[index])
    # to the bit, ties (equal rows, ReLU zeros) and gradients of either sign included, for any chunking
    g = torch.Generator().manual_seed(0)
    table = torch.relu(torch.randn(40, 6, generator=g, dtype=torch.double))
    table[7] = table[8]
    table = table.requires_grad_()
    lengths = torch.randint(1, 9, (30,), generator=g)
    index = torch.randint(0, 40, (int(lengths.sum()),), generator=g)
    index[:2] = torch.tensor([7, 8])
    expected = torch.segment_reduce(table.index_select(0, index), mode, lengths=lengths)
    weights = torch.randn(expected.shape, generator=g, dtype=torch.double)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), table)
    for chunk in (1, 5, 17, 10_000):
        ours = gather_segment_reduce(table, index, lengths, mode, chunk)
        assert torch.equal(ours, expected)
        (grad,) = torch.autograd.grad((ours * weights).sum(), table)
        assert torch.equal(grad, expected_grad)


def test_attention_weights_each_relations_neighbours_by_a_softmax_that_sums_to_one():
    torch.manual_seed(0)
    edge_index, edge_type, n, R = random_graph()
    (block,) = sample_blocks(csrs_of(edge_index, edge_type, n, R), torch.tensor([3, 7, 11]), [5])
    layer = RelationalSAGEConv(4, 3, R, "attention").double()
    h = torch.randn(len(block.src), 4, dtype=torch.double)
    ours = layer(h, h[block.dst_in_src], block)
    expected = layer.self_lin(h[block.dst_in_src])
    u, v = layer.attention
    for i in range(len(block.dst)):
        for r in range(R):
            mask = (block.edge_index[1] == i) & (block.edge_type == r)
            if not bool(mask.any()):
                continue
            m = h[block.edge_index[0, mask]] @ layer.pool_weight[r] + layer.pool_bias[r]
            c = h[block.dst_in_src[i]] @ layer.pool_weight[r] + layer.pool_bias[r]
            a = torch.softmax(F.leaky_relu(c @ u[r] + m @ v[r], 0.2), dim=0)
            expected[i] = expected[i] + (a @ m) @ layer.out_weight[r]
    assert torch.allclose(ours, expected)


def test_propagation_equals_the_dense_random_walk_product_and_keeps_the_text_of_an_item_without_edges():
    edge_index, edge_type, n, R = random_graph()
    x = torch.randn(n, 8, dtype=torch.double)
    encoder = build_encoder({"kind": "propagation", "n_layers": 2})
    assert isinstance(encoder, PropagationEncoder)
    blocks = sample_blocks(csrs_of(edge_index, edge_type, n, R), torch.arange(n), [0, 0])
    adjacency = torch.eye(n, dtype=torch.double)  # a pair joined in two relations counts twice
    adjacency.index_put_((edge_index[1], edge_index[0]), torch.ones(edge_index.shape[1], dtype=torch.double), accumulate=True)
    walk = adjacency / adjacency.sum(1, keepdim=True)
    assert torch.allclose(encoder(x, blocks), F.normalize(walk @ walk @ x, dim=-1))
    assert torch.allclose(embed_without_edges(encoder, x), F.normalize(x, dim=-1))
