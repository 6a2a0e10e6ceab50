"""Post-training int8 quantization steps."""
