"""The protocol, composition and the numerical primitives everything else builds on."""
