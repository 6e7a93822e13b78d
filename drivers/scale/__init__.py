"""Weighbridge indicators: pure wire codecs and the serial driver around them."""
