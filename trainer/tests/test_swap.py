"""swap_attention: the student keeps every teacher weight bit for bit; only the feature map is new."""
import pytest
import torch

from conftest import tiny_config
from t2r.model import Transformer, swap_attention


def make_teacher() -> Transformer:
    torch.manual_seed(123)
    teacher = Transformer(tiny_config(attention="softmax"))
    # Move every weight away from anything a fresh init could produce, so a student that silently
    # kept its own random init (instead of loading the teacher's weights) cannot pass by coincidence.
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p)).mul_(1.7)
    return teacher


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("attention,feature_dim", [("t2r", 8), ("t2r", 24), ("elu", 8)])
def test_swap_keeps_every_pretrained_weight(attention, feature_dim):
    teacher = make_teacher()
    before = snapshot(teacher)
    student = swap_attention(teacher, attention, feature_dim, seed=0)

    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    assert len(t_sd) > 0
    for name, tensor in t_sd.items():
        assert name in s_sd, f"student lost {name}"
        assert s_sd[name].dtype == tensor.dtype and s_sd[name].shape == tensor.shape, name
        assert torch.equal(s_sd[name], tensor), f"{name} changed in the swap"
    # The teacher itself is untouched, and the student owns copies, not shared storage.
    for name, tensor in before.items():
        assert torch.equal(t_sd[name], tensor), f"swap modified the teacher's {name}"
    with torch.no_grad():
        student.embed.weight.add_(1.0)
    assert torch.equal(teacher.embed.weight, before["embed.weight"])

    new = set(s_sd) - set(t_sd)
    cfg = student.cfg
    if attention == "t2r":
        assert new == {f"blocks.{i}.attn.feature_map.{w}" for i in range(cfg.layers) for w in ("weight", "bias")}
        for i in range(cfg.layers):
            assert s_sd[f"blocks.{i}.attn.feature_map.weight"].shape == (cfg.heads, feature_dim, cfg.head_dim)
            assert s_sd[f"blocks.{i}.attn.feature_map.bias"].shape == (cfg.heads, feature_dim)
    else:
        assert new == set(), "ELU+1 has no learned parameters"
    new_params = {n for n, _ in student.named_parameters()} - {n for n, _ in teacher.named_parameters()}
    assert new_params == new and all(".feature_map." in n for n in new_params)

    assert cfg.attention == attention
    assert cfg.feature_dim == feature_dim
    assert cfg.state_feature_dim() == (feature_dim if attention == "t2r" else cfg.head_dim)
    t_cfg, s_cfg = teacher.cfg.to_dict(), cfg.to_dict()
    assert teacher.cfg.attention == "softmax"
    assert {k: v for k, v in s_cfg.items() if k not in ("attention", "feature_dim")} == \
           {k: v for k, v in t_cfg.items() if k not in ("attention", "feature_dim")}
    assert all(b.attn.kind == attention for b in student.blocks)


def test_feature_map_init_follows_seed():
    teacher = make_teacher()
    a = swap_attention(teacher, "t2r", 8, seed=0).state_dict()
    b = swap_attention(teacher, "t2r", 8, seed=0).state_dict()
    c = swap_attention(teacher, "t2r", 8, seed=1).state_dict()
    key = "blocks.0.attn.feature_map.weight"
    assert torch.equal(a[key], b[key])
    assert not torch.equal(a[key], c[key])


@pytest.mark.parametrize("attention", ["t2r", "elu"])
def test_swapped_student_runs_and_differs_from_teacher(attention):
    teacher = make_teacher()
    student = swap_attention(teacher, attention, 8, seed=0)
    ids = torch.randint(0, 64, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        t_logits, _ = teacher(ids)
        s_logits, _ = student(ids)
    assert s_logits.shape == t_logits.shape
    assert torch.isfinite(s_logits).all()
    if attention == "elu":
        # phi > 0, so the first token (which sees only itself) gets exactly v, as under softmax.
        # (Not so for T2R: relu features of q and k can have disjoint support, and then the output is 0.)
        torch.testing.assert_close(s_logits[:, 0], t_logits[:, 0], rtol=1e-4, atol=1e-4)
    assert (s_logits[:, 1:] - t_logits[:, 1:]).abs().max() > 1e-3
