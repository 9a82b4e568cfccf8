"""The fused HGNN layer equals PyG's per-relation SAGEConv(max, project) summed, plus a self term."""

from __future__ import annotations

import torch
from torch_geometric.nn import SAGEConv

from recbole_gfm.data.link_loader import sample_blocks
from recbole_gfm.encoders import RelationalSAGEConv
from test_link_loader import csrs_of, random_graph


def test_fused_layer_matches_pyg_sageconv_per_relation_in_values_and_gradients():
    torch.manual_seed(0)
    edge_index, edge_type, n, R = random_graph()
    (block,) = sample_blocks(csrs_of(edge_index, edge_type, n, R), torch.tensor([0, 3, 7, 11, 50]), [4])
    d_in, d_out = 6, 5
    layer = RelationalSAGEConv(d_in, d_out, R).double()
    h_src = torch.randn(len(block.src), d_in, dtype=torch.double, requires_grad=True)
    ours = layer(h_src, h_src[block.dst_in_src], block)

    reference = layer.self_lin(h_src[block.dst_in_src])
    for r in range(R):
        conv = SAGEConv((d_in, d_in), d_out, aggr="max", project=True, root_weight=False).double()
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
