"""Text support: URLs in text and code payloads, language of a line, Tesseract, the text gate."""
