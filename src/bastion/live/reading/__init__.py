"""Reading live streams: sources and their egress guard, connections, reconnection, the
stream clock, frame conversion and the sampler that picks the frames to analyse."""
