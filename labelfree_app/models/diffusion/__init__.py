"""Conditional diffusion: the denoiser network, the noise schedule, and the samplers.

``denoiser.ConditionalDenoiser`` is the network; ``residual.ResidualDenoiser`` wraps it around a
U-Net mean; ``schedule.NoiseSchedule`` the betas and the x0 / eps / v algebra; ``samplers`` the
DDPM, DDIM and DPM-Solver++ 2M/3M sampler objects (``step()`` -> ``StepResult``) and the one loop
that drives them as a generator of step records.
"""
