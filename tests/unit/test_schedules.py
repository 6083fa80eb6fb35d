import pytest
import torch

from comfyui_img2img.nodes.core.schedules import SCHEDULES, DiscreteModelSigmas, beta_ppf

SD15 = DiscreteModelSigmas.scaled_linear()


def test_sd15_table_has_the_known_extremes():
    assert float(SD15.sigma_min) == pytest.approx(0.0292, abs=1e-4)
    assert float(SD15.sigma_max) == pytest.approx(14.6146, abs=1e-4)


def test_timestep_and_sigma_are_inverse_on_the_table():
    t = torch.tensor([0.0, 17.0, 500.0, 999.0])
    assert torch.equal(SD15.timestep(SD15.sigma(t)), t.long())


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("steps", [1, 4, 20, 33])
def test_every_schedule_descends_to_zero(name, steps):
    ladder = SCHEDULES[name](SD15, steps)
    assert ladder.dtype == torch.float32
    assert float(ladder[-1]) == 0.0
    assert bool((ladder[:-1] > ladder[1:]).all())
    assert float(ladder[0]) <= float(SD15.sigma_max) * (1 + 1e-5)
    if name != "ddim_uniform":  # DDIM's stride may give one step more than asked, as in the original
        assert len(ladder) == steps + 1


@pytest.mark.parametrize("name", ["normal", "karras", "exponential", "simple"])
def test_schedules_start_at_sigma_max(name):
    assert float(SCHEDULES[name](SD15, 10)[0]) == pytest.approx(float(SD15.sigma_max), rel=1e-5)


def test_karras_is_uniform_in_sigma_to_the_one_over_rho():
    ladder = SCHEDULES["karras"](SD15, 12)[:-1]
    spacing = ladder ** (1 / 7)
    steps = spacing[:-1] - spacing[1:]
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-4)


@pytest.mark.parametrize(("a", "b"), [(0.6, 0.6), (0.5, 0.7), (2.0, 3.0)])
def test_beta_ppf_matches_scipy(a, b):
    stats = pytest.importorskip("scipy.stats")
    for q in [0.0, 1e-9, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1 - 1e-9, 1.0]:
        assert beta_ppf(q, a, b) == pytest.approx(float(stats.beta.ppf(q, a, b)), abs=1e-9)


def test_beta_schedule_drops_repeated_timesteps():
    ladder = SCHEDULES["beta"](SD15, 200)
    assert len(ladder) < 201 and bool((ladder[:-1] > ladder[1:]).all())


def test_karras_and_exponential_equal_k_diffusion():
    sampling = pytest.importorskip("k_diffusion.sampling")
    low, high = float(SD15.sigma_min), float(SD15.sigma_max)
    for steps in (1, 7, 20):
        assert torch.equal(SCHEDULES["karras"](SD15, steps), sampling.get_sigmas_karras(steps, low, high))
        assert torch.equal(SCHEDULES["exponential"](SD15, steps), sampling.get_sigmas_exponential(steps, low, high))


def test_normal_and_the_table_equal_k_diffusions_discrete_schedule():
    external = pytest.importorskip("k_diffusion.external")
    reference = external.DiscreteSchedule(SD15.sigmas, quantize=True)
    for steps in (3, 10, 25):
        assert torch.allclose(SCHEDULES["normal"](SD15, steps), reference.get_sigmas(steps), rtol=1e-6, atol=0)
    sigmas = torch.tensor([0.03, 0.5, 3.0, 14.0])
    assert torch.equal(SD15.timestep(sigmas), reference.sigma_to_t(sigmas).long())
