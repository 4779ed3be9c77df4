"""llm3d: image-to-3D code generation trained with verifiable rewards."""

__version__ = "0.1.0"
