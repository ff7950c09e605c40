"""The whole-encoder accelerator: SoC ports (AXI4 read master, AXI4-Lite registers), buffers, sequencer, top."""
