"""What an op costs in time on a device, and how to measure a device.

`kinds` decides an op's kind (dense, depthwise, ...: which figures of a profile apply), `roofline`
turns MACs and bytes into an estimate, `devices` reads and writes profiles (the shipped ones in
`profiles/`), `measure` times ops with torch, `fit` fits a profile's figures to those times, and
`calibrate` runs the sweep that does both. Only `measure` and `calibrate` import torch.
"""
