"""Per-layer mixed-precision quantization: fake quantizers (LSQ), quantized crossbar
layers, BN folding, calibration, QAT, integer export and hardware-accurate inference."""
