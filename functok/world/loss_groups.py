"""The paper's four-way split of next-token predictions by (current token, next token) type."""

from __future__ import annotations

GROUPS = ("function->function", "function->content", "content->function", "content->content")


def group_index(input_ids, is_function):
    """Group of each prediction: [batch, pos-1] ints in 0..3 indexing GROUPS.

    input_ids: [batch, pos] token ids; is_function: [vocab] bool tensor. Position t predicts t+1.
    """
    f = is_function[input_ids]
    cur, nxt = f[:, :-1], f[:, 1:]
    return (~cur).long() * 2 + (~nxt).long()


def grouped_sums(per_token_loss, groups, n_groups: int = 4):
    """Sum and count of the loss per group: two [n_groups] tensors (flattened over batch and positions)."""
    import torch

    flat_g = groups.reshape(-1)
    loss = per_token_loss.reshape(-1).to(torch.float64)
    sums = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, flat_g, loss)
    counts = torch.bincount(flat_g, minlength=n_groups).to(torch.float64)
    return sums, counts


def prediction_groups(input_ids, is_function, is_special):
    """Group (0..3 indexing GROUPS) of each prediction, 4 where the current or next token is special (BOS)."""
    import torch

    g = group_index(input_ids, is_function)
    sp = is_special[input_ids]
    return torch.where(sp[:, :-1] | sp[:, 1:], torch.full_like(g, 4), g)
