"""Conditional diffusion: the denoiser network, the noise schedule, and the samplers.

``denoiser.ConditionalDenoiser`` is the network; ``schedule.NoiseSchedule`` the betas and the
x0 / eps / v algebra; ``samplers`` the DDPM, DDIM and DPM-Solver++ 2M generators of step records.
"""
