import numpy as np
import torch

from arcodec.registry import build_model, make_config
from arcodec.explore.figures import grid_image, save_grid
from arcodec.explore.sampling import sample


def test_samples_are_seeded_in_range_and_follow_the_model(tiny_checkpoint, tmp_path):
    from arcodec.registry import load_checkpoint

    net, _ = load_checkpoint(tiny_checkpoint)
    a = sample(net, 4, (6, 5), seed=1)
    assert a.shape == (4, 1, 6, 5) and a.dtype == torch.long
    assert int(a.min()) >= 0 and int(a.max()) < 256
    assert torch.equal(a, sample(net, 4, (6, 5), seed=1))
    assert not torch.equal(a, sample(net, 4, (6, 5), seed=2))
    png = save_grid(a, 256, tmp_path / "g.png", rows=2)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_model_sure_of_one_level_samples_it():
    """Sampling reads the model's distribution: a head biased hard towards level 3 of 4
    gives (almost) only 3s."""
    net = build_model("pixelcnn", make_config("pixelcnn", {"channels": 3, "levels": 4, "hidden": 6,
                                                          "blocks": 1, "head": 6}))
    with torch.no_grad():
        last = net.head[-1].conv
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 30.0]).repeat(3))
    x = sample(net, 2, (3, 3), seed=0)
    assert x.shape == (2, 3, 3, 3) and bool((x == 3).all())


def test_grid_image_scales_levels_to_bytes():
    x = torch.tensor([[[[0, 1], [2, 3]]]] * 3)  # 3 images of 2x2, levels 0..3
    g = grid_image(x, 4, rows=1, pad=1)
    assert g.shape == (4, 10) and g.dtype == np.uint8
    assert g[1, 1] == 0 and g[2, 2] == 255
