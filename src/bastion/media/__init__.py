"""Decoding and validation of media: images today, video, audio and streams later."""
