"""The multimodal VAE: encoders, masked product-of-experts fusion, decoders, losses, scoring."""
