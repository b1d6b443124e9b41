"""lcvae: LC-VAE, the latent-compressed video VAE, with its WF-VAE backbone, training, evaluation,
latent frequency analysis and Latte diffusion on the compressed latent."""

__version__ = "0.1.0"
