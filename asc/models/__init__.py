"""Model zoo: students (baseline24, CP-Mobile) and teachers (CP-ResNet, PaSST, EfficientAT)."""
