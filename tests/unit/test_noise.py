import pytest
import torch

from comfyui_img2img.nodes.core.noise import initial_noise

SHAPE = (4, 4, 8, 8)


def core_prepare_noise(shape, seed, batch_index=None):
    """What comfy.sample.prepare_noise does: draws from torch.manual_seed(seed), the global generator."""
    generator = torch.manual_seed(seed)
    if batch_index is None:
        return torch.randn(shape, generator=generator)
    draws = [torch.randn((1, *shape[1:]), generator=generator) for _ in range(max(batch_index) + 1)]
    return torch.cat([draws[i] for i in batch_index])


def test_comfy_batch_seed_draws_what_core_draws():
    assert torch.equal(initial_noise(SHAPE, 1234), core_prepare_noise(SHAPE, 1234))


def test_batch_index_picks_the_same_draws_as_core():
    assert torch.equal(initial_noise((2, 4, 8, 8), 7, batch_index=[3, 1]), core_prepare_noise((2, 4, 8, 8), 7, [3, 1]))


def test_per_image_equals_single_runs_with_seed_plus_i():
    batch = initial_noise(SHAPE, 99, batch_seed="per_image")
    for i in range(SHAPE[0]):
        assert torch.equal(batch[i : i + 1], initial_noise((1, *SHAPE[1:]), 99 + i))


def test_shared_gives_every_image_the_single_runs_noise():
    batch = initial_noise(SHAPE, 99, batch_seed="shared")
    for i in range(SHAPE[0]):
        assert torch.equal(batch[i : i + 1], initial_noise((1, *SHAPE[1:]), 99))
    assert torch.equal(initial_noise(SHAPE, 99, batch_seed="shared", batch_index=[5, 2, 0, 1]), batch)


def test_the_global_generator_is_left_alone():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    initial_noise(SHAPE, 1)
    assert torch.equal(torch.get_rng_state(), state)


def test_dtype_is_honoured_and_seeds_differ():
    assert initial_noise(SHAPE, 1, dtype=torch.float16).dtype == torch.float16
    assert not torch.equal(initial_noise(SHAPE, 1), initial_noise(SHAPE, 2))


def test_unknown_batch_seed_is_refused():
    with pytest.raises(ValueError, match="batch_seed"):
        initial_noise(SHAPE, 1, batch_seed="sometimes")
