"""The parts of each step of deploytool.api's chain (quantize, export, check), below the chain, above the layers.

api.py reads as the story; the pieces it calls live here, one module per step.
"""
