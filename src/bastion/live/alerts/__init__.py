"""Alerts of live streams: raised when a rule fires, worked by moderators, pushed to the
alert feed and sent as webhooks."""
