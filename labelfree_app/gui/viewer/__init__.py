"""Looking at images: one image panel, the four linked panels, denoising playback, comparison."""
