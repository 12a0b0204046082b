"""Live streams: reading a stream (RTMP, HLS, RTSP, ...), choosing the frames to analyse.

- :mod:`bastion.live.reader`: :class:`~bastion.live.reader.StreamReader` connects to a
  source, decodes it in a thread of its own, reconnects with backoff and reports its
  status; frames come out of an async iterator.
- :mod:`bastion.live.sampler`: :class:`~bastion.live.sampler.StreamSampler` picks one frame
  per interval of stream time and skips frames similar to the last analysed one
  (:mod:`bastion.live.similarity`).
- :mod:`bastion.live.config`: the reader's and the sampler's settings.
"""
