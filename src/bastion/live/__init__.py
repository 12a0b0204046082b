"""Live streams, by concern.

- :mod:`bastion.live.reading`: reading one stream (RTMP, HLS, RTSP, SRT, ...) behind the
  egress guard, reconnecting, the stream clock, frame conversion and the sampler that picks
  the frames to analyse.
- :mod:`bastion.live.alerts`: alerts raised when a rule fires, their webhooks, their JSON
  view and the per-tenant alert feed.
- This package itself: streams as stored (:mod:`~bastion.live.tables`,
  :mod:`~bastion.live.streams`), the session that runs one stream in a worker
  (:mod:`~bastion.live.session`, :mod:`~bastion.live.supervisor`), what happens to one
  analysed frame (:mod:`~bastion.live.processor`, :mod:`~bastion.live.push` for frames the
  platform sends) and thumbnails.
"""
