"""One module per area of the portal, each with its own router."""
